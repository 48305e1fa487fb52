"""Sparse file writing and copying: holes in, holes out.

Disk images are mostly holes (a 1 GiB image may hold 64 MiB of data), so
every copy of one must write only its data. The tools:

* ``SparseWriter`` turns a stream of chunks into a new file, seeking over
  blocks of zeros instead of writing them (used by the verified fetch and
  by the local image store).
* ``copy_fd(src_fd, dst_fd)`` copies an open file into an empty one: a
  reflink (FICLONE) where the filesystem shares extents, else only the
  data extents found with SEEK_DATA/SEEK_HOLE, copied in the kernel with
  ``copy_file_range`` (else read, and written by ``SparseWriter``). It
  takes descriptors only: opening, checking and publishing files is
  staging's (nova/virt/staging.py).
* ``read_sparse(fd, chunk_size)`` streams a file's bytes with its holes
  as views of one shared buffer of zeros (``is_hole``): a consumer that
  must see every byte (a hash) sees them, and ``SparseWriter`` skips them
  without looking.
* ``Writeback`` starts writing a file out behind its writer, so that the
  fsync that ends a copy (or a download that is kept) has little left.
"""

import errno
import fcntl
import os

from oslo_log import log as logging
from oslo_utils import units

from nova.virt import libc

LOG = logging.getLogger(__name__)

#: Granularity of zero detection. Blocks are aligned to file offsets, so a
#: hole is only made where a whole aligned block is zero; 64 KiB matches
#: qcow2's default cluster and Glance's chunk size, and keeps the Python
#: loop to 16 steps per MiB.
ZERO_BLOCK = 64 * units.Ki

#: Largest request passed to copy_file_range / read at once.
COPY_CHUNK = 8 * units.Mi

#: ioctl number of FICLONE (_IOW(0x94, 9, int)); not exported by fcntl.
FICLONE = 0x40049409

_ZEROS = bytes(ZERO_BLOCK)

#: The one buffer of zeros behind every hole ``read_sparse`` yields.
_HOLE = bytes(COPY_CHUNK)

#: Bytes ``read_sparse`` asks the kernel to read ahead of the reader
#: (posix_fadvise WILLNEED), so that a cold file's next data is on its way
#: from the disk while the caller hashes and writes the last chunk.
READ_AHEAD = 32 * units.Mi

#: Bytes written before the kernel is asked to start writing them out
#: (``Writeback``): enough to keep the disk's queue full, few enough that
#: the file's final fsync has little left to do.
WRITEBACK_BATCH = 16 * units.Mi

# errnos meaning "this filesystem or kernel cannot do that", after which a
# slower way that always works is used instead.
_UNSUPPORTED = frozenset((errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL,
                          errno.EXDEV, errno.ENOSYS, errno.EBADF,
                          errno.ENOTSUP))


class Writeback:
    """Start the write-out of a file being written front to back.

    A file that will be fsynced once it is complete (a part about to be
    published) would otherwise keep its data in the page cache until the
    kernel's dirty thresholds are reached, and its fsync then waits for
    most of it at the end. Told how far the file is written
    (``written_to``), this asks the kernel every WRITEBACK_BATCH bytes to
    start writing out what lies behind (``libc.sync_file_range``, without
    waiting): the disk writes while the writer goes on, and the fsync
    finds little left. Where the file cannot do that (a pipe, a kernel
    without the call), it does nothing more. Nothing here makes data
    durable: the fsync still does.

    :param fd: the file's descriptor, open for writing.
    """

    def __init__(self, fd):
        self.fd = fd
        self._started = 0

    def written_to(self, end):
        """The file is written up to ``end`` (bytes from its start)."""
        if self._started is None or end - self._started < WRITEBACK_BATCH:
            return
        try:
            libc.sync_file_range(self.fd, self._started, end - self._started)
        except OSError as e:
            if e.errno not in _UNSUPPORTED | {errno.ESPIPE}:
                raise
            LOG.debug('No early write-out for descriptor %(fd)d: %(err)s',
                      {'fd': self.fd, 'err': e})
            self._started = None
            return
        self._started = end


def is_hole(chunk):
    """Return True if ``chunk`` is a hole from ``read_sparse``: a view of
    its shared zeros, known to be zeros without reading it."""
    return type(chunk) is memoryview and chunk.obj is _HOLE


def zeros(length):
    """Yield ``length`` zero bytes as holes (``is_hole``): views of the
    shared zeros, at most COPY_CHUNK bytes each."""
    while length > 0:
        n = min(COPY_CHUNK, length)
        yield memoryview(_HOLE)[:n]
        length -= n


def is_zero(buf):
    """Return True if the bytes-like ``buf`` holds only zero bytes."""
    n = len(buf)
    if n and (buf[0] or buf[-1]):
        # Most data blocks end or start with a non-zero byte: no copy.
        return False
    if n <= ZERO_BLOCK:
        zeros = _ZEROS if n == ZERO_BLOCK else bytes(n)
        return bytes(buf) == zeros
    view = memoryview(buf)
    return all(is_zero(view[i:i + ZERO_BLOCK])
               for i in range(0, n, ZERO_BLOCK))


def _pwrite_all(fd, data, offset):
    """pwrite ``data`` at ``offset``, retrying short writes."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


class SparseWriter:
    """Write a stream of chunks into a file, leaving zero blocks as holes.

    The file must be new (its unwritten ranges read as zeros): the writer
    never writes zeros, it only moves its offset past them. Call
    ``finish()`` once at the end so that trailing zeros still count in the
    file's length.

    :param fd: a file descriptor opened for writing at offset 0.
    :param block_size: zero-detection granularity, aligned to file offsets.
    :param writeback: start writing the data out while the stream goes on
        (``Writeback``), for a file that is fsynced once complete; not for
        a scratch file that is removed unsynced.

    Attributes: ``offset`` (bytes of the stream seen so far), ``written``
    (bytes actually written to the file), ``end`` (the file's length so
    far: the end of the last byte written; what lies between it and
    ``offset`` is zeros not written yet).
    """

    def __init__(self, fd, block_size=ZERO_BLOCK, writeback=False):
        self.fd = fd
        self.block_size = block_size
        self.offset = 0
        self.written = 0
        self.end = 0
        self._writeback = Writeback(fd) if writeback else None

    def write(self, chunk):
        """Add ``chunk`` (bytes-like) to the file; return bytes written.

        A hole from ``read_sparse`` (``is_hole``) only moves the offset.
        """
        if is_hole(chunk):
            self.offset += len(chunk)
            return 0
        view = memoryview(chunk).cast('B')
        n = len(view)
        base = self.offset
        before = self.written
        pos = 0
        run_start = None
        while pos < n:
            # Split at absolute block boundaries so that holes line up with
            # filesystem blocks whatever size the chunks arrive in.
            end = min(n, pos + self.block_size -
                      (base + pos) % self.block_size)
            if is_zero(view[pos:end]):
                if run_start is not None:
                    self._write_run(view, run_start, pos, base)
                    run_start = None
            elif run_start is None:
                run_start = pos
            pos = end
        if run_start is not None:
            self._write_run(view, run_start, n, base)
        self.offset = base + n
        if self._writeback is not None:
            self._writeback.written_to(self.end)
        return self.written - before

    def _write_run(self, view, start, end, base):
        _pwrite_all(self.fd, view[start:end], base + start)
        self.written += end - start
        self.end = max(self.end, base + end)

    def finish(self):
        """Set the file's length to the stream's (a trailing hole)."""
        os.ftruncate(self.fd, self.offset)


def _data_extents(fd, size):
    """Yield (offset, length) of each data extent of ``fd``.

    :raises: OSError(EINVAL...) when the filesystem has no SEEK_DATA.
    """
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return  # nothing but a hole up to the end
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        end = min(end, size)
        if end > start:
            yield start, end - start
        offset = end


def read_sparse(fd, chunk_size, size=None):
    """Yield the bytes of the regular file ``fd``, holes without reading.

    Data extents (SEEK_DATA/SEEK_HOLE) are read with ``pread`` in chunks
    of at most ``chunk_size`` bytes (``bytes``), the kernel reading ahead
    of them (READ_AHEAD); holes come as views of one shared buffer of
    zeros (``is_hole``, at most COPY_CHUNK bytes each), neither read nor
    allocated. Concatenated, the chunks are exactly the file's first
    ``size`` bytes; where the filesystem has no SEEK_DATA, every byte is
    read. Reading ``fd`` does not move its offset.

    :param size: bytes to yield (default: the file's size now). A file
        that shrinks while being read ends the stream early (the caller's
        byte count then falls short); one that grows is read to ``size``.
    """
    if size is None:
        size = os.fstat(fd).st_size
    try:
        extents = list(_data_extents(fd, size))
    except OSError as e:
        if e.errno not in _UNSUPPORTED:
            raise
        extents = [(0, size)]
    offset = 0
    for start, length in extents + [(size, 0)]:
        yield from zeros(start - offset)
        offset = max(offset, start)
        end = start + length
        ahead = offset
        while offset < end:
            if ahead - offset < READ_AHEAD // 2 and ahead < end:
                n = min(READ_AHEAD, end - ahead)
                os.posix_fadvise(fd, ahead, n, os.POSIX_FADV_WILLNEED)
                ahead += n
            chunk = os.pread(fd, min(chunk_size, end - offset), offset)
            if not chunk:
                return  # shrank under us
            yield chunk
            offset += len(chunk)


def _reflink(src_fd, dst_fd):
    """Share ``src_fd``'s extents with ``dst_fd``; False if unsupported."""
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
        return True
    except OSError as e:
        if e.errno in _UNSUPPORTED:
            return False
        raise


def _copy_range(src_fd, dst_fd, offset, length, writeback):
    """Copy one data extent in the kernel; False if unsupported here."""
    done = 0
    while done < length:
        writeback.written_to(offset + done)
        try:
            n = os.copy_file_range(src_fd, dst_fd,
                                   min(COPY_CHUNK, length - done),
                                   offset + done, offset + done)
        except OSError as e:
            if e.errno in _UNSUPPORTED and done == 0:
                return False
            raise
        if n == 0:
            # The source shrank under us: a copy would be silently short.
            raise OSError(errno.EIO, 'source file shrank during copy')
        done += n
    return True


def _copy_by_reading(src_fd, writer, offset, length):
    """Copy one range through user space, still skipping zero blocks."""
    done = 0
    while done < length:
        buf = os.pread(src_fd, min(COPY_CHUNK, length - done),
                       offset + done)
        if not buf:
            raise OSError(errno.EIO, 'source file shrank during copy')
        writer.offset = offset + done
        writer.write(buf)
        done += len(buf)


def copy_fd(src_fd, dst_fd, size=None):
    """Copy the open regular file ``src_fd`` into the empty ``dst_fd``.

    Tries a reflink first (nothing written at all); else copies each data
    extent (SEEK_DATA/SEEK_HOLE) with ``copy_file_range``; where even that
    is missing, reads the data and writes it with ``SparseWriter``. Holes
    stay holes in every case. For callers that hold both descriptors (a
    ``staging.Part``, a checked cache entry). Does not fsync, but starts
    writing the copy out as it goes (``Writeback``), for the caller's
    fsync.

    :param size: bytes of ``src_fd`` (default: its fstat size).
    :returns: the number of bytes of data copied (0 for a reflink).
    """
    if size is None:
        size = os.fstat(src_fd).st_size
    return _copy_fd(src_fd, dst_fd, size)


def _copy_fd(src_fd, dst_fd, size):
    if size and _reflink(src_fd, dst_fd):
        return 0
    try:
        extents = list(_data_extents(src_fd, size))
    except OSError as e:
        if e.errno not in _UNSUPPORTED:
            raise
        # No SEEK_DATA here: treat the whole file as data and let the
        # zero-skipping writer find the holes.
        extents = [(0, size)]
    writer = None
    writeback = Writeback(dst_fd)
    copied = 0
    for offset, length in extents:
        if writer is None and _copy_range(src_fd, dst_fd, offset, length,
                                          writeback):
            copied += length
            continue
        if writer is None:
            writer = SparseWriter(dst_fd, writeback=True)
        before = writer.written
        _copy_by_reading(src_fd, writer, offset, length)
        copied += writer.written - before
    # Trailing holes: the length comes from the source, not the last write.
    os.ftruncate(dst_fd, size)
    return copied

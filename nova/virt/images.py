"""Verified fetch: the one place where an image's bytes become trusted.

An image is untrusted until ``fetch_verified`` has, in this order:

1. read its metadata (declared ``disk_format``, ``size``, checksums) and
   refused what this service cannot check or use;
2. streamed its bytes once into a private ``.part`` file next to the
   target, feeding oslo.utils' format inspectors (and this project's ploop
   inspector, ``format_ploop``: oslo has none) with every chunk before
   it is written, seeking over zero blocks (and the source's holes)
   instead of writing them; the hashes follow in their own threads, over
   what the part holds;
3. checked the byte count, that the detected format is the declared one
   (a raw disk detected as gpt is the one exception), that the
   inspector's ``safety_check()`` passes and that the virtual size fits;
4. asked ``qemu-img info -f <declared>`` to agree (format, virtual size,
   no backing file, no data-file, not encrypted) and, for qcow2 and
   ploop, ``qemu-img check`` to find it sound;
5. converted it (formats pinned) if a raw copy was asked for, into a
   second private part, while the hashes catch up;
6. checked both checksums (a mismatch wins over any other error: the
   bytes were not the image), fsynced, and linked it to its final name.

Any failure removes every file the fetch made and raises a typed
``ImageUnacceptable`` (or ``ImageNotFound``). The local image store runs
steps 2-4 on files it imports, through ``ImageStream`` and
``check_with_qemu_img`` below, so both apply the same rules.

Nothing here takes a lock: the image cache holds one around the fetch. A
flock on each ``.part`` only tells a later fetch which leftovers are a dead
process's (see ``remove_stale_parts``).
"""

import contextlib
import dataclasses
import errno
import hashlib
import os
import queue
import re
import threading

from oslo_log import log as logging
from oslo_utils.imageutils import format_inspector

from nova import exception
from nova import utils
from nova.virt import format_ploop
from nova.virt import qemu_img
from nova.virt import sparse
from nova.virt import staging

LOG = logging.getLogger(__name__)

#: Declared disk_format -> the qemu-img format of the same bytes. Anything
#: else is refused before a byte is downloaded: qemu-img must never be
#: asked about a format this project does not pin (see qemu_img.FORMATS).
DISK_FORMATS = {
    'raw': 'raw',
    'qcow2': 'qcow2',
    'iso': 'raw',
    'ploop': 'parallels',
}

#: Declared disk_format -> the inspector name that must be detected, where
#: the two differ (an inspector is named as qemu-img names its format).
_DETECTED_NAMES = {
    'ploop': format_ploop.ParallelsInspector.NAME,
}

#: Formats qemu-img must find sound (``qemu-img check``) and free of
#: trailing bytes before a fetch is accepted: those with metadata tables.
_CHECKED_FORMATS = ('qcow2', 'parallels')

#: Bytes held in memory while the inspectors decide a format. Every honest
#: image of DISK_FORMATS is decided within 256 KiB; a hostile header can
#: keep an inspector waiting until the end of the file (a VMDK grain
#: directory "at the end", a VHDX region table pointing far away), and the
#: whole download would be held. Past this many bytes the stream is
#: written to its private part file instead and judged at the end (a
#: qcow2's own header is judged at once, see ``ImageStream``).
MAX_PENDING = 1024 * 1024

#: Container formats that mean "the bytes are the disk": the others (ova,
#: docker, compressed...) wrap a disk in something qemu cannot boot.
CONTAINER_FORMATS = ('bare', 'ovf')

#: Checksum algorithms accepted in ``os_hash_algo`` (Glance's default is
#: sha512); md5 ``checksum`` is checked too when present.
HASH_ALGOS = ('sha256', 'sha384', 'sha512', 'sha3_256', 'sha3_384',
              'sha3_512')

#: Bytes a qcow2 may hold beyond its virtual size (see qcow2_max_bytes).
QCOW2_METADATA_FIXED = 32 * 1024 * 1024
QCOW2_METADATA_FRACTION = 16

#: Longest error text kept from a failed qemu-img (check can print one line
#: per corrupt cluster).
_MAX_REASON = 500

_HEX_RE = re.compile(r'^[0-9a-fA-F]{32,128}$')


@dataclasses.dataclass(frozen=True)
class VerifiedImage:
    """What ``fetch_verified`` put at the target.

    :ivar format: qemu-img format of the target file ('raw', 'qcow2' or
        'parallels').
    :ivar virtual_size: bytes of disk the image holds.
    :ivar disk_format: the format the image service declared.
    :ivar size: bytes downloaded (the image as stored).
    """
    format: str
    virtual_size: int
    disk_format: str
    size: int


@dataclasses.dataclass(frozen=True)
class Inspection:
    """The verdict of ``ImageStream.finish()``.

    :ivar detected: the inspector's format name ('raw', 'gpt', 'qcow2'...).
    :ivar virtual_size: bytes of disk (for raw-like formats: ``size``).
    :ivar size: bytes streamed.
    :ivar checksum: md5 hex of the bytes.
    :ivar os_hash_algo, os_hash_value: the strong hash of the bytes.
    """
    detected: str
    virtual_size: int
    size: int
    checksum: str
    os_hash_algo: str
    os_hash_value: str


def qemu_format(image_id, disk_format):
    """Return the qemu-img format of a declared ``disk_format``.

    :raises: ImageFormatUnsupported for anything not in DISK_FORMATS.
    """
    try:
        return DISK_FORMATS[disk_format]
    except (KeyError, TypeError):
        raise exception.ImageFormatUnsupported(image_id=image_id,
                                               disk_format=disk_format)


def qcow2_max_bytes(virtual_size):
    """Most bytes a qcow2 of ``virtual_size`` bytes of disk may hold.

    Its data (at most ``virtual_size``) plus a bounded allowance for its
    metadata: ``virtual_size / 16 + 32 MiB``. A fully allocated qcow2
    needs at most 3.2% more than its virtual size (512-byte clusters and
    64-bit refcounts: 8 bytes of L2 table and 8 of refcount block per
    cluster, ``qemu-img measure``), and about 10 MiB of fixed tables with
    2 MiB clusters; the allowance covers both with room. More bytes than
    this are not disk: padding, or internal snapshots and bitmaps, which
    a base image has no use for. The bound keeps a small disk from
    costing a large download and a large file in the cache.
    """
    return (virtual_size + virtual_size // QCOW2_METADATA_FRACTION +
            QCOW2_METADATA_FIXED)


def _check_hash_algo(image_id, algo):
    if algo not in HASH_ALGOS:
        raise exception.ImageMetadataInvalid(
            image_id=image_id, reason='os_hash_algo %r is not one of %s' % (
                algo, ', '.join(HASH_ALGOS)))


def _safety_reason(exc):
    failures = getattr(exc, 'failures', None) or {}
    if not failures:
        return str(exc)
    return '; '.join('%s: %s' % (name, failures[name])
                     for name in sorted(failures))


class _HashThread:
    """A hash updated in its own thread, so that two hashes use two cores.

    hashlib releases the GIL while it hashes a large buffer; md5 and sha512
    each cost about 1.4 s per GiB here, so running them side by side halves
    the time a fetch spends hashing, and the download (reading, inspecting,
    writing) goes on while the hash works.

    It is fed two kinds of work, in stream order: buffers (``update``:
    immutable ``bytes``, or holes, views of ``sparse.read_sparse``'s
    shared zeros), at most ``_MAX_BUFFERS`` of them held at once so that a
    slow hash slows the download instead of buffering it in memory; and
    ranges of the private part file already written (``update_from``),
    read back by the thread itself. Those cost no memory while they wait:
    the download runs at the speed of the disks, and the hash catches up
    while qemu-img checks and converts the part. It hashes what the part
    holds, the bytes that are checked, converted and published.
    """

    _STOP = object()
    _MAX_BUFFERS = 16

    def __init__(self, name):
        self._hash = hashlib.new(name, usedforsecurity=(name != 'md5'))
        self._queue = queue.SimpleQueue()
        self._buffers = threading.BoundedSemaphore(self._MAX_BUFFERS)
        self._aborted = False
        self._error = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='image-hash-%s' % name)
        self._thread.start()

    def _run(self):
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            if isinstance(item, tuple):
                if not (self._aborted or self._error):
                    self._hash_range(*item)
                continue
            if not (self._aborted or self._error):
                self._hash.update(item)
            self._buffers.release()

    def _hash_range(self, fd, offset, length):
        try:
            end = offset + length
            while offset < end:
                data = os.pread(fd, min(sparse.COPY_CHUNK, end - offset),
                                offset)
                if not data:
                    raise OSError(errno.EIO, 'the part file shrank')
                self._hash.update(data)
                offset += len(data)
        except OSError as e:
            self._error = e

    def update(self, chunk):
        """Hash ``chunk``: immutable ``bytes`` or a hole
        (``sparse.is_hole``), held by reference until hashed.
        ``ImageStream.write`` copies any other buffer before it gets here.
        """
        self._buffers.acquire()
        self._queue.put(chunk)

    def update_from(self, fd, offset, length):
        """Hash ``length`` bytes of the file ``fd`` at ``offset``, read
        when their turn comes (they must be written by then)."""
        self._queue.put((fd, offset, length))

    def hexdigest(self):
        """Wait for every queued chunk; return the hex digest.

        :raises: OSError if a range could not be read back.
        """
        self.stop()
        if self._error is not None:
            raise self._error
        return self._hash.hexdigest()

    def stop(self):
        if self._thread.is_alive():
            self._queue.put(self._STOP)
            self._thread.join()

    def abort(self):
        """Stop without hashing what is still queued."""
        self._aborted = True
        self.stop()


class ImageStream:
    """Consume an image's bytes once: inspect, hash and write sparsely.

    Use it as a context manager (its hash threads stop on the way out).
    Feed it chunks with ``write()`` (or a whole iterator with
    ``consume()``), then call ``finish()`` for the verdict. It raises as
    soon as the bytes cannot be acceptable: more bytes than ``size``, a
    format decided early that is not the declared one or fails its safety
    check, a virtual size above ``max_virtual_size``. Chunks are held in
    memory until the inspectors have decided the format, so a refused
    header is never written. At most MAX_PENDING bytes (and a chunk) are
    held: a stream still undecided then is written on to ``fd`` and
    judged by ``finish()``, except that a declared qcow2's or ploop's
    header is judged at once on the bytes held (format, safety check,
    virtual size), as a decided stream's is. The caller owns ``fd`` and
    removes the file on any error.

    :param image_id: for error messages.
    :param disk_format: the declared format (a key of DISK_FORMATS).
    :param fd: a new, empty file opened for writing, or None to only
        inspect and hash.
    :param size: the declared byte count, or None if unknown (import).
    :param max_virtual_size: bytes, or None for no bound.
    :param os_hash_algo: the strong hash to compute.
    :param md5: also compute the legacy md5 ``checksum``. A fetch that has
        a strong hash to verify skips it, as glanceclient does: hashing is
        most of the CPU time of a large image's fetch.
    :param progress: optional ``callback(bytes_done, bytes_total)``;
        ``bytes_total`` is ``size`` (None if unknown).
    :param writeback: ``fd`` is kept and fsynced once complete: start
        writing its data out during the stream (``sparse.Writeback``), so
        that the fsync is short. Not for a part that is converted and
        removed, whose writes would only compete with the conversion's.
    """

    def __init__(self, image_id, disk_format, fd=None, size=None,
                 max_virtual_size=None, os_hash_algo='sha512', md5=True,
                 progress=None, writeback=False):
        self.image_id = image_id
        self.disk_format = disk_format
        self.qemu_format = qemu_format(image_id, disk_format)
        self.size = size
        self.max_virtual_size = max_virtual_size
        self.progress = progress
        self.bytes_done = 0
        self._os_hash_algo = os_hash_algo
        _check_hash_algo(image_id, os_hash_algo)
        self._hashes = {'os_hash_value': _HashThread(os_hash_algo)}
        if md5:
            self._hashes['checksum'] = _HashThread('md5')
        self._writer = (sparse.SparseWriter(fd, writeback=writeback)
                        if fd is not None else None)
        # All inspectors see every chunk: detection must not trust the
        # declared format to choose which parsers look at the bytes.
        self._wrapper = _Detector()
        self._decided = False
        self._pending = []
        self._pending_bytes = 0

    @property
    def written(self):
        """Bytes actually written to the file (zero blocks excluded)."""
        return self._writer.written if self._writer else 0

    def consume(self, chunks):
        """``write()`` every chunk of the iterable ``chunks``."""
        for chunk in chunks:
            self.write(chunk)

    def abort(self):
        """Stop the hash threads, dropping what they have not hashed yet
        (idempotent; the verdict of ``finish()`` stops them too)."""
        for digest in self._hashes.values():
            digest.abort()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.abort()

    def write(self, chunk):
        """Inspect, hash and store one chunk (bytes-like).

        ``chunk`` may be a buffer the caller reuses once this returns:
        anything but ``bytes`` or a hole (``sparse.is_hole``) is copied
        once, here, so that the hashes, the inspectors and the chunks
        held until the verdict all see the same immutable bytes.
        """
        if not chunk:
            return
        if type(chunk) is not bytes and not sparse.is_hole(chunk):
            chunk = bytes(chunk)
        n = len(chunk)
        if self.size is not None and self.bytes_done + n > self.size:
            raise exception.ImageCorrupt(
                image_id=self.image_id, reason='more than the declared %d '
                'bytes' % self.size)
        if (self.max_virtual_size is not None and self.qemu_format == 'raw'
                and self.bytes_done + n > self.max_virtual_size):
            # A raw disk is as large as its bytes: stop filling storage
            # with something that will be refused anyway.
            raise exception.ImageTooLarge(
                image_id=self.image_id, virtual_size=self.bytes_done + n,
                disk_size=self.max_virtual_size)
        self._wrapper.eat(chunk)
        self.bytes_done += n
        if self._decided:
            self._store(chunk)
        else:
            # Nothing reaches the disk before a verdict: a hostile header
            # or an oversized qcow2 is refused with no byte written. What
            # is held is hashed from memory.
            self._hash(chunk)
            self._pending.append(chunk)
            self._pending_bytes += n
            if self._wrapper.formats is not None:
                # Every inspector has seen enough (256 KiB for any honest
                # image): judge now rather than after downloading the rest
                # of a hostile one. finish() judges again; this verdict
                # only refuses.
                self._decided = True
                self._judge()
                self._flush_pending()
            elif self._pending_bytes > MAX_PENDING:
                # A header that keeps an inspector waiting for the end of
                # the file (a VMDK grain directory "at the end", VHDX
                # metadata far away) must not make us hold the whole
                # download in memory: write on to the private part file
                # and leave the verdict to finish(), once a declared
                # qcow2's or ploop's own header has been judged on the
                # bytes held.
                self._decided = True
                self._judge_declared_header()
                self._flush_pending()
        if self.progress is not None:
            self.progress(self.bytes_done, self.size)

    def _hash(self, chunk):
        for digest in self._hashes.values():
            digest.update(chunk)

    def _store(self, chunk, hashed=False):
        """Write ``chunk`` (unless there is no file) and hash it: data
        from the file once written, zeros from the shared holes."""
        writer = self._writer
        if writer is None or sparse.is_hole(chunk):
            if writer is not None:
                writer.write(chunk)
            if not hashed:
                self._hash(chunk)
            return
        offset = writer.offset
        writer.write(chunk)
        if hashed:
            return
        # Zeros at the chunk's end are not in the file yet (finish()
        # sets its length): they are hashed as holes.
        end = offset + len(chunk)
        data_end = min(end, max(writer.end, offset))
        for digest in self._hashes.values():
            if data_end > offset:
                digest.update_from(writer.fd, offset, data_end - offset)
            for zeros in sparse.zeros(end - data_end):
                digest.update(zeros)

    def _flush_pending(self):
        pending, self._pending = self._pending, []
        self._pending_bytes = 0
        for chunk in pending:
            self._store(chunk, hashed=True)

    def _judge_declared_header(self):
        """Judge a declared qcow2 or ploop on its own header, from the
        bytes held.

        Called when MAX_PENDING bytes left some inspector undecided. That
        takes no magic number: a VHDX region table at 192 KiB is read
        whatever the first bytes are, so a qcow2 (or a ploop, whose header
        cluster is 1 MiB) can carry one in its header cluster. Without
        this, such a bomb would be written up to its declared size before
        ``finish()`` refused it. Its header (512 bytes for qcow2, 64 for
        ploop) is long read: what ``_judge`` would say of it is said now,
        before a byte is written. A ploop's BAT may not be read yet (it is
        4 bytes per cluster of disk): its entries are judged by
        ``finish()``. A raw image needs nothing here: its size is bounded
        chunk by chunk.
        """
        if self.qemu_format == 'qcow2':
            inspector = format_inspector.QcowInspector()
        elif self.qemu_format == 'parallels':
            inspector = format_ploop.ParallelsInspector()
        else:
            return
        for chunk in self._pending:
            inspector.eat_chunk(chunk)
            if inspector.complete:
                break
        if not inspector.format_match:
            raise exception.ImageFormatMismatch(
                image_id=self.image_id, declared=self.disk_format,
                detected='not %s' % self.disk_format)
        self._check_inspector(inspector, header_only=True)

    def _judge(self):
        """Return (detected name, virtual size), or raise the verdict."""
        matches = self._wrapper.formats
        if matches is None:
            # finish() was called: everything undecided did not match.
            raise exception.ImageUnacceptable(
                image_id=self.image_id, reason='its format could not be '
                'decided')
        detected = '+'.join(sorted(str(m) for m in matches))
        if len(matches) != 1:
            # e.g. an ISO with a qcow2 header: two parsers, two readings.
            raise exception.ImageFormatMismatch(
                image_id=self.image_id, declared=self.disk_format,
                detected=detected)
        inspector = matches[0]
        expected = _DETECTED_NAMES.get(self.disk_format, self.disk_format)
        if detected != expected and not (
                self.disk_format == 'raw' and detected == 'gpt'):
            raise exception.ImageFormatMismatch(
                image_id=self.image_id, declared=self.disk_format,
                detected=detected)
        return detected, self._check_inspector(inspector)

    def _check_inspector(self, inspector, header_only=False):
        """Safety check and size bounds of the declared format's
        inspector; return the virtual size.

        :param header_only: judge what the header alone says (a ploop's
            BAT may still be streaming): its safety check if the
            inspector is complete, else the ploop header's own check.
        """
        try:
            if header_only and not inspector.complete:
                inspector.check_header()
            else:
                inspector.safety_check()
        except format_inspector.SafetyCheckFailed as e:
            raise exception.ImageUnsafe(image_id=self.image_id,
                                        reason=_safety_reason(e))
        except format_inspector.ImageFormatError as e:
            raise exception.ImageUnsafe(image_id=self.image_id,
                                        reason=str(e))
        if self.qemu_format == 'raw':
            # An inspector's size for raw-like content is only what it has
            # read; qemu sees the whole file.
            virtual_size = self.bytes_done
        else:
            virtual_size = inspector.virtual_size
            if not virtual_size:
                raise exception.ImageUnacceptable(
                    image_id=self.image_id,
                    reason='its virtual size could not be read')
            if (self.max_virtual_size is not None and
                    virtual_size > self.max_virtual_size):
                raise exception.ImageTooLarge(
                    image_id=self.image_id, virtual_size=virtual_size,
                    disk_size=self.max_virtual_size)
            # Judged on the declared size as soon as the header is read:
            # a padded image is refused before its padding is downloaded.
            # A ploop's BAT is 4 bytes per cluster, but its data is whole
            # clusters: the qcow2 bound holds one of the clusters ploop
            # makes (1 MiB), not one whose last cluster overshoots the
            # disk by more than the allowance (clusters of tens of MiB),
            # which is refused: this fails closed.
            size = max(self.size or 0, self.bytes_done)
            if size > qcow2_max_bytes(virtual_size):
                raise exception.ImageDamaged(
                    image_id=self.image_id, reason='it is %d bytes, more '
                    'than a %s of %d bytes of disk needs (at most %d)' % (
                        size, self.disk_format, virtual_size,
                        qcow2_max_bytes(virtual_size)))
        return virtual_size

    def finish(self, checksum=None, os_hash_value=None,
               verify_hashes=True):
        """End of stream: check everything and return an ``Inspection``.

        :param checksum: expected md5 hex, or None.
        :param os_hash_value: expected hex of ``os_hash_algo``, or None.
        :param verify_hashes: False to return before the hashes are done
            (they catch up on the part file meanwhile): the Inspection then
            has no digests, and ``verify_hashes()`` must check them before
            anything made from the bytes is trusted.
        :raises: ImageCorrupt (size or checksum), ImageFormatMismatch,
            ImageUnsafe, ImageTooLarge, ImageUnacceptable.
        """
        self._wrapper.close()
        if self.size is not None and self.bytes_done != self.size:
            raise exception.ImageCorrupt(
                image_id=self.image_id, reason='got %d bytes, expected %d' % (
                    self.bytes_done, self.size))
        self._expected = {'checksum': checksum,
                          'os_hash_value': os_hash_value}
        for name, expected in self._expected.items():
            if expected is not None and name not in self._hashes:
                raise exception.InvalidInput(
                    reason='%s was not computed for image %s' % (
                        name, self.image_id))
        digests = self._check_hashes() if verify_hashes else {}
        detected, virtual_size = self._judge()
        # An image shorter than what the inspectors needed to decide is
        # written only now, after the verdict.
        self._flush_pending()
        if self._writer is not None:
            self._writer.finish()
        self._inspection = Inspection(
            detected=detected, virtual_size=virtual_size,
            size=self.bytes_done, checksum=digests.get('checksum'),
            os_hash_algo=self._os_hash_algo,
            os_hash_value=digests.get('os_hash_value'))
        return self._inspection

    def verify_hashes(self):
        """After ``finish(verify_hashes=False)``: wait for the hashes,
        check them, and return the complete ``Inspection``.

        :raises: ImageCorrupt if a checksum differs.
        """
        digests = self._check_hashes()
        return dataclasses.replace(self._inspection,
                                   checksum=digests.get('checksum'),
                                   os_hash_value=digests['os_hash_value'])

    def _check_hashes(self):
        actual = {name: digest.hexdigest()
                  for name, digest in self._hashes.items()}
        for name, expected in self._expected.items():
            if expected is not None and expected.lower() != actual[name]:
                raise exception.ImageCorrupt(
                    image_id=self.image_id, reason='%s is %s, expected %s' % (
                        name, actual[name], expected))
        return actual


class _Detector:
    """Every inspector, oslo.utils' and this project's, on every chunk.

    oslo's ``InspectWrapper`` runs the inspectors oslo.utils has; this
    project's own (``format_ploop.ParallelsInspector``: oslo has none for
    ploop) run beside it, on the same chunks, and ``formats`` merges the
    verdicts with the wrapper's rules: undecided (None) until every
    inspector has seen enough or the stream has ended, raw only when
    nothing specific matched, and every specific match listed (two are a
    mismatch for the caller).
    """

    #: This project's inspectors, beside oslo.utils' ALL_FORMATS.
    EXTRA_INSPECTORS = (format_ploop.ParallelsInspector,)

    def __init__(self):
        self._feed = _Feed()
        self._oslo = format_inspector.InspectWrapper(self._feed)
        self._extra = [cls() for cls in self.EXTRA_INSPECTORS]
        self._finished = False

    def eat(self, chunk):
        """Show ``chunk`` (the next bytes of the stream) to every
        inspector."""
        self._feed.put(chunk)
        next(self._oslo)
        for inspector in self._extra:
            inspector.eat_chunk(chunk)

    def close(self):
        """The stream has ended."""
        self._oslo.close()
        for inspector in self._extra:
            inspector.finish()
        self._finished = True

    @property
    def formats(self):
        """The matching inspectors, as ``InspectWrapper.formats``."""
        matches = self._oslo.formats
        if matches is None or not (self._finished or all(
                i.complete for i in self._extra)):
            return None
        extra = [i for i in self._extra if i.format_match]
        if not extra:
            return matches
        return [m for m in matches if str(m) != 'raw'] + extra


class _Feed:
    """The one-chunk "source" InspectWrapper pulls from.

    InspectWrapper inspects what it reads from its source; handing it each
    chunk this way keeps the download loop ours (hashing, sparse writes,
    size limits) while every inspector sees exactly the bytes stored.
    """

    def __init__(self):
        self._chunk = None

    def put(self, chunk):
        self._chunk = chunk

    def __next__(self):
        chunk, self._chunk = self._chunk, None
        if chunk is None:
            raise StopIteration
        return chunk


def check_with_qemu_img(image_id, path, disk_format, inspection,
                        max_virtual_size=None):
    """Make qemu-img agree with the inspector about the file at ``path``.

    ``qemu-img info`` runs with the declared format pinned; it must report
    that format, the same virtual size, no backing file, no data-file and
    no encryption. A qcow2 or a ploop must also pass ``qemu-img check`` (a
    truncated one reads back as zeros without an error otherwise) and hold
    no byte past the end ``check`` finds (its ``image-end-offset``).

    :param inspection: the ``Inspection`` of the same bytes.
    :returns: the ``qemu-img info`` dict.
    :raises: ImageUnacceptable subclasses.
    """
    fmt = qemu_format(image_id, disk_format)
    try:
        info = qemu_img.info(path, fmt)
    except exception.ProcessFailed as e:
        raise exception.ImageDamaged(
            image_id=image_id, reason='qemu-img info -f %s: %s' % (
                fmt, e.kwargs.get('reason', '')[:_MAX_REASON]))
    if info.get('format') != fmt:
        raise exception.ImageFormatMismatch(
            image_id=image_id, declared=disk_format,
            detected=info.get('format'))
    qemu_img.check_no_external_references(info, image_id)
    if info.get('encrypted'):
        raise exception.ImageUnsafe(image_id=image_id,
                                    reason='it is encrypted')
    virtual_size = info.get('virtual-size')
    if virtual_size != inspection.virtual_size:
        # Two parsers reading one header differently is how format
        # confusion attacks start: refuse rather than pick one.
        raise exception.ImageUnsafe(
            image_id=image_id, reason='qemu-img reads a virtual size of %s '
            'bytes, the inspector %d' % (virtual_size,
                                         inspection.virtual_size))
    if max_virtual_size is not None and virtual_size > max_virtual_size:
        raise exception.ImageTooLarge(image_id=image_id,
                                      virtual_size=virtual_size,
                                      disk_size=max_virtual_size)
    if fmt in _CHECKED_FORMATS:
        _check_tables(image_id, path, fmt)
    return info


def _check_tables(image_id, path, fmt):
    """``qemu-img check -f fmt``: sound, no leaks, nothing after its end
    (a qcow2's or a ploop's tables)."""
    try:
        # Exit code 2 (corruptions) and 3 (leaked clusters) fail here: a
        # published image has neither, and a damaged one must not become
        # a disk.
        report = qemu_img.check(path, fmt)
    except exception.ProcessFailed as e:
        raise exception.ImageDamaged(
            image_id=image_id, reason='qemu-img check: %s' % (
                e.kwargs.get('reason', '')[:_MAX_REASON]))
    except ValueError as e:
        raise exception.ImageDamaged(
            image_id=image_id, reason='qemu-img check printed no JSON: %s'
            % e)
    end = report.get('image-end-offset') if isinstance(report, dict) \
        else None
    if not isinstance(end, int) or isinstance(end, bool):
        raise exception.ImageDamaged(
            image_id=image_id, reason='qemu-img check reported no '
            'image-end-offset')
    size = os.stat(path).st_size
    if size > end:
        # Bytes qemu never reads: padding that costs a download and
        # space in the cache for nothing (or data smuggled along).
        raise exception.ImageDamaged(
            image_id=image_id, reason='%d bytes after its end at %d' % (
                size - end, end))


# --- private files next to the target ------------------------------------

#: The target a fetch's part file is for (see ``staging.part_target``).
part_target = staging.part_target


def remove_stale_parts(target):
    """Remove ``.part`` files of ``target`` left by dead fetches.

    ``target`` is a path; its directory is opened without following a
    link (see ``staging.remove_stale_parts``).

    :returns: the number of parts removed.
    """
    try:
        directory, name = staging.open_parent(target, strict=False)
    except (OSError, exception.UnsafePath):
        return 0
    with directory:
        return staging.remove_stale_parts(directory, name)


def _open_target_dir(target, directory):
    """(Directory, name, owned) for ``target``: ``directory`` if given
    (the caller's, already checked), else its parent opened here."""
    if not isinstance(target, str) or not os.path.isabs(target) or \
            '\0' in target or target.endswith(os.sep):
        raise exception.InvalidInput(
            reason='fetch target must be an absolute file path, got %r' %
            (target,))
    dirname, base = os.path.split(target)
    if base in ('.', '..'):
        raise exception.InvalidInput(
            reason='fetch target %s is not a file name' % target)
    if directory is not None:
        if os.path.abspath(dirname) != os.path.abspath(directory.path):
            raise exception.InvalidInput(
                reason='fetch target %s is not in %s' % (
                    target, directory.path))
        return directory, base, False
    try:
        directory, base = staging.open_parent(target, strict=False)
    except (FileNotFoundError, NotADirectoryError):
        raise exception.InvalidInput(
            reason='fetch target %s is not a file in an existing directory'
            % target)
    return directory, base, True


def _check_metadata(image_id, meta, max_virtual_size):
    """Refuse, before downloading, what cannot be verified or used."""
    if meta.get('status', 'active') != 'active':
        raise exception.ImageUnacceptable(
            image_id=image_id, reason='its status is %r, not active' %
            meta.get('status'))
    fmt = qemu_format(image_id, meta.get('disk_format'))
    if meta.get('container_format', 'bare') not in CONTAINER_FORMATS:
        raise exception.ImageUnacceptable(
            image_id=image_id, reason='container_format %r is not one of %s'
            % (meta.get('container_format'), ', '.join(CONTAINER_FORMATS)))
    size = meta.get('size')
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise exception.ImageMetadataInvalid(
            image_id=image_id, reason='size %r is not a byte count' % (
                size,))
    checksum = meta.get('checksum') or None
    os_hash_algo = meta.get('os_hash_algo') or None
    os_hash_value = meta.get('os_hash_value') or None
    if (os_hash_algo is None) != (os_hash_value is None):
        raise exception.ImageMetadataInvalid(
            image_id=image_id, reason='os_hash_algo and os_hash_value come '
            'together')
    for name, value in (('checksum', checksum),
                        ('os_hash_value', os_hash_value)):
        if value is not None and not (isinstance(value, str) and
                                      _HEX_RE.match(value)):
            raise exception.ImageMetadataInvalid(
                image_id=image_id, reason='%s %r is not hex' % (name, value))
    if checksum is None and os_hash_value is None:
        # Without a checksum a short or altered download goes unnoticed.
        raise exception.ImageMetadataInvalid(
            image_id=image_id, reason='it has no checksum to verify')
    if max_virtual_size is not None:
        # Refused before the download when the record already says so: a
        # raw image is as large as its bytes, and the service's own
        # virtual_size (untrusted, so only ever used to refuse) may tell.
        claimed = meta.get('virtual_size')
        for vsize in (size if fmt == 'raw' else None, claimed):
            if isinstance(vsize, int) and vsize > max_virtual_size:
                raise exception.ImageTooLarge(image_id=image_id,
                                              virtual_size=vsize,
                                              disk_size=max_virtual_size)
    return fmt, checksum, os_hash_algo or 'sha512', os_hash_value


def fetch_verified(context, image_api, image_id, target, output_format,
                   max_virtual_size=None, progress=None, directory=None):
    """Download, verify and (if asked) convert an image to ``target``.

    :param context: the RequestContext, passed to the image service.
    :param image_api: an image service (``nova.image.API()``): ``get`` and
        ``download``.
    :param image_id: the image's id.
    :param target: absolute path of the file to create, in a directory
        this service owns; it must not exist.
    :param output_format: 'raw' (converting a qcow2 or a ploop) or the
        image's own declared disk_format (kept as it is; an 'iso' is 'raw'
        on disk).
    :param max_virtual_size: bytes; a larger image is refused
        (ImageTooLarge) before any byte of it is written: a raw one (or one
        whose record's virtual_size says so) before its download, a qcow2
        on its header (read within its first MAX_PENDING bytes, held in
        memory until then).
    :param progress: optional ``callback(bytes_done, bytes_total)``, called
        after each downloaded chunk.
    :param directory: the ``staging.Directory`` that ``target`` is in, as
        the caller opened and checked it (the image cache's ``_base``);
        default: ``target``'s directory, opened here without following a
        link.
    :returns: VerifiedImage.
    :raises: InvalidInput (bad output_format or target), ImageNotFound,
        ImageUnacceptable and its subclasses (ImageCorrupt,
        ImageFormatMismatch, ImageFormatUnsupported, ImageUnsafe,
        ImageTooLarge, ImageDamaged, ImageMetadataInvalid) for the image's
        faults, ImageFetchFailed for the host's (no space, I/O error,
        qemu-img convert failing). On any error nothing the fetch made is
        left behind.
    """
    utils.validate_uuid(image_id, kind='image')
    directory, base, owned = _open_target_dir(target, directory)
    try:
        return _fetch(context, image_api, image_id, directory, base,
                      output_format, max_virtual_size, progress)
    finally:
        if owned:
            directory.close()


def _check_and_convert(image_id, directory, base, part, parts, disk_format,
                       src_fmt, dst_fmt, inspection, max_virtual_size):
    """qemu-img's checks of the downloaded ``part``, then its conversion
    to ``dst_fmt`` if that differs; return the part to publish (a new one,
    appended to ``parts``, for a conversion)."""
    # qemu-img is handed the descriptor we wrote (part.path), never the
    # part's name: a link swapped in at that name is not followed.
    check_with_qemu_img(image_id, part.path, disk_format, inspection,
                        max_virtual_size=max_virtual_size)
    if dst_fmt == src_fmt:
        return part
    final = staging.Part(directory, base, '.' + dst_fmt)
    parts.append(final)
    # Our own empty file of the right length, written in place (-n):
    # qemu-img never creates or follows a path itself, and unallocated
    # clusters stay holes.
    os.ftruncate(final.fd, inspection.virtual_size)
    try:
        # The part was just written: it is read from the page cache, and
        # a raw target's writes need not wait for each other (-W).
        qemu_img.convert(part.path, src_fmt, final.path, dst_fmt,
                         sparse=True, target_exists=True,
                         out_of_order=dst_fmt == 'raw')
    except exception.ProcessFailed as e:
        # The image passed qemu-img check: more likely the host (no
        # space) than the image; the reason tells which.
        raise exception.ImageFetchFailed(
            image_id=image_id, reason='qemu-img convert: %s' % (
                e.kwargs.get('reason', '')[:_MAX_REASON]))
    size = os.fstat(final.fd).st_size
    if size != inspection.virtual_size:
        raise exception.ImageDamaged(
            image_id=image_id, reason='converted to %d bytes, expected %d' % (
                size, inspection.virtual_size))
    return final


def _fetch(context, image_api, image_id, directory, base, output_format,
           max_virtual_size, progress):
    target = directory.join(base)
    meta = image_api.get(context, image_id)
    disk_format = meta.get('disk_format')
    if output_format not in ('raw', disk_format):
        raise exception.InvalidInput(
            reason="output_format must be 'raw' or the image's disk_format "
            "%r, got %r" % (disk_format, output_format))
    src_fmt, checksum, os_hash_algo, os_hash_value = _check_metadata(
        image_id, meta, max_virtual_size)
    dst_fmt = qemu_format(image_id, output_format)

    staging.remove_stale_parts(directory, base)
    parts = []
    try:
        part = staging.Part(directory, base)
        parts.append(part)
        with ImageStream(image_id, disk_format, fd=part.fd,
                         size=meta['size'],
                         max_virtual_size=max_virtual_size,
                         os_hash_algo=os_hash_algo,
                         md5=os_hash_value is None,
                         progress=progress,
                         writeback=dst_fmt == src_fmt) as stream:
            chunks = image_api.download(context, image_id)
            try:
                stream.consume(chunks)
            finally:
                close = getattr(chunks, 'close', None)
                if close is not None:
                    close()
            # The strong hash alone when the image has one (md5 only
            # for images that have nothing better), as glanceclient does.
            # The hashes catch up on the part while qemu-img checks and
            # converts it; nothing is published before they match.
            inspection = stream.finish(
                checksum=checksum if os_hash_value is None else None,
                os_hash_value=os_hash_value, verify_hashes=False)
            try:
                final = _check_and_convert(
                    image_id, directory, base, part, parts, disk_format,
                    src_fmt, dst_fmt, inspection, max_virtual_size)
            except Exception:
                # Bytes that are not the image are reported as such,
                # whatever qemu-img made of them.
                stream.verify_hashes()
                raise
            inspection = stream.verify_hashes()
        if final is not part:
            # The download is hashed and converted: free its space
            # before the target's fsync (its page cache in the background).
            part.discard(background=True)
        # fsync, link without replacing, fsync the directory: only a
        # durable name counts as fetched; a target that was there
        # already (FileExistsError) is left alone.
        final.publish()
    except BaseException as e:
        for p in parts:
            with contextlib.suppress(OSError):
                p.discard()
        if isinstance(e, FileExistsError) and e.filename == target:
            raise exception.InvalidInput(
                reason='fetch target %s already exists' % target) from e
        if isinstance(e, OSError):
            # The host failed (no space, I/O error), not the image.
            raise exception.ImageFetchFailed(image_id=image_id,
                                             reason=str(e)) from e
        raise
    LOG.info('Fetched image %(image_id)s (%(disk_format)s, %(size)d bytes, '
             '%(written)d written) to %(target)s as %(fmt)s',
             {'image_id': image_id, 'disk_format': disk_format,
              'size': inspection.size, 'written': stream.written,
              'target': target, 'fmt': dst_fmt})
    return VerifiedImage(format=dst_fmt,
                         virtual_size=inspection.virtual_size,
                         disk_format=disk_format, size=inspection.size)

"""The Linux system calls this project needs and Python's ``os`` lacks.

Each is called through ctypes on the C library already loaded in the
process, with its arguments typed, and raises ``OSError`` with the
call's errno on failure, as ``os`` does.
"""

import ctypes
import errno
import os
import threading

#: renameat2() flag: fail with EEXIST instead of replacing the target.
RENAME_NOREPLACE = 1

#: sync_file_range() flags (linux/fs.h).
SYNC_FILE_RANGE_WAIT_BEFORE = 1
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_WAIT_AFTER = 4

_lock = threading.Lock()
_libc = None


def _load():
    global _libc
    with _lock:
        if _libc is None:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p,
                                       ctypes.c_int, ctypes.c_char_p,
                                       ctypes.c_uint)
            libc.renameat2.restype = ctypes.c_int
            libc.sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64,
                                             ctypes.c_int64, ctypes.c_uint)
            libc.sync_file_range.restype = ctypes.c_int
            _libc = libc
    return _libc


def _raise_errno(filename=None):
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err), filename)


def rename_noreplace(dir_fd, old, new, filename=None):
    """Rename ``old`` to ``new``, both names in the directory ``dir_fd``,
    unless something is at ``new`` (renameat2 RENAME_NOREPLACE).

    :param filename: the path reported in the error (default: ``new``).
    :raises: FileExistsError if ``new`` exists (it is left alone);
        OSError for any other failure.
    """
    rc = _load().renameat2(dir_fd, os.fsencode(old), dir_fd,
                           os.fsencode(new), RENAME_NOREPLACE)
    if rc != 0:
        if ctypes.get_errno() == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, 'exists', filename or new)
        _raise_errno(filename or new)


def sync_file_range(fd, offset, length, wait=False):
    """Write ``length`` bytes of the file ``fd`` at ``offset`` back to
    storage.

    Without ``wait`` it only starts the write-out of the range's dirty
    pages and returns (``SYNC_FILE_RANGE_WRITE``): a writer that calls it
    behind itself keeps the disk busy while it goes on, so that its final
    ``fsync`` has little left to do. With ``wait`` it returns once the
    range is written. Neither makes anything durable: only ``fsync``
    writes the metadata and flushes the device's cache.

    :raises: OSError (ESPIPE for a pipe, EBADF...).
    """
    flags = SYNC_FILE_RANGE_WRITE
    if wait:
        flags |= SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WAIT_AFTER
    if _load().sync_file_range(fd, offset, length, flags) != 0:
        _raise_errno()

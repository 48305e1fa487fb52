"""What the page cache holds of a file, for tests (``cachestat``).

Linux 6.5's ``cachestat(2)`` counts a range's pages by state: in the
cache, dirty (not yet handed to the disk), under write-out. glibc has no
wrapper, so it is called by number (451 on every architecture).
"""

import ctypes
import dataclasses
import errno
import os

import pytest

_SYS_CACHESTAT = 451
_libc = ctypes.CDLL(None, use_errno=True)


class _Range(ctypes.Structure):
    _fields_ = [('off', ctypes.c_uint64), ('len', ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [('nr_cache', ctypes.c_uint64),
                ('nr_dirty', ctypes.c_uint64),
                ('nr_writeback', ctypes.c_uint64),
                ('nr_evicted', ctypes.c_uint64),
                ('nr_recently_evicted', ctypes.c_uint64)]


@dataclasses.dataclass(frozen=True)
class PageStat:
    """Pages of a range: cached, dirty, under write-out."""
    cached: int
    dirty: int
    writeback: int


def stat(fd, offset, length):
    """Return the PageStat of ``length`` bytes of ``fd`` at ``offset``.

    Skips (which fails a CI run) on a kernel older than 6.5.
    """
    result = _Stat()
    rc = _libc.syscall(ctypes.c_long(_SYS_CACHESTAT), ctypes.c_uint(fd),
                       ctypes.byref(_Range(offset, length)),
                       ctypes.byref(result), ctypes.c_uint(0))
    if rc != 0:
        err = ctypes.get_errno()
        if err == errno.ENOSYS:
            pytest.skip('this kernel has no cachestat (Linux >= 6.5)')
        raise OSError(err, os.strerror(err))
    return PageStat(cached=result.nr_cache, dirty=result.nr_dirty,
                    writeback=result.nr_writeback)

"""nova.virt.libc: the system calls, on the real kernel and filesystem."""

import errno
import os

import pytest

from nova.virt import libc
from tests.functional import page_cache

MiB = 1024 * 1024


def _write(fd, length):
    chunk = os.urandom(MiB)
    for offset in range(0, length, MiB):
        os.pwrite(fd, chunk, offset)


def test_rename_noreplace_renames(tmp_path):
    (tmp_path / 'old').write_bytes(b'data')
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        libc.rename_noreplace(dir_fd, 'old', 'new')
    finally:
        os.close(dir_fd)
    assert sorted(os.listdir(tmp_path)) == ['new']
    assert (tmp_path / 'new').read_bytes() == b'data'


def test_rename_noreplace_leaves_an_existing_target(tmp_path):
    (tmp_path / 'old').write_bytes(b'mine')
    (tmp_path / 'new').write_bytes(b'theirs')
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(FileExistsError) as e:
            libc.rename_noreplace(dir_fd, 'old', 'new', '/shown/path')
    finally:
        os.close(dir_fd)
    assert e.value.filename == '/shown/path'
    assert (tmp_path / 'old').read_bytes() == b'mine'
    assert (tmp_path / 'new').read_bytes() == b'theirs'


def test_rename_noreplace_reports_other_errors(tmp_path):
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(FileNotFoundError) as e:
            libc.rename_noreplace(dir_fd, 'missing', 'new')
    finally:
        os.close(dir_fd)
    assert e.value.filename == 'new'
    assert os.listdir(tmp_path) == []


def test_sync_file_range_starts_the_write_out(tmp_path):
    fd = os.open(tmp_path / 'f', os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _write(fd, 8 * MiB)
        assert page_cache.stat(fd, 0, 8 * MiB).dirty > 0

        libc.sync_file_range(fd, 0, 4 * MiB)

        # Handed to the disk (written, or still being written), no longer
        # waiting in the page cache; the rest is left alone.
        assert page_cache.stat(fd, 0, 4 * MiB).dirty == 0
        assert page_cache.stat(fd, 4 * MiB, 4 * MiB).dirty > 0
    finally:
        os.close(fd)


def test_sync_file_range_waits_when_asked(tmp_path):
    fd = os.open(tmp_path / 'f', os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _write(fd, 8 * MiB)

        libc.sync_file_range(fd, 0, 8 * MiB, wait=True)

        done = page_cache.stat(fd, 0, 8 * MiB)
        assert (done.dirty, done.writeback) == (0, 0)
    finally:
        os.close(fd)


def test_sync_file_range_refuses_a_pipe():
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as e:
            libc.sync_file_range(w, 0, MiB)
    finally:
        os.close(r)
        os.close(w)
    assert e.value.errno == errno.ESPIPE

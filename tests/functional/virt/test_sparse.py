"""nova.virt.sparse on the real filesystem: holes in, holes out."""

import errno
import os
import subprocess

import pytest

from nova.virt import sparse
from tests.functional import hostile_images as hostile
from tests.functional import page_cache

MiB = hostile.MiB
KiB = hostile.KiB


def _allocated(path):
    return os.stat(path).st_blocks * 512


@pytest.mark.parametrize('data_at', [
    ((0, MiB),),
    ((0, MiB), (5 * MiB, 3 * KiB), (16 * MiB - 4 * KiB, 4 * KiB)),
    (),
], ids=['start', 'scattered', 'empty'])
def test_sparse_copy_keeps_holes(tmp_path, data_at):
    src = hostile.raw(str(tmp_path / 'src'), 16 * MiB, data_at)
    dst = str(tmp_path / 'dst')

    copied = sparse.sparse_copy(src, dst)

    with open(src, 'rb') as a, open(dst, 'rb') as b:
        assert a.read() == b.read()
    assert os.path.getsize(dst) == 16 * MiB
    assert _allocated(dst) <= _allocated(src)
    assert copied in (0, _allocated(src))  # 0: reflinked
    assert os.stat(dst).st_mode & 0o777 == 0o600


def test_sparse_copy_mode(tmp_path):
    src = hostile.raw(str(tmp_path / 'src'), MiB)
    sparse.sparse_copy(src, str(tmp_path / 'dst'), mode=0o640)
    assert os.stat(tmp_path / 'dst').st_mode & 0o777 == 0o640 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_sparse_copy_refuses_existing_target(tmp_path):
    src = hostile.raw(str(tmp_path / 'src'), MiB)
    dst = tmp_path / 'dst'
    dst.write_bytes(b'keep')
    with pytest.raises(FileExistsError):
        sparse.sparse_copy(src, str(dst))
    assert dst.read_bytes() == b'keep'


def test_sparse_copy_never_follows_links(tmp_path):
    src = hostile.raw(str(tmp_path / 'src'), MiB)
    outside = tmp_path / 'outside'
    os.symlink(outside, tmp_path / 'dst')
    with pytest.raises(FileExistsError):
        sparse.sparse_copy(src, str(tmp_path / 'dst'))
    assert not outside.exists()
    os.symlink(src, tmp_path / 'link')
    with pytest.raises(OSError):
        sparse.sparse_copy(str(tmp_path / 'link'), str(tmp_path / 'dst2'))
    assert not (tmp_path / 'dst2').exists()


def _assert_refused_as_not_a_file(src, dst):
    with pytest.raises(OSError) as e:
        sparse.sparse_copy(src, dst)
    assert e.value.errno == errno.EINVAL
    assert e.value.strerror == 'not a regular file'
    assert e.value.filename == src


def test_sparse_copy_refuses_non_files(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    _assert_refused_as_not_a_file(str(src), str(tmp_path / 'dst'))
    assert sorted(os.listdir(tmp_path)) == ['src']


# No writer ever opens the FIFO: an open or read that blocked would hang,
# and this bound turns that hang into a failure (it measures nothing).
@pytest.mark.timeout(120)
def test_sparse_copy_refuses_a_fifo_without_blocking(tmp_path):
    fifo = str(tmp_path / 'fifo')
    os.mkfifo(fifo)
    _assert_refused_as_not_a_file(fifo, str(tmp_path / 'dst'))
    assert sorted(os.listdir(tmp_path)) == ['fifo']


@pytest.mark.parametrize('chunk', [4096, 65536, 1000, 3 * MiB + 7])
def test_sparse_writer(tmp_path, chunk):
    src = hostile.raw(str(tmp_path / 'src'), 8 * MiB,
                      ((100, 5000), (MiB, MiB), (7 * MiB + 17, 10)))
    with open(src, 'rb') as f:
        data = f.read()
    dst = str(tmp_path / 'dst')
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        writer = sparse.SparseWriter(fd)
        for i in range(0, len(data), chunk):
            writer.write(data[i:i + chunk])
        writer.finish()
    finally:
        os.close(fd)
    with open(dst, 'rb') as f:
        assert f.read() == data
    # Each data range costs at most one 64 KiB block on either side.
    assert writer.written <= MiB + 3 * 2 * sparse.ZERO_BLOCK
    assert writer.offset == len(data)
    assert _allocated(dst) <= writer.written + 64 * KiB


def test_is_zero():
    assert sparse.is_zero(b'')
    assert sparse.is_zero(bytes(3 * sparse.ZERO_BLOCK + 5))
    assert not sparse.is_zero(bytes(3 * sparse.ZERO_BLOCK) + b'\1')
    assert not sparse.is_zero(memoryview(b'\0\0\1'))


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs mounted for one test (a real ENOSPC); needs root.
    Always unmounted, lazily if something still holds it."""
    if os.geteuid() != 0:
        pytest.skip('mounting a tmpfs needs root')
    mnt = tmp_path / 'small'
    mnt.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m,mode=0700',
                    'tmpfs', str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(['umount', '-l', str(mnt)], check=True)


def test_sparse_copy_failure_leaves_nothing(tmp_path, small_tmpfs):
    # 4 MiB of data into a 1 MiB filesystem: the copy runs out of space
    # partway, after the target was created and partly written.
    src = hostile.raw(str(tmp_path / 'src'), 8 * MiB, ((0, 4 * MiB),))
    free = os.statvfs(small_tmpfs).f_bfree
    with pytest.raises(OSError) as e:
        sparse.sparse_copy(src, str(small_tmpfs / 'dst'))
    assert e.value.errno == errno.ENOSPC
    assert os.listdir(small_tmpfs) == []
    # Removed and closed: none of its blocks is still held.
    assert os.statvfs(small_tmpfs).f_bfree == free


def test_copy_fd_between_descriptors_keeps_holes(tmp_path):
    src = hostile.raw(str(tmp_path / 'src'), 16 * MiB,
                      ((0, MiB), (8 * MiB, 4 * KiB)))
    dst = str(tmp_path / 'dst')
    src_fd = os.open(src, os.O_RDONLY)
    dst_fd = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        sparse.copy_fd(src_fd, dst_fd)
    finally:
        os.close(src_fd)
        os.close(dst_fd)
    with open(src, 'rb') as a, open(dst, 'rb') as b:
        assert a.read() == b.read()
    assert _allocated(dst) <= _allocated(src)


def _read_sparse(path, chunk_size=MiB):
    fd = os.open(path, os.O_RDONLY)
    try:
        return list(sparse.read_sparse(fd, chunk_size))
    finally:
        os.close(fd)


@pytest.mark.parametrize('data_at', [
    ((0, MiB),),
    ((0, MiB), (5 * MiB, 3 * KiB), (16 * MiB - 4 * KiB, 4 * KiB)),
    (),
    ((0, 16 * MiB),),
], ids=['start', 'scattered', 'empty', 'full'])
def test_read_sparse_yields_every_byte_and_holes_unread(tmp_path, data_at):
    src = hostile.raw(str(tmp_path / 'src'), 16 * MiB, data_at)
    with open(src, 'rb') as f:
        expected = f.read()

    chunks = _read_sparse(src, chunk_size=MiB)

    assert b''.join(chunks) == expected
    holes = sum(len(c) for c in chunks if sparse.is_hole(c))
    # Everything SEEK_HOLE calls a hole comes from the shared zeros (the
    # filesystem rounds data out to its blocks).
    assert holes >= 16 * MiB - _allocated(src)
    assert all(len(c) <= MiB for c in chunks if not sparse.is_hole(c))
    assert all(type(c) is bytes for c in chunks if not sparse.is_hole(c))


def test_read_sparse_without_seek_data_reads_all(tmp_path, monkeypatch):
    src = hostile.raw(str(tmp_path / 'src'), 4 * MiB, ((MiB, 5000),))
    real_lseek = os.lseek

    def lseek(fd, pos, how):
        if how in (os.SEEK_DATA, os.SEEK_HOLE):
            raise OSError(22, 'Invalid argument')
        return real_lseek(fd, pos, how)

    # A filesystem without SEEK_DATA (the syscall answers EINVAL) cannot
    # be mounted here: its answer is simulated.
    monkeypatch.setattr(sparse.os, 'lseek', lseek)
    chunks = _read_sparse(src)
    with open(src, 'rb') as f:
        assert b''.join(chunks) == f.read()
    assert not any(sparse.is_hole(c) for c in chunks)


def test_read_sparse_stops_where_a_shrunk_file_ends(tmp_path):
    src = hostile.raw(str(tmp_path / 'src'), 4 * MiB, ((0, 4 * MiB),))
    fd = os.open(src, os.O_RDONLY)
    try:
        stream = sparse.read_sparse(fd, MiB)
        first = next(stream)
        os.truncate(src, 2 * MiB)
        rest = list(stream)
    finally:
        os.close(fd)
    assert len(first) + sum(len(c) for c in rest) == 2 * MiB


def test_sparse_writer_skips_holes_without_writing(tmp_path):
    src = hostile.raw(str(tmp_path / 'src'), 32 * MiB,
                      ((3 * MiB, 100), (20 * MiB, MiB)))
    dst = str(tmp_path / 'dst')
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        writer = sparse.SparseWriter(fd)
        for chunk in _read_sparse(src):
            writer.write(chunk)
        writer.finish()
    finally:
        os.close(fd)
    with open(src, 'rb') as a, open(dst, 'rb') as b:
        assert a.read() == b.read()
    assert writer.offset == 32 * MiB
    assert writer.written <= MiB + 2 * sparse.ZERO_BLOCK
    assert _allocated(dst) <= writer.written + 64 * KiB


def test_is_hole_only_for_the_shared_zeros(tmp_path):
    src = hostile.raw(str(tmp_path / 'src'), 4 * MiB, ((0, 4 * KiB),))
    holes = [c for c in _read_sparse(src) if sparse.is_hole(c)]
    assert holes
    assert not sparse.is_hole(bytes(len(holes[0])))
    assert not sparse.is_hole(memoryview(bytes(len(holes[0]))))


@pytest.mark.parametrize('writeback', [True, False])
def test_sparse_writer_writeback_starts_write_out_behind_it(tmp_path,
                                                            writeback):
    batch = sparse.WRITEBACK_BATCH
    fd = os.open(tmp_path / 'dst', os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        writer = sparse.SparseWriter(fd, writeback=writeback)
        chunk = os.urandom(MiB)
        for _ in range(2 * batch // MiB):
            writer.write(chunk)
        behind = page_cache.stat(fd, 0, batch)
    finally:
        os.close(fd)
    # With writeback, the first batch was handed to the disk while the
    # writer went on; without it, it waits in the page cache for an fsync.
    assert (behind.dirty == 0) is writeback


def test_sparse_writer_writeback_on_a_pipe_is_left_out():
    r, w = os.pipe()
    try:
        writeback = sparse.Writeback(w)
        writeback.written_to(2 * sparse.WRITEBACK_BATCH)
        writeback.written_to(4 * sparse.WRITEBACK_BATCH)
    finally:
        os.close(r)
        os.close(w)


def test_copy_fd_starts_write_out_behind_it(tmp_path):
    size = 3 * sparse.WRITEBACK_BATCH
    src = hostile.raw(str(tmp_path / 'src'), size, ((0, size),))
    src_fd = os.open(src, os.O_RDONLY)
    dst_fd = os.open(tmp_path / 'dst', os.O_RDWR | os.O_CREAT | os.O_EXCL,
                     0o600)
    try:
        copied = sparse.copy_fd(src_fd, dst_fd)
        behind = page_cache.stat(dst_fd, 0, sparse.WRITEBACK_BATCH)
    finally:
        os.close(src_fd)
        os.close(dst_fd)
    assert copied == size  # not a reflink: tmp_path is not XFS
    assert behind.dirty == 0
    with open(src, 'rb') as a, open(tmp_path / 'dst', 'rb') as b:
        assert a.read() == b.read()

"""nova.virt.sparse on the real filesystem: holes in, holes out."""

import os

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
def test_copy_fd_keeps_holes(tmp_path, data_at):
    src = hostile.raw(str(tmp_path / 'src'), 16 * MiB, data_at)
    dst = str(tmp_path / 'dst')
    src_fd = os.open(src, os.O_RDONLY)
    dst_fd = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        copied = sparse.copy_fd(src_fd, dst_fd)
    finally:
        os.close(src_fd)
        os.close(dst_fd)

    with open(src, 'rb') as a, open(dst, 'rb') as b:
        assert a.read() == b.read()
    assert os.path.getsize(dst) == 16 * MiB
    assert _allocated(dst) <= _allocated(src)
    assert copied in (0, _allocated(src))  # 0: reflinked


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

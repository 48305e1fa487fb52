"""nova.virt.sparse on the real filesystem: holes in, holes out."""

import os

import pytest

from nova.virt import sparse
from tests.functional import hostile_images as hostile

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


def test_sparse_copy_refuses_non_files(tmp_path):
    with pytest.raises(OSError):
        sparse.sparse_copy(str(tmp_path), str(tmp_path / 'dst'))
    assert not (tmp_path / 'dst').exists()


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


@pytest.mark.parametrize('where', ['_copy_fd', 'fsync'])
def test_sparse_copy_failure_leaves_nothing(tmp_path, monkeypatch, where):
    src = hostile.raw(str(tmp_path / 'src'), MiB)
    dst = tmp_path / 'dst'
    no_space = OSError(28, 'No space left on device')
    if where == 'fsync':
        monkeypatch.setattr(sparse.os, 'fsync', _raiser(no_space))
    else:
        monkeypatch.setattr(sparse, '_copy_fd', _raiser(no_space))
    with pytest.raises(OSError) as e:
        sparse.sparse_copy(src, str(dst))
    assert e.value is no_space
    assert sorted(os.listdir(tmp_path)) == ['src']


def _raiser(exc):
    def fail(*args, **kwargs):
        raise exc
    return fail


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

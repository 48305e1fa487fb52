"""A Flat disk made from the cache shares the base's extents where the
filesystem can (XFS with reflink=1), and stays a sparse copy where it
cannot (ext4, tmpfs).

The XFS is real: tools/services/xfs.sh makes it on a loop device and names
its mount point in NOVA_TEST_XFS_DIR. Sharing is read from the kernel's
extent map (FIEMAP, through ``filefrag -v``): each extent carries a
``shared`` flag, and its physical block range.
"""

import os
import subprocess
import uuid

import pytest

import nova.conf
from nova.virt.libvirt import imagebackend
from nova.virt.libvirt.imagebackend import cache as image_cache
from tests.functional.virt.libvirt.imagebackend import helpers

CONF = nova.conf.CONF
MiB = helpers.MiB
IMAGE_SIZE = helpers.IMAGE_SIZE

#: (image format, force_raw_images): the base is raw, or the qcow2 image
#: kept as it is; a Flat disk is a copy of it either way.
CASES = [('raw', True), ('qcow2', True), ('qcow2', False)]

#: One qcow2 cluster (64 KiB) in XFS blocks (4 KiB).
QCOW2_CLUSTER_BLOCKS = 16


def extents(path):
    """[(logical, physical, length, flags)] of ``path``'s data, in fs
    blocks. Unwritten extents (space XFS preallocated while the base was
    written, which reads as zeros) are not data and are left out."""
    out = subprocess.run(['filefrag', '-v', path], check=True,
                         capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split(':')
        if len(parts) < 5 or not parts[0].strip().isdigit():
            continue
        logical = int(parts[1].split('..')[0])
        physical = int(parts[2].split('..')[0])
        length = int(parts[3])
        flags = set(filter(None, parts[-1].strip().split(',')))
        if 'unwritten' not in flags:
            found.append((logical, physical, length, flags))
    return found


def _fs_type(path):
    return subprocess.run(['stat', '-f', '-c', '%T', path], check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def xfs_instances(conf):
    """instances_path (and the lock path) on the reflink XFS."""
    root = os.environ.get('NOVA_TEST_XFS_DIR')
    if not root:
        pytest.skip('NOVA_TEST_XFS_DIR is not set (tools/services/xfs.sh)')
    assert _fs_type(root) == 'xfs'
    top = os.path.join(root, 'reflink-%s' % uuid.uuid4().hex)
    instances = os.path.join(top, 'instances')
    os.makedirs(instances)
    conf.config(instances_path=instances)
    conf.config(lock_path=os.path.join(instances, 'locks'),
                group='oslo_concurrency')
    yield instances
    # The XFS is small and shared by the whole run.
    subprocess.run(['rm', '-rf', top], check=True)


def _flat_disk(image_service, image_format, force_raw, size, cache):
    image_id = image_service.ids[image_format]
    base_fmt = 'raw' if force_raw or image_format == 'raw' else image_format
    record = helpers.make_record('flat', base_fmt, size, image_id=image_id)
    disk = imagebackend.backend_for(helpers.Instance(), record, cache=cache)
    disk.create_from_image(None, image_id, size)
    base = os.path.join(CONF.instances_path, '_base',
                        image_cache.image_entry_name(image_id, base_fmt))
    return disk, base, base_fmt


@pytest.mark.parametrize('size', [IMAGE_SIZE, 2 * IMAGE_SIZE],
                         ids=['same_size', 'grown'])
@pytest.mark.parametrize('image_format,force_raw', CASES,
                         ids=['raw', 'qcow2_force_raw', 'qcow2_kept'])
def test_flat_on_xfs_shares_the_base_extents(
        xfs_instances, cache, image_service, image_files, image_format,
        force_raw, size):
    disk, base, fmt = _flat_disk(image_service, image_format, force_raw,
                                 size, cache)

    disk_extents = extents(disk.path)
    base_extents = extents(base)
    assert disk_extents, 'the disk has no data at all'
    if fmt == 'qcow2' and size > IMAGE_SIZE:
        # qemu-img resize rewrote the qcow2 header: that cluster is the
        # disk's own now (copy on write), every other block still shared.
        shared = sum(n for _l, _p, n, flags in disk_extents
                     if 'shared' in flags)
        own = sum(n for _l, _p, n, flags in disk_extents
                  if 'shared' not in flags)
        assert own <= QCOW2_CLUSTER_BLOCKS
        assert sum(n for _l, _p, n, _f in base_extents) - shared <= (
            QCOW2_CLUSTER_BLOCKS)
    else:
        # Every block of the disk is the base's own block: nothing was
        # copied.
        assert all('shared' in flags for _l, _p, _n, flags in disk_extents)
        assert ({(lo, ph, n) for lo, ph, n, _f in disk_extents} ==
                {(lo, ph, n) for lo, ph, n, _f in base_extents})
    # And the guest still sees the image.
    assert helpers.same_content(disk.path, fmt, image_files['raw'], 'raw')
    assert helpers.layout(disk.path, fmt)['virtual_size'] == size


def test_guest_write_on_xfs_does_not_reach_the_base(
        xfs_instances, cache, image_service, image_files):
    disk, base, _fmt = _flat_disk(image_service, 'raw', True, IMAGE_SIZE,
                                  cache)
    with open(base, 'rb') as f:
        before = f.read()

    # What a guest writing its first blocks does to the disk file.
    with open(disk.path, 'r+b') as f:
        f.write(b'\xa5' * MiB)
        f.flush()
        os.fsync(f.fileno())

    with open(base, 'rb') as f:
        assert f.read() == before
    assert helpers.same_content(base, 'raw', image_files['raw'], 'raw')
    # The written range is the disk's own now, the rest still shared.
    first = extents(disk.path)[0]
    assert first[0] == 0 and 'shared' not in first[3]


@pytest.mark.parametrize('image_format,force_raw', CASES,
                         ids=['raw', 'qcow2_force_raw', 'qcow2_kept'])
def test_flat_without_reflink_is_a_sparse_copy(
        cache, image_service, image_files, image_format, force_raw):
    # instances_path is in the test's tmp_path: ext4 or tmpfs, no reflink.
    assert _fs_type(CONF.instances_path) != 'xfs'
    disk, base, fmt = _flat_disk(image_service, image_format, force_raw,
                                 IMAGE_SIZE, cache)

    disk_extents = extents(disk.path)
    assert not any('shared' in flags for _l, _p, _n, flags in disk_extents)
    base_physical = {ph for _l, ph, _n, _f in extents(base)}
    assert not base_physical & {ph for _l, ph, _n, _f in disk_extents}
    # Only the data was copied (the image holds ~4 MiB in 48 MiB).
    assert os.stat(disk.path).st_blocks * 512 < 8 * MiB
    assert helpers.same_content(disk.path, fmt, image_files['raw'], 'raw')

"""Upstream's PloopTestCase scenarios, checked by the ploop tool itself.

The contract suite (test_backends_contract.py) reads every Ploop disk through
qemu-img (``parallels``). Upstream's ``test_create_image`` is about the
ploop disk directory as ploop sees it: the image copied into
``root.hds``, its ``DiskDescriptor.xml`` in place, the size extended. Here
the real ``ploop`` tool (offline commands only: no kernel module) reads
what the backend made: ``ploop info -s`` on the descriptor reports the
recorded size, ``ploop check`` finds the delta consistent, and both hold
again after a grow.
"""

import os
import subprocess

import pytest

from nova import exception
from nova.objects import libvirt_disk
from nova.virt.libvirt import disk_funcs
from nova.virt.libvirt.imagebackend import backends
from nova.virt.libvirt.storage import ploop
from tests.functional.virt.libvirt.imagebackend import helpers

MiB = helpers.MiB
DISK_SIZE = 64 * MiB
# libploop 1.15 over-reads argv into the environment block: pad it, as
# the product's ploop wrapper does.
PLOOP_ENV = dict(os.environ, LC_ALL='C', NOVA_PLOOP_ENV_PAD='x' * 8192)


def ploop_tool(*args):
    return subprocess.run(('ploop',) + args, env=PLOOP_ENV,
                          capture_output=True, text=True)


def ploop_size(directory):
    """``ploop info -s`` of the disk directory, in bytes."""
    out = ploop_tool('info', '-s',
                     os.path.join(directory, ploop.DESCRIPTOR_NAME))
    assert out.returncode == 0, out.stderr
    for line in out.stdout.splitlines():
        key, _sep, value = line.partition(':')
        if key.strip() == 'size':
            return int(value) * 512
    raise AssertionError('no size in %r' % out.stdout)


def assert_ploop_consistent(directory):
    out = ploop_tool('check', os.path.join(directory, ploop.IMAGE_NAME))
    assert out.returncode == 0, out.stdout + out.stderr


def ploop_disk(cache, size=DISK_SIZE, disk_name='disk', **source):
    record = libvirt_disk.LibvirtDiskMetadata(
        backend='ploop', format='ploop', size=size, disk_name=disk_name,
        **source)
    record.validate()
    return backends.backend_for(helpers.Instance(), record, cache=cache)


@pytest.mark.parametrize('image_format', ['raw', 'qcow2'])
def test_create_image_copies_into_root_hds_and_extends(
        conf, cache, image_service, image_files, image_format):
    image_id = image_service.ids[image_format]
    disk = ploop_disk(cache, image_id=image_id)
    disk.create_from_image(None, image_id)
    assert sorted(os.listdir(disk.path)) == sorted(
        [ploop.IMAGE_NAME, ploop.DESCRIPTOR_NAME])
    # ploop's own view: the recorded size, larger than the image.
    assert ploop_size(disk.path) == DISK_SIZE > helpers.IMAGE_SIZE
    assert_ploop_consistent(disk.path)
    assert helpers.same_content(disk.image_path, 'parallels',
                                image_files['raw'], 'raw')


def test_create_image_from_a_ploop_image(conf, image_files, tmp_path):
    """Upstream's ploop-format case (the image copied to root.hds, its
    descriptor restored): here the image is verified and converted to raw
    by the fetch, and the disk is a new delta ploop itself finds sound."""
    cache, image_id, src = helpers.ploop_image(str(tmp_path),
                                               image_files['raw'])
    disk = ploop_disk(cache, image_id=image_id)
    disk.create_from_image(None, image_id)
    assert sorted(os.listdir(disk.path)) == sorted(
        [ploop.IMAGE_NAME, ploop.DESCRIPTOR_NAME])
    assert ploop_size(disk.path) == DISK_SIZE
    assert_ploop_consistent(disk.path)
    assert helpers.same_content(disk.image_path, 'parallels', src,
                                'parallels')


def test_grown_disk_is_what_ploop_reads(conf, cache, image_service,
                                        image_files):
    image_id = image_service.ids['raw']
    disk = ploop_disk(cache, image_id=image_id)
    disk.create_from_image(None, image_id)
    disk.resize(2 * DISK_SIZE)
    assert ploop_size(disk.path) == 2 * DISK_SIZE
    assert_ploop_consistent(disk.path)
    assert helpers.same_content(disk.image_path, 'parallels',
                                image_files['raw'], 'raw')


def test_grow_past_what_a_ploop1_delta_holds_is_refused_first(
        conf, cache, image_service, tmp_path):
    # ploop itself, asked for 3 TiB, wraps its 32-bit sector count and
    # exits 0: refused before it runs, the header as it was.
    image_id = image_service.ids['raw']
    disk = ploop_disk(cache, image_id=image_id)
    disk.create_from_image(None, image_id)
    with open(disk.image_path, 'rb') as f:
        header = f.read(64)

    with pytest.raises(exception.DiskResizeFailed) as e:
        disk.resize(3 << 40)

    assert 'ploop1' in str(e.value) and disk.instance_uuid in str(e.value)
    with open(disk.image_path, 'rb') as f:
        assert f.read(64) == header
    assert ploop_size(disk.path) == DISK_SIZE


def test_create_image_generated(conf, cache, tmp_path):
    name = 'ephemeral_1_vfat'
    disk = ploop_disk(cache, disk_name='disk.local', cache_name=name)
    disk.create_from_func(None, disk_funcs.make_ephemeral('vfat'), name,
                          DISK_SIZE)
    assert ploop_size(disk.path) == DISK_SIZE
    assert_ploop_consistent(disk.path)
    raw = str(tmp_path / 'readback.raw')
    subprocess.run(['qemu-img', 'convert', '-f', 'parallels', '-O', 'raw',
                    disk.image_path, raw], check=True)
    assert helpers.blkid_type(raw) == 'vfat'


def test_a_size_of_part_of_a_cluster_is_rounded_up(conf, cache,
                                                   image_service):
    # A root disk of root_gb 0 is as large as its image, often not whole
    # MiB: the disk is whole clusters, at least the record's size, and
    # grows (to whole clusters) or stays as it is, never refusing.
    image_id = image_service.ids['raw']
    size = DISK_SIZE + 512
    disk = ploop_disk(cache, size=size, image_id=image_id)
    disk.create_from_image(None, image_id)
    assert ploop_size(disk.path) == DISK_SIZE + MiB

    disk.resize(size + 512)
    assert ploop_size(disk.path) == DISK_SIZE + MiB

    disk.resize(DISK_SIZE + MiB + 512)
    assert ploop_size(disk.path) == DISK_SIZE + 2 * MiB
    assert_ploop_consistent(disk.path)


def test_a_size_ploop_would_wrap_is_refused(conf, cache, image_service,
                                            tmp_path):
    # Without the kernel module ploop makes ploop1 deltas, whose size wraps
    # at 2 TiB; ploop exits 0 all the same. Neither a create nor a grow
    # may end with a disk smaller than asked and say nothing.
    image_id = image_service.ids['raw']
    too_big = 3 * 1024 * 1024 * MiB
    disk = ploop_disk(cache, size=too_big, image_id=image_id)
    with pytest.raises(exception.DiskCreateFailed) as e:
        disk.create_from_image(None, image_id)
    assert '%d were asked' % too_big in str(e.value)
    instance_dir = os.path.dirname(disk.path)
    assert not os.path.exists(instance_dir) or os.listdir(instance_dir) == []

    disk = ploop_disk(cache, image_id=image_id)
    disk.create_from_image(None, image_id)
    with pytest.raises(exception.DiskResizeFailed) as e:
        disk.resize(too_big)
    assert '%d were asked' % too_big in str(e.value)
    assert disk.instance_uuid in str(e.value)


@pytest.mark.parametrize('where', ['absolute', 'up'])
def test_a_descriptor_naming_another_file_is_refused(conf, cache,
                                                     image_service, tmp_path,
                                                     where):
    # ploop grows the image its descriptor names, wherever that is: a
    # descriptor rewritten to name another delta (another instance's
    # disk) is refused before any tool runs, and that delta is untouched.
    image_id = image_service.ids['raw']
    disk = ploop_disk(cache, image_id=image_id)
    disk.create_from_image(None, image_id)
    victim_dir = tmp_path / 'victim'
    victim_dir.mkdir()
    victim = victim_dir / ploop.IMAGE_NAME
    out = ploop_tool('init', '-s', '%dK' % (DISK_SIZE // 1024), '-t', 'none',
                     str(victim))
    assert out.returncode == 0, out.stderr
    before = victim.read_bytes()
    name = (str(victim) if where == 'absolute' else
            os.path.relpath(str(victim), disk.path))
    descriptor = os.path.join(disk.path, ploop.DESCRIPTOR_NAME)
    with open(descriptor) as f:
        text = f.read()
    with open(descriptor, 'w') as f:
        f.write(text.replace('<File>root.hds</File>',
                             '<File>%s</File>' % name))

    with pytest.raises(exception.DiskLayoutMismatch) as e:
        disk.resize(2 * DISK_SIZE)
    assert name in str(e.value)
    with pytest.raises(exception.DiskLayoutMismatch):
        disk.verify()
    assert victim.read_bytes() == before


def test_descriptor_images_refuses_what_ploop_never_writes():
    assert ploop.descriptor_images(
        b'<a><Image><File>root.hds</File></Image></a>') == ['root.hds']
    for data in (b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>', b'<a>',
                 b'<a/>' + b' ' * ploop.MAX_DESCRIPTOR):
        with pytest.raises(ValueError):
            ploop.descriptor_images(data)

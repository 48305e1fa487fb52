"""Disks of the file backends attacked while they are made, grown and
removed: the real Flat, Qcow2 and Ploop, their real tools (qemu-img,
ploop), the image cache and a verified fetch underneath.

Each test runs the operation many times with a ``Racer`` swapping a name
the operation uses (a disk's part, the disk itself, the instance's
directory) for a link the moment it appears. Each run must fail closed
(a typed error, nothing published through the link) or succeed on its
own file; the host file (or the other instance's disk) the links point
at must stay untouched: content, mtime, inode.
"""

import contextlib
import itertools
import os
import uuid

import pytest

import nova.conf
from nova import exception
from nova.objects import libvirt_disk
from nova.virt.libvirt.imagebackend import backends
from nova.virt.libvirt.imagebackend import policy
from nova.virt.libvirt.imagebackend import specs
from tests.functional import helpers as func_helpers
from tests.functional.virt import racer

CONF = nova.conf.CONF
ROUNDS = 12
MiB = 1024 * 1024
SIZE = 64 * MiB
_FAILED_CLOSED = (exception.DiskCreateFailed, exception.DiskResizeFailed,
                  exception.DiskLayoutMismatch, exception.DiskAlreadyExists,
                  exception.DiskNotFound, exception.UnsafePath,
                  exception.PloopOperationUnsupported)

#: (backend, format of the base the record keeps): every file layout.
LAYOUTS = [('qcow2', 'raw'), ('qcow2', 'qcow2'), ('flat', 'raw'),
           ('flat', 'qcow2'), ('ploop', 'raw')]
#: (layout, source): a template is raw, so a qcow2 overlay is over raw.
CREATES = [(layout, source) for layout in LAYOUTS
           for source in ('image', 'func')
           if source == 'image' or layout != ('qcow2', 'qcow2')]


class Instance:
    def __init__(self):
        self.uuid = str(uuid.uuid4())


def _record(backend, base_format, source, size=SIZE, disk_name='disk'):
    spec = specs.SPECS[backend]
    record = libvirt_disk.LibvirtDiskMetadata(
        backend=backend, format=spec.new_disk_format(base_format),
        backing_format=spec.new_backing_format(base_format), size=size,
        disk_name=disk_name, **source)
    record.validate()
    return record


def _create(disk, source):
    """Create ``disk`` from its recorded image or raw template."""
    if source == 'image':
        disk.create_from_image(None, disk.record.image_id)
    else:
        disk.create_from_func(None, _fill, disk.record.cache_name, SIZE)


def _fill(target, size):
    # A template of our own bytes (written through the path the cache
    # hands out: its part's descriptor).
    with open(target, 'r+b') as f:
        f.write(b'template of ours' * 256)


def _source(images, base_format, source):
    if source == 'image':
        return {'image_id': images[base_format]['id']}
    return {'cache_name': policy.swap_template_name(SIZE // MiB)}


_moved = itertools.count()


def _mover(target):
    """A Racer swap for a directory (unlink cannot remove one): move it
    away, and a link to ``target`` takes its name."""
    def swap(path):
        os.rename(path, '%s.moved%d' % (path, next(_moved)))
        os.symlink(target, path)
    return swap


def _instance_dir(instance):
    path = os.path.join(CONF.instances_path, instance.uuid)
    os.makedirs(path, mode=0o755)
    return path


def _assert_ours(disk):
    """The published disk is a regular file of its record's format, and
    a qcow2 overlay is over its recorded base, never the host file."""
    st = os.lstat(disk.path)
    assert not os.path.islink(disk.path)
    info = func_helpers.qemu_info(disk.image_path, disk.qemu_format)
    assert info['virtual-size'] == disk.record.size
    if disk.record.backend == 'qcow2':
        assert info['backing-filename'] == disk._base_path()
    assert st.st_uid == os.geteuid()


@pytest.mark.parametrize('layout,source', CREATES, ids=[
    '%s-%s-%s' % (layout + (source,)) for layout, source in CREATES])
def test_disk_part_swapped(conf, images, cache, victim, layout, source):
    # The part a disk is built in is swapped for a link to a host file
    # (a file part) or moved away for one (a ploop part directory) at the
    # moment it appears: qemu-img create/convert, Flat's copy, the grow
    # and ploop init act on the part's descriptor, and publishing links
    # that descriptor, never the name.
    backend, base_format = layout
    instance = Instance()
    instance_dir = _instance_dir(instance)
    swap = _mover(victim.path) if backend == 'ploop' else None
    with racer.Racer(instance_dir, r'^\.disk\.[0-9a-f]{16}\.part$',
                     victim.path, swap=swap) as race:
        for _ in range(ROUNDS):
            disk = backends.backend_for(instance, _record(
                backend, base_format, _source(images, base_format, source)),
                cache=cache)
            try:
                _create(disk, source)
            except _FAILED_CLOSED:
                assert not os.path.lexists(disk.path)
                continue
            _assert_ours(disk)
            disk.remove()
    assert race.swaps > 0
    victim.assert_untouched()
    # No disk (or anything else) was published through a link.
    for name in os.listdir(instance_dir):
        assert name.startswith('.disk.'), name


@pytest.mark.parametrize('backend,base_format', LAYOUTS,
                         ids=['-'.join(x) for x in LAYOUTS])
def test_disk_swapped_during_resize(conf, images, cache, victim, backend,
                                    base_format):
    # The disk itself is replaced by a link to a host file as soon as it
    # is published; the resize that follows (verify, then grow: qemu-img
    # resize, ftruncate, ploop grow) must never reach the host file.
    instance = Instance()
    instance_dir = _instance_dir(instance)
    source = _source(images, base_format, 'image')
    swap = _mover(victim.path) if backend == 'ploop' else None
    with racer.Racer(instance_dir, r'^disk$', victim.path,
                     swap=swap) as race:
        for _ in range(ROUNDS):
            disk = backends.backend_for(
                instance, _record(backend, base_format, source), cache=cache)
            disk.remove()
            try:
                _create(disk, 'image')
                disk.resize(2 * SIZE)
            except _FAILED_CLOSED:
                continue
    assert race.swaps > 0
    victim.assert_untouched()


@pytest.mark.parametrize('backend,base_format', [('qcow2', 'raw'),
                                                 ('flat', 'raw'),
                                                 ('ploop', 'raw')])
def test_instance_dir_swapped_for_another_instances(conf, images, cache,
                                                    backend, base_format):
    # Instance A's directory is moved away and a link to instance B's
    # directory takes its name while A's disk is created and removed. B
    # holds a disk of the same name: a create that followed the link
    # would publish into B's directory, a remove would delete B's disk.
    source = _source(images, base_format, 'image')
    a, b = Instance(), Instance()
    b_disk = backends.backend_for(b, _record(backend, base_format, source),
                                  cache=cache)
    b_disk.create_from_image(None, source['image_id'])
    b_dir = os.path.dirname(b_disk.path)
    b_image = racer.Victim.existing(b_disk.image_path)
    b_layout = _listing(b_disk)
    a_dir = os.path.join(CONF.instances_path, a.uuid)
    with racer.Racer(CONF.instances_path, r'^%s$' % a.uuid, b_dir,
                     swap=_mover(b_dir)) as race:
        for _ in range(ROUNDS):
            if os.path.islink(a_dir):
                os.unlink(a_dir)
            a_disk = backends.backend_for(
                a, _record(backend, base_format, source), cache=cache)
            with contextlib.suppress(*_FAILED_CLOSED):
                a_disk.create_from_image(None, source['image_id'])
            with contextlib.suppress(*_FAILED_CLOSED):
                a_disk.remove()
    assert race.swaps > 0
    b_image.assert_untouched()
    assert _listing(b_disk) == b_layout


def _listing(disk):
    """Every name in the disk's instance directory (and in a ploop
    disk's own directory)."""
    instance_dir = os.path.dirname(disk.path)
    names = sorted(os.listdir(instance_dir))
    if os.path.isdir(disk.path):
        names += sorted(os.listdir(disk.path))
    return names


def test_flat_copy_never_reads_a_swapped_base(conf, images, cache,
                                              victim):
    # The cached base under a Flat copy is replaced by a link to a host
    # file of the same size whenever it is there: the copy opens the
    # checked base's descriptor (open_entry), never a name, so a disk
    # never holds the host file's bytes.
    image_id = images['raw']['id']
    entry = cache.ensure_image(None, image_id, 'raw')
    instance = Instance()
    base_dir = os.path.dirname(entry.path)
    with racer.Racer(base_dir, r'^%s$' % os.path.basename(entry.path),
                     victim.path) as race:
        for _ in range(ROUNDS):
            if os.path.islink(entry.path):
                os.unlink(entry.path)
            disk = backends.backend_for(instance, _record(
                'flat', 'raw', {'image_id': image_id}), cache=cache)
            try:
                disk.create_from_image(None, image_id)
            except (exception.CacheEntryInvalid,) + _FAILED_CLOSED:
                assert not os.path.lexists(disk.path)
                continue
            with open(disk.path, 'rb') as f:
                assert victim.CONTENT[:64] not in f.read(
                    len(victim.CONTENT))
            disk.remove()
    assert race.swaps > 0
    victim.assert_untouched()

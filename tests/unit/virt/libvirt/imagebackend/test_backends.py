"""Unit tests of the backend contract (base.py, flat.py, qcow2.py,
backend_for) on real files, without qemu-img: Flat raw disks need none."""

import os
import re
import types
from xml.etree import ElementTree as etree

import pytest

import nova.conf
from nova import exception
from nova.objects import libvirt_disk
from nova.virt.libvirt import imagebackend
from nova.virt.libvirt.imagebackend import cache as image_cache
from tests.unit.virt.libvirt.imagebackend import helpers

CONF = nova.conf.CONF
UUID = '6c4a8f1e-0a57-4a1b-9d2f-3e1b2c3d4e5f'
MiB = 1 << 20


def instance(uuid=UUID):
    return types.SimpleNamespace(uuid=uuid)


def record(**kw):
    fields = dict(backend='flat', format='raw', size=MiB, disk_name='disk',
                  image_id='raw-image')
    fields.update(kw)
    return libvirt_disk.LibvirtDiskMetadata(**fields)


def qcow2_record(**kw):
    fields = dict(backend='qcow2', format='qcow2', backing_format='raw')
    fields.update(kw)
    return record(**fields)


def disk_path(name='disk'):
    return os.path.join(os.path.realpath(CONF.instances_path), UUID, name)


# --- construction ---------------------------------------------------------

def test_backend_for_picks_the_recorded_backend(conf, cache):
    disk = imagebackend.backend_for(instance(), record(), cache=cache)
    assert isinstance(disk, imagebackend.Flat)
    disk = imagebackend.backend_for(instance(), qcow2_record(), cache=cache)
    assert isinstance(disk, imagebackend.Qcow2)
    assert set(imagebackend.BACKENDS) >= {'flat', 'qcow2'}


def test_backend_for_unknown_backend(conf):
    # rbd is a backend a record may name (specs.SPECS) that this host
    # really has no class for: no registry entry needs to be removed.
    assert 'rbd' not in imagebackend.BACKENDS
    rec = record(backend='rbd', rbd_pool='pool', volume_name='vol')
    rec.validate()
    with pytest.raises(exception.BackendUnavailable) as e:
        imagebackend.backend_for(instance(), rec)
    assert UUID in str(e.value) and 'disk' in str(e.value)
    assert e.value.kwargs['backend'] == 'rbd'
    assert not os.path.exists(os.path.join(CONF.instances_path, UUID))


@pytest.mark.parametrize('uuid', [
    '../x', UUID.upper(), UUID + '/..', None, '', 'a\0b'])
def test_instance_uuid_is_validated(conf, uuid):
    with pytest.raises(exception.InvalidUUID):
        imagebackend.Flat(instance(uuid), record())


def test_record_must_match_the_class(conf):
    with pytest.raises(exception.InvalidInput):
        imagebackend.Qcow2(instance(), record())


def test_record_is_validated(conf):
    with pytest.raises(exception.DiskMetadataInvalid):
        imagebackend.Flat(instance(), record(disk_name='../disk'))


def test_path_is_under_the_instance_dir(conf, cache):
    disk = imagebackend.Flat(instance(), record(disk_name='disk.local'),
                             cache=cache)
    assert disk.path == disk_path('disk.local')


def test_planted_link_cannot_lead_out(conf, cache, tmp_path):
    # The disk's own name is not resolved: the link is seen as the thing
    # at the disk's path, and nothing is written through it.
    os.makedirs(os.path.join(CONF.instances_path, UUID))
    target = tmp_path / 'victim'
    target.write_bytes(b'precious')
    os.symlink(str(target), os.path.join(CONF.instances_path, UUID, 'disk'))
    disk = imagebackend.Flat(instance(), record(), cache=cache)
    with pytest.raises(exception.DiskAlreadyExists):
        disk.create_from_image(None, 'raw-image')
    assert target.read_bytes() == b'precious'
    assert os.path.islink(disk.path)


def test_planted_directory_link_cannot_lead_out(conf, cache, tmp_path):
    outside = tmp_path / 'outside'
    outside.mkdir()
    os.makedirs(CONF.instances_path, exist_ok=True)
    os.symlink(str(outside), os.path.join(CONF.instances_path, UUID))
    disk = imagebackend.Flat(instance(), record(), cache=cache)
    with pytest.raises(exception.UnsafePath):
        disk.create_from_image(None, 'raw-image')
    assert os.listdir(outside) == []
    assert os.path.islink(os.path.join(CONF.instances_path, UUID))


# --- create arguments -------------------------------------------------------

def test_create_from_image_must_use_the_recorded_image(conf, cache):
    disk = imagebackend.Flat(instance(), record(), cache=cache)
    with pytest.raises(exception.InvalidInput, match=UUID):
        disk.create_from_image(None, 'qcow2-image')
    assert cache.fetches == {}


@pytest.mark.parametrize('size', [MiB - 1, MiB + 1, 0])
def test_create_from_image_must_use_the_recorded_size(conf, cache, size):
    disk = imagebackend.Flat(instance(), record(), cache=cache)
    with pytest.raises(exception.InvalidInput):
        disk.create_from_image(None, 'raw-image', size)
    assert not os.path.exists(os.path.join(CONF.instances_path, UUID))


def test_create_from_func_must_match_the_record(conf, cache):
    disk = imagebackend.Flat(
        instance(), record(image_id=None, cache_name='swap_1'), cache=cache)
    with pytest.raises(exception.InvalidInput):
        disk.create_from_func(None, lambda t, s: None, 'swap_2', MiB)
    with pytest.raises(exception.InvalidInput):
        disk.create_from_func(None, lambda t, s: None, 'swap_1', 2 * MiB)
    with pytest.raises(exception.InvalidInput):
        disk.create_from_func(None, 'mkswap', 'swap_1', MiB)


def test_qcow2_template_must_be_over_raw(conf, cache):
    disk = imagebackend.Qcow2(
        instance(), qcow2_record(image_id=None, cache_name='swap_1',
                                 backing_format='qcow2'), cache=cache)
    with pytest.raises(exception.InvalidInput):
        disk.create_from_func(None, lambda t, s: None, 'swap_1', MiB)


# --- Flat raw, end to end (no process needed) -------------------------------

def test_flat_raw_from_image_is_a_sparse_copy_grown(conf, cache):
    disk = imagebackend.Flat(instance(), record(size=4 * MiB), cache=cache)
    disk.create_from_image(None, 'raw-image')
    st = os.stat(disk.path)
    assert st.st_size == 4 * MiB
    assert st.st_blocks * 512 < MiB  # holes kept
    with open(disk.path, 'rb') as f:
        assert f.read(4097) == b'\x01' * 4096 + b'\0'
    assert oct(st.st_mode & 0o777) == '0o600'
    assert disk.exists()


def test_too_large_image_is_refused_before_writing(conf, cache):
    disk = imagebackend.Flat(instance(), record(size=MiB - 512),
                             cache=cache)
    with pytest.raises(exception.ImageTooLarge):
        disk.create_from_image(None, 'raw-image')
    assert not os.path.exists(os.path.join(CONF.instances_path, UUID))


def test_entry_larger_than_the_disk_is_refused(conf, images):
    class LaxCache(helpers.DictFetchCache):
        """Ignores max_virtual_size: the backend must still refuse."""

        def ensure_image(self, context, image_id, fmt,
                         max_virtual_size=None):
            return super().ensure_image(context, image_id, fmt)

    disk = imagebackend.Flat(instance(), record(size=MiB - 512),
                             cache=LaxCache(images))
    with pytest.raises(exception.FlavorDiskSmallerThanImage):
        disk.create_from_image(None, 'raw-image')
    assert not os.path.exists(disk.path)


def test_failed_create_leaves_nothing(conf, cache):
    """Flat's copy reads the base, so a base gone after the fetch fails
    it; a Qcow2 overlay never reads its base at create, so this is not in
    the contract suite (which covers failed creates of every backend)."""
    class BrokenCache(helpers.DictFetchCache):
        def ensure_image(self, *args, **kwargs):
            entry = super().ensure_image(*args, **kwargs)
            os.unlink(entry.path)  # the copy will fail
            return entry

    disk = imagebackend.Flat(instance(), record(),
                             cache=BrokenCache(cache.images))
    with pytest.raises(exception.DiskCreateFailed) as e:
        disk.create_from_image(None, 'raw-image')
    assert UUID in str(e.value) and 'disk' in str(e.value)
    assert not os.path.exists(os.path.join(CONF.instances_path, UUID))


def test_failed_create_keeps_an_existing_instance_dir(conf, cache):
    os.makedirs(os.path.join(CONF.instances_path, UUID))
    disk = imagebackend.Flat(instance(), record(image_id='missing'),
                             cache=cache)
    with pytest.raises(exception.ImageNotFound):
        disk.create_from_image(None, 'missing')
    assert os.listdir(os.path.join(CONF.instances_path, UUID)) == []


def test_flat_raw_from_func(conf, cache):
    def func(target, size):
        with open(target, 'r+b') as f:
            f.write(b'SWAPSPACE2')

    disk = imagebackend.Flat(
        instance(), record(image_id=None, cache_name='swap_1',
                           disk_name='disk.swap'), cache=cache)
    disk.create_from_func(None, func, 'swap_1', MiB)
    with open(disk.path, 'rb') as f:
        assert f.read(10) == b'SWAPSPACE2'
    assert os.stat(disk.path).st_size == MiB


def test_failed_func_leaves_nothing(conf, cache):
    def func(target, size):
        raise OSError('mkfs is missing')

    disk = imagebackend.Flat(
        instance(), record(image_id=None, cache_name='swap_1'), cache=cache)
    with pytest.raises(exception.DiskCreateFailed, match='mkfs is missing'):
        disk.create_from_func(None, func, 'swap_1', MiB)
    assert not os.path.exists(os.path.join(CONF.instances_path, UUID))
    assert os.listdir(os.path.join(CONF.instances_path, '_base')) == []


def test_preallocated_record(conf, cache):
    disk = imagebackend.Flat(
        instance(), record(size=4 * MiB, preallocated=True), cache=cache)
    disk.create_from_image(None, 'raw-image')
    st = os.stat(disk.path)
    assert st.st_size == 4 * MiB and st.st_blocks * 512 >= 4 * MiB


def test_preallocate_images_is_not_read_by_the_backend(conf, cache):
    conf.config(preallocate_images='space')
    disk = imagebackend.Flat(instance(), record(size=4 * MiB), cache=cache)
    disk.create_from_image(None, 'raw-image')
    assert os.stat(disk.path).st_blocks * 512 < 4 * MiB


# --- resize -----------------------------------------------------------------

def test_flat_raw_resize_is_a_truncate(conf, cache):
    disk = imagebackend.Flat(instance(), record(), cache=cache)
    disk.create_from_image(None, 'raw-image')
    disk.resize(MiB)  # same size: nothing to do
    disk.resize(3 * MiB)
    assert os.stat(disk.path).st_size == 3 * MiB


def test_resize_never_shrinks_a_disk_larger_than_its_record(conf, cache):
    """Flat only: Lvm and Ploop do not refuse this (no error, nothing
    cut) and Qcow2 raises DiskResizeFailed, against base.resize's
    DiskShrinkNotSupported, so it is not in the contract suite yet (which
    covers a shrink below the record for every backend)."""
    disk = imagebackend.Flat(instance(), record(size=2 * MiB), cache=cache)
    disk.create_from_image(None, 'raw-image')
    # A file larger than asked (a record that lags behind) is not cut.
    os.truncate(disk.path, 3 * MiB)
    with pytest.raises(exception.DiskShrinkNotSupported):
        disk.resize(2 * MiB)
    assert os.stat(disk.path).st_size == 3 * MiB


def test_guest_written_qcow2_header_is_still_raw(conf, cache, tmp_path):
    """A raw disk whose guest wrote a qcow2 header stays raw on resize."""
    secret = tmp_path / 'host-secret'
    secret.write_bytes(b'secret')
    disk = imagebackend.Flat(instance(), record(), cache=cache)
    disk.create_from_image(None, 'raw-image')
    header = helpers.qcow2_header(8 * MiB, str(secret))
    with open(disk.path, 'r+b') as f:
        f.write(header)
    disk.resize(2 * MiB)
    assert os.stat(disk.path).st_size == 2 * MiB
    with open(disk.path, 'rb') as f:
        assert f.read(len(header)) == header  # guest data untouched
    info = disk.libvirt_info('vda')
    assert info.driver_format == 'raw' and info.backing_store == []


# --- libvirt_info -----------------------------------------------------------

def test_flat_libvirt_info(conf, cache):
    disk = imagebackend.Flat(instance(), record(), cache=cache)
    xml = etree.fromstring(disk.libvirt_info(
        'vda', 'virtio', 'none', 'unmap').to_xml())
    assert xml.get('type') == 'file'
    assert xml.find('driver').attrib == {
        'name': 'qemu', 'type': 'raw', 'cache': 'none', 'discard': 'unmap'}
    assert xml.find('source').get('file') == disk_path()
    assert xml.find('target').attrib == {'dev': 'vda', 'bus': 'virtio'}
    # An empty backingStore: libvirt must not probe for one.
    store = xml.find('backingStore')
    assert store is not None and len(store) == 0


def test_qcow2_libvirt_info_names_the_base(conf, cache):
    disk = imagebackend.Qcow2(instance(), qcow2_record(), cache=cache)
    info = disk.libvirt_info('vdb', 'scsi')
    assert info.driver_format == 'qcow2'
    base = cache.image_path('raw-image', 'raw')
    assert [(b.path, b.format) for b in info.backing_store] == [
        (base, 'raw')]
    xml = etree.fromstring(info.to_xml())
    store = xml.find('backingStore')
    assert store.find('format').get('type') == 'raw'
    assert store.find('source').get('file') == base


def test_qcow2_libvirt_info_over_a_template(conf, cache):
    disk = imagebackend.Qcow2(
        instance(), qcow2_record(image_id=None, cache_name='swap_1'),
        cache=cache)
    [layer] = disk.libvirt_info('vdc').backing_store
    assert layer.path == cache.template_path('swap_1')
    assert layer.path.endswith('/_base/swap_1.raw')


def test_default_cache_is_the_process_cache(conf):
    disk = imagebackend.Flat(instance(), record())
    assert disk.cache is image_cache.get_cache()


def test_flat_raw_resize_does_not_follow_a_planted_link(conf, cache,
                                                        tmp_path):
    victim = tmp_path / 'victim'
    victim.write_bytes(b'x' * 10)
    os.makedirs(os.path.join(CONF.instances_path, UUID))
    os.symlink(str(victim), disk_path())
    disk = imagebackend.Flat(instance(), record(), cache=cache)
    # Not the regular file a raw disk is: refused, not followed.
    with pytest.raises(exception.DiskLayoutMismatch) as e:
        disk.resize(2 * MiB)
    assert UUID in str(e.value) and 'disk' in str(e.value)
    assert 'not a regular file' in str(e.value)
    assert victim.read_bytes() == b'x' * 10
    assert os.path.islink(disk_path())


def test_flat_raw_resize_of_a_planted_fifo_does_not_block(conf, cache):
    os.makedirs(os.path.join(CONF.instances_path, UUID))
    os.mkfifo(disk_path())
    disk = imagebackend.Flat(instance(), record(), cache=cache)
    with pytest.raises(exception.DiskLayoutMismatch,
                       match='not a regular file'):
        disk.resize(2 * MiB)


@pytest.mark.parametrize('name', ['.disk', '.disk.0123456789abcdef.part'])
def test_hidden_disk_names_are_refused(conf, name):
    with pytest.raises(exception.DiskMetadataInvalid, match='dot'):
        imagebackend.Flat(instance(), record(disk_name=name))


# --- build under a part, publish atomically --------------------------------

def test_disk_is_built_under_a_private_part_then_published(conf, cache,
                                                           monkeypatch):
    from nova.virt.libvirt.imagebackend import flat
    seen = []
    real_grow = flat.Flat._grow

    def grow(self, part, size):
        # Half way: the disk's name is not there yet, its part is, private.
        part_path = os.path.join(CONF.instances_path, UUID, part.name)
        seen.append((part.name, os.path.lexists(disk_path()),
                     oct(os.stat(part_path).st_mode & 0o777)))
        return real_grow(self, part, size)

    monkeypatch.setattr(flat.Flat, '_grow', grow)
    disk = imagebackend.Flat(instance(), record(size=2 * MiB), cache=cache)
    disk.create_from_image(None, 'raw-image')
    [(part, published, mode)] = seen
    assert re.match(r'^\.disk\.[0-9a-f]{16}\.part$', part)
    assert (published, mode) == (False, '0o600')
    assert os.listdir(os.path.join(CONF.instances_path, UUID)) == ['disk']
    st = os.stat(disk.path)
    assert st.st_size == 2 * MiB and st.st_nlink == 1


def test_create_removes_stale_parts_of_this_disk_only(conf, cache):
    d = os.path.join(CONF.instances_path, UUID)
    os.makedirs(d)
    stale = ['.disk.0123456789abcdef.part', '.disk.fedcba9876543210.part']
    others = ['.disk.local.0123456789abcdef.part',
              '.disk.0123456789abcdef.0123456789abcdef.part', 'console.log']
    for name in stale + others:
        with open(os.path.join(d, name), 'wb') as f:
            f.write(b'half')
    disk = imagebackend.Flat(instance(), record(), cache=cache)
    disk.create_from_image(None, 'raw-image')
    assert sorted(os.listdir(d)) == sorted(others + ['disk'])
    for name in stale:
        with open(os.path.join(d, name), 'wb') as f:
            f.write(b'half')
    disk.remove()
    assert sorted(os.listdir(d)) == sorted(others)


def test_disk_that_appears_meanwhile_is_kept_and_the_part_goes(
        conf, cache, monkeypatch):
    from nova.virt.libvirt.imagebackend import flat
    real_grow = flat.Flat._grow

    def grow(self, path, size):
        with open(disk_path(), 'wb') as f:
            f.write(b'not ours')
        return real_grow(self, path, size)

    monkeypatch.setattr(flat.Flat, '_grow', grow)
    disk = imagebackend.Flat(instance(), record(size=2 * MiB), cache=cache)
    with pytest.raises(exception.DiskAlreadyExists):
        disk.create_from_image(None, 'raw-image')
    assert os.listdir(os.path.join(CONF.instances_path, UUID)) == ['disk']
    with open(disk_path(), 'rb') as f:
        assert f.read() == b'not ours'


def test_failed_create_removes_its_part(conf, cache, monkeypatch):
    from nova.virt.libvirt.imagebackend import flat

    def grow(self, path, size):
        raise OSError('no space')

    monkeypatch.setattr(flat.Flat, '_grow', grow)
    os.makedirs(os.path.join(CONF.instances_path, UUID))
    disk = imagebackend.Flat(instance(), record(size=2 * MiB), cache=cache)
    with pytest.raises(exception.DiskCreateFailed, match='no space'):
        disk.create_from_image(None, 'raw-image')
    assert os.listdir(os.path.join(CONF.instances_path, UUID)) == []

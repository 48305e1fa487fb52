"""The backend contract, run unchanged against every entry of BACKENDS.

Each test takes a ``backend`` parameter for every registered backend (a
new backend is tested the day it is registered) and builds its records
from the backend's spec alone (specs.py): the formats, the location, the
base format the record keeps. Everything is real: the verified fetch,
qemu-img, mkfs/mkswap, LVM on the harness's volume group (see
lvm_harness), the ploop tool.

The contract: ``create_from_image`` and ``create_from_func`` give a disk
whose format and size are the record's; every hostile image is refused
before any disk byte is written; a failed create, and a create killed with
SIGKILL then retried, leave nothing behind; ``remove()`` deletes (and an
Lvm volume is wiped: zeros read back from the PV); ``resize()`` grows in
the recorded format and never shrinks.
"""

import os
import subprocess

import pytest

import nova.conf
from nova import exception
from nova import image
from nova.image import local
from nova.objects import libvirt_disk
from nova.virt.libvirt import disk_funcs
from nova.virt.libvirt.imagebackend import backends
from nova.virt.libvirt.imagebackend import cache as image_cache
from nova.virt.libvirt.imagebackend import file as file_image
from nova.virt.libvirt.imagebackend import policy
from nova.virt.libvirt.imagebackend import specs
from nova.virt.libvirt.storage import lvm as storage_lvm
from tests.functional import helpers as func_helpers
from tests.functional import hostile_images as hostile
from tests.functional import lvm_harness
from tests.functional.virt.libvirt.imagebackend import helpers

CONF = nova.conf.CONF
WORKER = 'tests.functional.virt.libvirt.imagebackend.contract_worker'
MiB = helpers.MiB
IMAGE_SIZE = helpers.IMAGE_SIZE
#: Larger than the image, a whole number of LVM extents and ploop blocks.
DISK_SIZE = 64 * MiB


@pytest.fixture(params=sorted(backends.BACKENDS))
def backend(request):
    """A registered backend name, with the storage it needs set up."""
    if specs.SPECS[request.param].container == (
            'volume_group', 'images_volume_group'):
        request.getfixturevalue('lvm')
    return request.param


class Contract:
    """Records and checks for one backend, from its spec alone."""

    def __init__(self, backend, cache, lvm=None):
        self.spec = specs.SPECS[backend]
        self.cache = cache
        self.lvm = lvm
        self.instance = helpers.Instance()

    def record(self, base_format='raw', size=DISK_SIZE, disk_name='disk',
               **source):
        """The record policy.py plans on this backend for a disk built
        from a base kept in ``base_format``."""
        location = {}
        if self.spec.container:
            field = self.spec.container[0]
            location = {field: self.lvm.vg,
                        'volume_name': policy.volume_name(
                            self.instance.uuid, disk_name)}
        record = libvirt_disk.LibvirtDiskMetadata(
            backend=self.spec.name,
            format=self.spec.new_disk_format(base_format),
            backing_format=self.spec.new_backing_format(base_format),
            size=size, disk_name=disk_name, **location, **source)
        record.validate()
        return record

    def disk(self, record, cache=None):
        return backends.backend_for(self.instance, record,
                                    cache=cache or self.cache)

    @staticmethod
    def qemu_target(disk):
        """What qemu-img opens: the file, or the volume's device."""
        if isinstance(disk, file_image.FileImage):
            return disk.image_path
        return disk.path

    def info(self, disk):
        return func_helpers.qemu_info(self.qemu_target(disk), disk.qemu_format)

    def leftovers(self):
        """Everything of this instance on storage: names in its directory
        (files, part files, part directories) and its volumes."""
        found = []
        instance_dir = os.path.join(CONF.instances_path, self.instance.uuid)
        if os.path.lexists(instance_dir):
            found += sorted(os.listdir(instance_dir))
        if self.lvm:
            found += sorted(lv for lv in storage_lvm.volumes(self.lvm.vg)
                            if lv.startswith(self.instance.uuid))
        return found

    def published(self, disk):
        """What leftovers() is for exactly the one complete disk."""
        if self.spec.container:
            return [disk.record.volume_name]
        return [disk.disk_name]


def _guest_write(contract, disk, pattern, offset=0):
    """Write ``pattern`` over the MiB at ``offset`` of the disk as its
    guest would (through qemu, in the recorded format)."""
    subprocess.run(['qemu-io', '-f', disk.qemu_format, '-c',
                    'write -P %d %d 1M' % (pattern, offset),
                    contract.qemu_target(disk)],
                   check=True, capture_output=True)


def _guest_bytes(contract, disk, scratch, offset=0):
    """The MiB at ``offset`` of the disk as its guest reads it."""
    subprocess.run(['qemu-img', 'convert', '-f', disk.qemu_format, '-O',
                    'raw', contract.qemu_target(disk), scratch], check=True)
    with open(scratch, 'rb') as f:
        f.seek(offset)
        data = f.read(MiB)
    os.unlink(scratch)
    return data


@pytest.fixture
def contract(backend, cache, request):
    lvm = request.getfixturevalue('lvm') if specs.SPECS[
        backend].container else None
    return Contract(backend, cache, lvm)


# --- create ----------------------------------------------------------------

@pytest.mark.parametrize('force_raw', [True, False],
                         ids=['force_raw', 'keep_format'])
@pytest.mark.parametrize('image_format', ['raw', 'qcow2'])
def test_create_from_image_matches_the_record(contract, image_service,
                                              image_files, image_format,
                                              force_raw):
    image_id = image_service.ids[image_format]
    base_format = 'raw' if force_raw else image_format
    record = contract.record(base_format, image_id=image_id)
    disk = contract.disk(record)

    disk.create_from_image(None, image_id)

    assert disk.exists()
    info = contract.info(disk)
    assert info['format'] == disk.qemu_format
    assert info['virtual-size'] == record.size
    assert helpers.same_content(contract.qemu_target(disk), disk.qemu_format,
                                image_files['raw'], 'raw')
    disk.verify()
    assert contract.leftovers() == contract.published(disk)
    element = disk.libvirt_info('vda')
    assert element.driver_format == record.format
    assert element.source_type == contract.spec.source_type


def test_create_from_a_ploop_image(contract, image_files, tmp_path):
    """A ploop image (disk_format ploop, qemu's parallels) is verified by
    the fetch (format_ploop's inspector, qemu-img info and check) and
    converted to raw on its way into the cache: every backend builds its
    disk from that raw base, as policy.py plans (the base of any image
    but a kept qcow2 is raw). The Ploop backend makes a new ploop delta
    from it rather than adopting the image's own."""
    cache, image_id, src = helpers.ploop_image(str(tmp_path),
                                               image_files['raw'])
    record = contract.record('raw', image_id=image_id)
    disk = contract.disk(record, cache=cache)

    disk.create_from_image(None, image_id)

    info = contract.info(disk)
    assert info['format'] == disk.qemu_format
    assert info['virtual-size'] == record.size
    assert helpers.same_content(contract.qemu_target(disk), disk.qemu_format,
                                src, 'parallels')
    disk.verify()
    # The cache holds the raw base only: a ploop image is never kept.
    entry = cache.check_base(cache.image_path(image_id, 'raw'), 'raw')
    assert entry.virtual_size == IMAGE_SIZE
    assert contract.leftovers() == contract.published(disk)


@pytest.mark.parametrize('kind', ['ephemeral', 'swap'])
def test_create_from_func_matches_the_record(contract, kind):
    if kind == 'ephemeral':
        func = disk_funcs.make_ephemeral('ext4', 'ephemeral0')
        name, expected = policy.ephemeral_template_name(1, 'ext4'), 'ext4'
    else:
        func = disk_funcs.make_swap()
        name, expected = policy.swap_template_name(64), 'swap'
    record = contract.record(size=DISK_SIZE, disk_name='disk.local',
                             cache_name=name)
    disk = contract.disk(record)

    disk.create_from_func(None, func, name, DISK_SIZE)

    info = contract.info(disk)
    assert info['format'] == disk.qemu_format
    assert info['virtual-size'] == record.size
    # What the guest sees: read it back as raw through qemu-img.
    target = contract.qemu_target(disk)
    if disk.qemu_format == 'raw':
        assert helpers.blkid_type(target) == expected
    else:
        raw = os.path.join(CONF.instances_path, 'readback.raw')
        subprocess.run(['qemu-img', 'convert', '-f', disk.qemu_format,
                        '-O', 'raw', target, raw], check=True)
        assert helpers.blkid_type(raw) == expected
        os.unlink(raw)
    assert contract.leftovers() == contract.published(disk)


def test_existing_disk_is_never_overwritten(contract, image_service,
                                            tmp_path):
    image_id = image_service.ids['raw']
    disk = contract.disk(contract.record(image_id=image_id))
    disk.create_from_image(None, image_id)
    # The guest's own bytes: a new disk from the image would not have them.
    _guest_write(contract, disk, 0x5a)
    before = contract.info(disk)
    scratch = str(tmp_path / 'guest.raw')

    with pytest.raises(exception.DiskAlreadyExists):
        contract.disk(contract.record(image_id=image_id)).create_from_image(
            None, image_id)

    assert _guest_bytes(contract, disk, scratch) == b'\x5a' * MiB
    assert contract.info(disk) == before
    assert contract.leftovers() == contract.published(disk)


# --- nothing left behind ---------------------------------------------------

def _hostile_params():
    params = []
    for case in hostile.CASES:
        for fmt in ['raw'] + (['qcow2'] if case.declared == 'qcow2' else []):
            params.append(pytest.param(case, fmt, id='%s-%s' % (case.name,
                                                                fmt)))
    return params


@pytest.mark.parametrize('case,base_format', _hostile_params())
def test_hostile_image_is_refused_before_any_disk_byte(contract, case,
                                                       base_format,
                                                       tmp_path):
    store = local.LocalImageService(root=str(tmp_path / 'store'))
    os.makedirs(store.root)
    src = case.build(str(tmp_path / ('src-' + case.name)))
    image_id = hostile.plant(store, src, case.declared, **case.meta)
    if case.after:
        case.after(store, image_id)
    cache = image_cache.ImageCache(image_api=image.API(service=store))
    size = case.max_virtual_size or DISK_SIZE
    disk = contract.disk(contract.record(base_format, size=size,
                                         image_id=image_id), cache=cache)

    with pytest.raises(case.error) as e:
        disk.create_from_image(None, image_id)

    assert image_id in str(e.value)
    assert helpers.files_under(cache.base_dir) == []
    assert contract.leftovers() == []
    assert not os.path.lexists(os.path.join(CONF.instances_path,
                                            contract.instance.uuid))
    # Nothing was recorded as fetched: a retry fetches (and fails) again.
    with pytest.raises(case.error):
        disk.create_from_image(None, image_id)
    assert contract.leftovers() == []


def test_failed_create_leaves_nothing(contract):
    def broken(target, size):
        with open(target, 'r+b') as f:
            f.write(b'half a filesystem')
        raise OSError('mkfs died')

    name = policy.swap_template_name(64)
    disk = contract.disk(contract.record(disk_name='disk.swap',
                                         cache_name=name))
    with pytest.raises(exception.DiskCreateFailed) as e:
        disk.create_from_func(None, broken, name, DISK_SIZE)

    assert 'disk.swap' in str(e.value) and 'mkfs died' in str(e.value)
    assert contract.leftovers() == []
    assert helpers.files_under(contract.cache.base_dir) == []
    # Not even the instance's directory, which this call would have made.
    assert not os.path.lexists(os.path.join(CONF.instances_path,
                                            contract.instance.uuid))
    assert not disk.exists()


def _kill_when_ready(args):
    helpers.kill_when_ready(WORKER, args)


@pytest.mark.parametrize('source', ['image', 'func'])
def test_killed_create_then_retry_converges(contract, image_service,
                                            image_files, tmp_path, source):
    if source == 'image':
        image_id = image_service.ids['raw']
        record = contract.record(image_id=image_id)
    else:
        record = contract.record(disk_name='disk.swap',
                                 cache_name=policy.swap_template_name(64))
    _kill_when_ready(dict(
        instances_path=CONF.instances_path,
        lock_path=CONF.oslo_concurrency.lock_path,
        ready=str(tmp_path / 'ready'), disk=record.to_driver_info(),
        uuid=contract.instance.uuid, service=image_service.spec()))
    disk = contract.disk(record)
    # The dead attempt left its staging, never the disk's own name.
    [leftover] = contract.leftovers()
    assert leftover not in contract.published(disk)
    assert not disk.exists()

    if source == 'image':
        disk.create_from_image(None, image_id)
        assert helpers.same_content(contract.qemu_target(disk),
                                    disk.qemu_format, image_files['raw'],
                                    'raw')
    else:
        disk.create_from_func(None, disk_funcs.make_swap(),
                              record.cache_name, record.size)
    assert contract.leftovers() == contract.published(disk)
    assert contract.info(disk)['virtual-size'] == record.size

    disk.remove()
    assert contract.leftovers() == []

    # remove() also takes what a dead attempt left.
    _kill_when_ready(dict(
        instances_path=CONF.instances_path,
        lock_path=CONF.oslo_concurrency.lock_path,
        ready=str(tmp_path / 'ready2'), disk=record.to_driver_info(),
        uuid=contract.instance.uuid, service=image_service.spec()))
    assert len(contract.leftovers()) == 1
    disk.remove()
    assert contract.leftovers() == []


# --- remove and resize -----------------------------------------------------

def test_remove_deletes_and_is_idempotent(contract, image_service):
    image_id = image_service.ids['raw']
    disk = contract.disk(contract.record(image_id=image_id))
    disk.remove()  # never created: nothing to do, no error
    assert contract.leftovers() == []
    disk.create_from_image(None, image_id)
    where = None
    if contract.lvm:
        where = contract.lvm.aliases.extents(contract.lvm.vg,
                                             disk.record.volume_name)
        offset, length = where
        assert contract.lvm.aliases.read(offset, length).count(0) < length

    disk.remove()

    assert not disk.exists()
    assert contract.leftovers() == []
    if where:
        # volume_clear = zero (the default): the guest's bytes are gone
        # from the extents the volume had.
        assert lvm_harness.first_difference(
            contract.lvm.aliases.read(*where), bytes(where[1])) is None
    disk.remove()
    assert contract.leftovers() == []
    # The base stays for the next disk (cleanup ages it out).
    assert os.path.exists(contract.cache.image_path(image_id, 'raw'))


def _backing(info):
    return (info.get('backing-filename'),
            info.get('backing-filename-format'))


@pytest.mark.parametrize('force_raw', [True, False],
                         ids=['force_raw', 'keep_format'])
@pytest.mark.parametrize('image_format', ['raw', 'qcow2'])
def test_resize_grows_in_the_recorded_format(contract, image_service,
                                             image_files, image_format,
                                             force_raw):
    image_id = image_service.ids[image_format]
    base_format = 'raw' if force_raw else image_format
    disk = contract.disk(contract.record(base_format, image_id=image_id))
    disk.create_from_image(None, image_id)
    before = contract.info(disk)

    disk.resize(2 * DISK_SIZE)

    info = contract.info(disk)
    assert info['format'] == disk.qemu_format
    assert info['virtual-size'] == 2 * DISK_SIZE
    # The base it stands on, if any, is the one it had.
    assert _backing(info) == _backing(before)
    assert helpers.same_content(contract.qemu_target(disk), disk.qemu_format,
                                image_files['raw'], 'raw')
    assert contract.leftovers() == contract.published(disk)


def test_resize_never_shrinks(contract, image_service):
    image_id = image_service.ids['raw']
    disk = contract.disk(contract.record(image_id=image_id))
    disk.create_from_image(None, image_id)

    with pytest.raises(exception.DiskShrinkNotSupported):
        disk.resize(DISK_SIZE - 4 * MiB)
    assert contract.info(disk)['virtual-size'] == DISK_SIZE
    assert contract.leftovers() == contract.published(disk)


def test_resize_never_cuts_a_disk_larger_than_its_record(contract,
                                                         image_service,
                                                         tmp_path):
    # A grow whose record was not saved: the disk is larger than its
    # record says, and the guest may have written there since.
    image_id = image_service.ids['raw']
    disk = contract.disk(contract.record(image_id=image_id))
    disk.create_from_image(None, image_id)
    disk.resize(2 * DISK_SIZE)
    assert disk.record.size == DISK_SIZE
    # Past the record's size: bytes a retried grow must not zero.
    _guest_write(contract, disk, 0x3c, offset=DISK_SIZE + MiB)
    scratch = str(tmp_path / 'guest.raw')

    with pytest.raises(exception.DiskShrinkNotSupported):
        disk.resize(2 * DISK_SIZE - 8 * MiB)
    # Growing to what it has again is a no-op (the DiskManager's retry).
    disk.resize(2 * DISK_SIZE)

    assert contract.info(disk)['virtual-size'] == 2 * DISK_SIZE
    assert _guest_bytes(contract, disk, scratch,
                        offset=DISK_SIZE + MiB) == b'\x3c' * MiB
    assert contract.leftovers() == contract.published(disk)


def test_resize_of_a_missing_disk(contract):
    disk = contract.disk(contract.record(image_id='x'))
    with pytest.raises(exception.DiskNotFound):
        disk.resize(2 * DISK_SIZE)
    assert contract.leftovers() == []

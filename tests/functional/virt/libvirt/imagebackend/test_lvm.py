"""What only the Lvm backend does, on the harness's real volume group:
refusing a volume group it cannot use, wiping per volume_clear, keeping a
volume whose wipe failed, and a block ``<disk>`` element."""

from concurrent import futures
import contextlib
import fcntl
import os
import subprocess

import pytest

import nova.conf
from nova import exception
from nova.objects import libvirt_disk
from nova.virt.libvirt import disk_funcs
from nova.virt.libvirt.imagebackend import backends
from nova.virt.libvirt.imagebackend import lvm as lvm_backend
from nova.virt.libvirt.imagebackend import policy
from nova.virt.libvirt.storage import lvm as storage_lvm
from tests.functional import helpers as func_helpers
from tests.functional import lvm_harness
from tests.functional.virt.libvirt.imagebackend import helpers

CONF = nova.conf.CONF
_differs_at = lvm_harness.first_difference
MiB = helpers.MiB
SIZE = 64 * MiB


def _disk(lvm, cache, size=SIZE, vg=None, image_id=None, instance=None,
          cache_name=None):
    instance = instance or helpers.Instance()
    record = libvirt_disk.LibvirtDiskMetadata(
        backend='lvm', format='raw', size=size, disk_name='disk',
        volume_group=vg or lvm.vg,
        volume_name=policy.volume_name(instance.uuid, 'disk'),
        image_id=image_id, cache_name=cache_name)
    return backends.backend_for(instance, record, cache=cache)


def _filled(lvm, cache, image_service):
    image_id = image_service.ids['raw']
    disk = _disk(lvm, cache, image_id=image_id)
    disk.create_from_image(None, image_id)
    where = lvm.aliases.extents(lvm.vg, disk.record.volume_name)
    return disk, where


def test_missing_volume_group_is_refused(lvm, cache):
    disk = _disk(lvm, cache, vg='no_such_vg')
    with pytest.raises(exception.BackendUnavailable) as e:
        disk.check_available()
    msg = str(e.value)
    assert 'no_such_vg' in msg and disk.instance_uuid in msg
    assert 'disk' in msg


def test_missing_volume_group_is_named_in_typed_errors(lvm, cache):
    # Nothing can be said of a volume in a group that cannot be listed:
    # it is neither there nor removed.
    disk = _disk(lvm, cache, vg='no_such_vg')
    with pytest.raises(exception.BackendUnavailable) as e:
        disk.exists()
    assert 'no_such_vg' in str(e.value)
    assert disk.instance_uuid in str(e.value)
    with pytest.raises(exception.DiskRemoveFailed) as e:
        disk.remove()
    assert 'no_such_vg' in str(e.value)
    assert disk.instance_uuid in str(e.value)
    with pytest.raises(exception.BackendUnavailable) as e:
        disk.resize(2 * disk.record.size)
    assert 'no_such_vg' in str(e.value)
    assert disk.instance_uuid in str(e.value)
    swap = _disk(lvm, cache, vg='no_such_vg', instance=helpers.Instance(
        disk.instance_uuid), cache_name='swap_64')
    for look in (lambda: swap.create_from_func(
                     None, disk_funcs.make_swap(), 'swap_64', SIZE),
                 lambda: type(disk).which_exist([disk])):
        with pytest.raises(exception.BackendUnavailable) as e:
            look()
        assert 'no_such_vg' in str(e.value)
        assert disk.instance_uuid in str(e.value)


def test_volume_group_without_room_is_refused(lvm, cache):
    free = storage_lvm.volume_group_info(lvm.vg)['free']
    disk = _disk(lvm, cache, size=free + 4 * MiB)
    with pytest.raises(exception.BackendUnavailable) as e:
        disk.check_available()
    assert '%d bytes free' % free in str(e.value)
    _disk(lvm, cache).check_available()


def test_existing_volume_needs_no_room(lvm, cache, image_service):
    disk, _where = _filled(lvm, cache, image_service)
    free = storage_lvm.volume_group_info(lvm.vg)['free']
    big = _disk(lvm, cache, size=free + 4 * MiB,
                instance=helpers.Instance(disk.instance_uuid))
    big.check_available()


@pytest.mark.parametrize('method,clear_mib,expect', [
    ('zero', 0, 'all zero'),
    ('zero', 2, 'head zero'),
    ('shred', 0, 'all changed'),
    ('none', 0, 'unchanged'),
])
def test_remove_wipes_per_volume_clear(lvm, cache, image_service, conf,
                                       method, clear_mib, expect):
    conf.config(volume_clear=method, volume_clear_size=clear_mib,
                group='libvirt')
    disk, (offset, length) = _filled(lvm, cache, image_service)
    before = lvm.aliases.read(offset, length)

    disk.remove()

    assert not disk.exists()
    after = lvm.aliases.read(offset, length)
    if expect == 'all zero':
        assert _differs_at(after, bytes(length)) is None
    elif expect == 'head zero':
        assert _differs_at(after[:2 * MiB], bytes(2 * MiB)) is None
        assert _differs_at(after[2 * MiB:], before[2 * MiB:]) is None
    elif expect == 'all changed':
        # shred's last pass is random: the image's data is gone.
        assert after[:MiB] != before[:MiB]
    else:
        assert _differs_at(after, before) is None


def test_failed_wipe_keeps_the_volume(lvm, cache, image_service,
                                      monkeypatch):
    disk, (offset, length) = _filled(lvm, cache, image_service)
    before = lvm.aliases.read(offset, length)
    # The device refuses writes: a read-only loop device over the volume.
    readonly = subprocess.run(
        ['losetup', '--find', '--show', '--read-only', '--offset',
         str(offset), '--sizelimit', str(length), lvm.aliases.pv],
        check=True, capture_output=True, text=True).stdout.strip()
    monkeypatch.setattr(storage_lvm, 'device_path', lambda vg, lv: readonly)

    with pytest.raises(exception.VolumeWipeFailed) as e:
        disk.remove()

    msg = str(e.value)
    assert disk.record.volume_name in msg and 'zero' in msg
    assert disk.exists()
    assert lvm.aliases.read(offset, length) == before


def test_disk_element_is_a_block_device(lvm, cache, image_service):
    disk, _where = _filled(lvm, cache, image_service)
    element = disk.libvirt_info('vdb').to_element()
    assert element.get('type') == 'block'
    assert element.find('source').get('dev') == storage_lvm.device_path(
        lvm.vg, disk.record.volume_name)
    assert element.find('driver').get('type') == 'raw'


def test_resize_to_the_same_size_is_a_no_op(lvm, cache, image_service):
    disk, where = _filled(lvm, cache, image_service)
    disk.resize(SIZE)
    assert lvm.aliases.extents(lvm.vg, disk.record.volume_name) == where


def test_volume_that_appears_meanwhile_is_kept(lvm, cache):
    instance = helpers.Instance()
    name = policy.volume_name(instance.uuid, 'disk.swap')
    record = libvirt_disk.LibvirtDiskMetadata(
        backend='lvm', format='raw', size=SIZE, disk_name='disk.swap',
        volume_group=lvm.vg, volume_name=name, cache_name='swap_64')
    disk = backends.backend_for(instance, record, cache=cache)

    def someone_else_makes_it(target, size):
        storage_lvm.create_volume(lvm.vg, name, size)

    with pytest.raises(exception.DiskAlreadyExists):
        disk.create_from_func(None, someone_else_makes_it, 'swap_64', SIZE)

    assert sorted(lv for lv in storage_lvm.volumes(lvm.vg)
                  if lv.startswith(instance.uuid)) == [name]


# --- what check_available saw, reused by the create ------------------------

def _temp_volumes(lvm, instance_uuid):
    return sorted(lv for lv in storage_lvm.volumes(lvm.vg)
                  if lv.startswith(instance_uuid))


def test_create_after_a_stale_check_removes_a_new_leftover(
        lvm, cache, image_service):
    # check_available saw no temporary volume; a create of the same disk
    # killed meanwhile left one, full of its bytes.
    image_id = image_service.ids['raw']
    disk = _disk(lvm, cache, image_id=image_id)
    disk.check_available()
    storage_lvm.create_volume(lvm.vg, disk.temp_volume_name, SIZE)
    offset, length = lvm.aliases.extents(lvm.vg, disk.temp_volume_name)
    subprocess.run(['dd', 'if=/dev/urandom', 'of=%s' % lvm.aliases.pv,
                    'bs=1M', 'count=%d' % (length // MiB),
                    'seek=%d' % offset, 'oflag=seek_bytes,direct',
                    'conv=notrunc', 'status=none'], check=True)

    disk.create_from_image(None, image_id)

    assert disk.exists()
    assert _temp_volumes(lvm, disk.instance_uuid) == [
        disk.record.volume_name]


def test_create_after_a_stale_check_keeps_a_new_volume(lvm, cache,
                                                       image_service):
    # check_available saw no volume; one of that name appeared meanwhile.
    image_id = image_service.ids['raw']
    disk = _disk(lvm, cache, image_id=image_id)
    disk.check_available()
    storage_lvm.create_volume(lvm.vg, disk.record.volume_name, SIZE)
    where = lvm.aliases.extents(lvm.vg, disk.record.volume_name)
    before = lvm.aliases.read(*where)

    with pytest.raises(exception.DiskAlreadyExists):
        disk.create_from_image(None, image_id)

    assert lvm.aliases.read(*where) == before
    assert _temp_volumes(lvm, disk.instance_uuid) == [
        disk.record.volume_name]


@contextlib.contextmanager
def _private_volume_group(size=64 * MiB, sector_size=512):
    """A volume group of its own (a second PV), seen by this process's
    LVM commands while the block runs; yields its name."""
    with _private_group(size, sector_size) as (vg, _aliases):
        yield vg


@contextlib.contextmanager
def _private_group(size, sector_size):
    """As ``_private_volume_group``, its volumes' devices loop devices
    over its own PV while the block runs; yields (name, LoopAliases)."""
    with lvm_harness.private_group(size, sector_size=sector_size) as private:
        harness_conf = os.environ['LVM_SYSTEM_DIR']
        os.environ['LVM_SYSTEM_DIR'] = private[lvm_harness.ENV_SYSTEM_DIR]
        aliases = lvm_harness.LoopAliases(private[lvm_harness.ENV_PV])
        harness_device_path = storage_lvm.device_path
        storage_lvm.device_path = aliases.device_path
        try:
            yield private[lvm_harness.ENV_VG], aliases
        finally:
            storage_lvm.device_path = harness_device_path
            os.environ['LVM_SYSTEM_DIR'] = harness_conf


def test_check_available_of_an_empty_volume_group(lvm, cache):
    # A group with no volume at all reports no row when asked for volume
    # fields: it still exists, with its free space. A second PV holds an
    # empty group of its own.
    with _private_volume_group() as vg:
        info = storage_lvm.volume_group_info(vg, with_volumes=True)
        assert info['volumes'] == {} and info['free'] > 0
        _disk(lvm, cache, vg=vg, size=8 * MiB).check_available()
        with pytest.raises(exception.BackendUnavailable):
            _disk(lvm, cache, vg=vg,
                  size=info['free'] + MiB).check_available()


def test_an_instance_s_disks_must_fit_the_volume_group_together(lvm, cache):
    # Each disk fits the group's free space; the two together do not: the
    # check of the instance's disks refuses the second, before any volume
    # is made. Present volumes are found with one listing for all.
    with _private_volume_group() as vg:
        free = storage_lvm.volume_group_info(vg)['free']
        half = (free // 2 // (4 * MiB)) * 4 * MiB
        first = _disk(lvm, cache, vg=vg, size=half)
        second = _disk(lvm, cache, vg=vg, size=half)
        lvm_class = type(first)
        lvm_class.check_all_available([first, second])

        too_big = _disk(lvm, cache, vg=vg, size=half + 8 * MiB)
        with pytest.raises(exception.BackendUnavailable) as e:
            lvm_class.check_all_available([first, too_big])
        assert e.value.kwargs['instance_uuid'] == too_big.instance_uuid
        assert 'need' in str(e.value)
        assert storage_lvm.volumes(vg) == {}

        # A disk already made needs no more space: the rest is the
        # second's.
        storage_lvm.create_volume(vg, first.volume_name, half)
        lvm_class.check_all_available([first, second])
        assert lvm_class.which_exist([second, first, too_big]) == [first]


def test_disks_need_whole_extents(lvm, cache):
    # In bytes the two fit; in the extents LVM gives them they do not.
    with _private_volume_group() as vg:
        info = storage_lvm.volume_group_info(vg)
        free, extent = info['free'], info['extent_size']
        first = _disk(lvm, cache, vg=vg, size=free - extent + MiB)
        second = _disk(lvm, cache, vg=vg, size=MiB)
        first.check_available()
        second.check_available()

        with pytest.raises(exception.BackendUnavailable) as e:
            type(first).check_all_available([first, second])
        assert e.value.kwargs['instance_uuid'] == second.instance_uuid


def test_a_killed_create_s_leftover_gives_its_room_back(lvm, cache):
    # The leftover holds all the group's room; the disk's create removes
    # it before making the volume, so the disk is not refused for it.
    with _private_volume_group() as vg:
        free = storage_lvm.volume_group_info(vg)['free']
        disk = _disk(lvm, cache, vg=vg, size=free)
        storage_lvm.create_volume(vg, disk.temp_volume_name, free)

        disk.check_available()

        other = _disk(lvm, cache, vg=vg, size=free)
        with pytest.raises(exception.BackendUnavailable):
            other.check_available()


# --- zeroing ----------------------------------------------------------------

def _random_volume(lvm, size):
    name = 'zero_%s' % helpers.Instance().uuid
    storage_lvm.create_volume(lvm.vg, name, size)
    offset, length = lvm.aliases.extents(lvm.vg, name)
    subprocess.run(['dd', 'if=/dev/urandom', 'of=%s' % lvm.aliases.pv,
                    'bs=1M', 'count=%d' % (length // MiB),
                    'seek=%d' % offset, 'oflag=seek_bytes,direct',
                    'conv=notrunc', 'status=none'], check=True)
    return name, offset, length


def _unwiped_extents(lvm, size):
    """(offset, length) of free extents holding an earlier volume's
    random bytes: removed without a wipe (volume_clear = none, or a
    volume removed by another tool)."""
    earlier, offset, length = _random_volume(lvm, size)
    storage_lvm.remove_volume(lvm.vg, earlier)
    return offset, length


def _swap_disk(lvm, cache, size=SIZE):
    name = policy.swap_template_name(size // MiB)
    disk = _disk(lvm, cache, size=size, cache_name=name)
    disk.create_from_func(None, disk_funcs.make_swap(), name, size)
    return disk


def test_disk_from_func_never_shows_an_earlier_volume_s_bytes(lvm, cache):
    offset, length = _unwiped_extents(lvm, SIZE)

    disk = _swap_disk(lvm, cache)

    # The new volume has the same extents, or this test shows nothing.
    assert lvm.aliases.extents(lvm.vg, disk.volume_name) == (offset, length)
    data = lvm.aliases.read(offset, length)
    assert helpers.blkid_type(disk.path) == 'swap'
    # mkswap writes its first page; the guest reads zeros after it.
    page = os.sysconf('SC_PAGE_SIZE')
    assert _differs_at(data[page:], bytes(length - page)) is None


@pytest.mark.parametrize('killed', [False, True],
                         ids=['grow', 'grow-again-after-a-kill'])
def test_grown_extents_never_show_an_earlier_volume_s_bytes(lvm, cache,
                                                            killed):
    offset, length = _unwiped_extents(lvm, 2 * SIZE)
    disk = _swap_disk(lvm, cache)
    if killed:
        # What a grow killed between its lvextend and its zeroing leaves:
        # the volume grown and tagged, the record still at the old size.
        # The retry must zero the new extents, not find nothing to do.
        storage_lvm.add_tag(lvm.vg, disk.volume_name,
                            lvm_backend._UNZEROED_TAG + str(SIZE))
        storage_lvm.extend_volume(lvm.vg, disk.volume_name, 2 * SIZE)

    disk.resize(2 * SIZE)

    # The grown volume has the same extents, or this test shows nothing.
    assert lvm.aliases.extents(lvm.vg, disk.volume_name) == (offset, length)
    grown = lvm.aliases.read(offset + SIZE, SIZE)
    assert _differs_at(grown, bytes(SIZE)) is None
    assert helpers.blkid_type(disk.path) == 'swap'
    info = storage_lvm.volume_group_info(lvm.vg, with_volumes=True)
    assert info['tags'][disk.volume_name] == set()


def _guest_writes_past(lvm, disk, offset):
    """The guest writes past ``offset`` of its volume (the record's
    size); returns (the volume's offset on the PV, its first 2 * SIZE
    bytes there after the write)."""
    where, _length = lvm.aliases.extents(lvm.vg, disk.volume_name)
    with open(disk.path, 'r+b') as device:
        device.seek(offset + MiB)
        device.write(b'guest data' * 100)
    return where, lvm.aliases.read(where, 2 * SIZE)


def test_grow_again_keeps_what_the_guest_wrote_since(lvm, cache):
    # A grow that finished, its record not saved (the save failed): the
    # guest ran on the whole volume since. Growing to that size again
    # records it and keeps every byte; a smaller size is refused.
    disk = _swap_disk(lvm, cache)
    disk.resize(2 * SIZE)
    assert disk.record.size == SIZE
    offset, before = _guest_writes_past(lvm, disk, SIZE)

    disk.resize(2 * SIZE)
    with pytest.raises(exception.DiskShrinkNotSupported):
        disk.resize(SIZE + MiB)

    assert lvm.aliases.read(offset, 2 * SIZE) == before


def test_grow_within_the_volume_s_last_extent(lvm, cache):
    # A record that is not whole extents: the volume is already larger
    # than a size between the two. Not a shrink: nothing to do.
    extent = storage_lvm.volume_group_info(lvm.vg)['extent_size']
    size = SIZE + MiB
    disk = _swap_disk(lvm, cache, size=size)
    where = lvm.aliases.extents(lvm.vg, disk.volume_name)
    assert where[1] == SIZE + extent

    disk.resize(size + MiB)

    assert lvm.aliases.extents(lvm.vg, disk.volume_name) == where
    with pytest.raises(exception.DiskShrinkNotSupported):
        disk.resize(size - MiB)


def test_zero_range_to_the_end_of_the_device(lvm):
    name, offset, length = _random_volume(lvm, 8 * MiB)
    before = lvm.aliases.read(offset, length)
    device = storage_lvm.device_path(lvm.vg, name)

    storage_lvm.zero_range(device, 3 * MiB)

    after = lvm.aliases.read(offset, length)
    assert _differs_at(after[:3 * MiB], before[:3 * MiB]) is None
    assert _differs_at(after[3 * MiB:], bytes(length - 3 * MiB)) is None


def _fill_random(aliases, offset, length):
    subprocess.run(['dd', 'if=/dev/urandom', 'of=%s' % aliases.pv,
                    'bs=1M', 'count=%d' % (length // MiB),
                    'seek=%d' % offset, 'oflag=seek_bytes,direct',
                    'conv=notrunc', 'status=none'], check=True)


_FALLBACK = 'writing zeros with dd instead'


def test_4kn_volume_reads_as_the_image_then_zeros(lvm, cache, image_service,
                                                  tmp_path, caplog):
    # A disk whose logical sectors are 4 KiB (4Kn), its extents holding an
    # earlier volume's bytes, and an image that does not end on a 4 KiB
    # boundary: the guest sees the image, then zeros, and the kernel zeroed
    # the whole sectors (no dd of zeros over the rest of the volume).
    data = b'\x5a' * (MiB + 1536)
    image = tmp_path / 'odd.raw'
    image.write_bytes(data)
    image_id = image_service.import_file(None, str(image), 'raw')['id']
    with _private_group(2 * SIZE, sector_size=4096) as (vg, aliases):
        storage_lvm.create_volume(vg, 'earlier', SIZE)
        offset, length = aliases.extents(vg, 'earlier')
        _fill_random(aliases, offset, length)
        storage_lvm.remove_volume(vg, 'earlier')
        disk = _disk(lvm, cache, vg=vg, image_id=image_id)
        caplog.set_level('INFO')

        disk.create_from_image(None, image_id)

        assert lvm_harness.lvm_devices.sector_size(disk.path) == 4096
        assert aliases.extents(vg, disk.volume_name) == (offset, length)
        volume = aliases.read(offset, length)
        assert volume[:len(data)] == data
        assert _differs_at(volume[len(data):],
                           bytes(length - len(data))) is None
        assert _FALLBACK not in caplog.text
        disk.remove()


def test_zero_range_within_4k_sectors(lvm, caplog):
    # Neither end on a sector boundary: the bytes around the whole sectors
    # are zeroed too, and not one byte outside the range.
    with _private_group(16 * MiB, sector_size=4096) as (vg, aliases):
        storage_lvm.create_volume(vg, 'zeroed', 8 * MiB)
        offset, length = aliases.extents(vg, 'zeroed')
        _fill_random(aliases, offset, length)
        before = aliases.read(offset, length)
        caplog.set_level('INFO')

        storage_lvm.zero_range(storage_lvm.device_path(vg, 'zeroed'),
                               1000, 3 * 4096 + 24)

        after = aliases.read(offset, length)
        end = 1000 + 3 * 4096 + 24
        assert after[1000:end] == bytes(end - 1000)
        assert after[:1000] == before[:1000]
        assert _differs_at(after[end:], before[end:]) is None
        assert _FALLBACK not in caplog.text


def test_zero_range_of_what_the_kernel_cannot_zero(tmp_path):
    # Not a block device: blkdiscard refuses, dd writes the zeros.
    path = tmp_path / 'file'
    path.write_bytes(b'\xff' * (3 * MiB))

    storage_lvm.zero_range(str(path), MiB, MiB)

    data = path.read_bytes()
    assert data == b'\xff' * MiB + bytes(MiB) + b'\xff' * MiB


def test_zero_range_of_a_missing_device_fails_and_creates_nothing(tmp_path):
    # A volume whose device node is gone: its wipe must fail (and the
    # volume be kept), not write zeros into a new file at that path.
    path = tmp_path / 'missing'

    with pytest.raises(exception.ProcessFailed):
        storage_lvm.zero_range(str(path), 0, MiB)

    assert not path.exists()


def test_volumes_are_filled_through_udev_s_links(lvm, cache, image_service,
                                                 tmp_path, monkeypatch):
    # On a host with device-mapper, /dev/<vg>/<lv> is a link (made by
    # udev) to /dev/dm-N. This kernel has none, so the harness's loop
    # device stands for dm-N, behind a link of the same kind.
    links = tmp_path / 'dev'
    links.mkdir()
    harness_device_path = storage_lvm.device_path

    def linked_device_path(vg, lv):
        node = harness_device_path(vg, lv)
        link = links / lv
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(node, link)
        return str(link)

    monkeypatch.setattr(storage_lvm, 'device_path', linked_device_path)

    swap = _swap_disk(lvm, cache)
    image_id = image_service.ids['raw']
    root = _disk(lvm, cache, image_id=image_id,
                 instance=helpers.Instance())
    root.create_from_image(None, image_id)

    assert os.path.islink(swap.path)
    assert helpers.blkid_type(swap.path) == 'swap'
    assert root.exists()


@contextlib.contextmanager
def _held_by_a_live_create(disk, lvm):
    """The state of a create of ``disk`` still filling its temporary
    volume: the volume there, holding data, and the disk's lock held (by
    this test, from a descriptor of its own, as another process would).

    :yields: (lock file path, the temporary volume's bytes).
    """
    temp = disk.volume_name + '.part'
    storage_lvm.create_volume(lvm.vg, temp, SIZE)
    offset, length = lvm.aliases.extents(lvm.vg, temp)
    with open(lvm.aliases.device_path(lvm.vg, temp), 'r+b') as device:
        device.write(b'live create!' * 4096)
    lock_file = os.path.join(CONF.oslo_concurrency.lock_path,
                             'nova-volume-%s-%s' % (lvm.vg, disk.volume_name))
    os.makedirs(CONF.oslo_concurrency.lock_path, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield lock_file, lvm.aliases.read(offset, length)
    finally:
        os.close(fd)


@pytest.mark.parametrize('action', ['create', 'remove'])
def test_live_create_s_volume_is_never_taken_for_a_leftover(lvm, cache,
                                                            action):
    name = policy.swap_template_name(SIZE // MiB)
    disk = _disk(lvm, cache, cache_name=name)
    temp = disk.volume_name + '.part'
    offset, length = None, None
    with futures.ThreadPoolExecutor(1) as pool:
        with _held_by_a_live_create(disk, lvm) as (lock_file, data):
            offset, length = lvm.aliases.extents(lvm.vg, temp)
            if action == 'create':
                worker = pool.submit(disk.create_from_func, None,
                                     disk_funcs.make_swap(), name, SIZE)
            else:
                worker = pool.submit(disk.remove)
            # It waits for the lock, and the live create's volume is as
            # it left it.
            func_helpers.wait_for_a_waiter(lock_file, worker)
            assert storage_lvm.volume_size(lvm.vg, temp) is not None
            assert lvm.aliases.read(offset, length) == data
        # That create died: its volume is a leftover now, removed.
        worker.result()
    assert storage_lvm.volume_size(lvm.vg, temp) is None
    if action == 'create':
        assert helpers.blkid_type(disk.path) == 'swap'
        disk.remove()
    assert not disk.exists()
    # A removed disk's lock file goes with it.
    assert not os.path.exists(lock_file)


def _lock_file(lvm, disk):
    return os.path.join(CONF.oslo_concurrency.lock_path,
                        'nova-volume-%s-%s' % (lvm.vg, disk.volume_name))


def test_create_that_waited_finds_the_disk_made_meanwhile(lvm, cache):
    # Another create of the disk held its lock and published the volume:
    # the create that waited says so, and touches nothing of it.
    name = policy.swap_template_name(SIZE // MiB)
    disk = _disk(lvm, cache, cache_name=name)
    lock_file = _lock_file(lvm, disk)
    os.makedirs(CONF.oslo_concurrency.lock_path, exist_ok=True)
    # The other create is filling its temporary volume when this one
    # looks: it sees that volume, then waits.
    storage_lvm.create_volume(lvm.vg, disk.volume_name + '.part', SIZE)
    with futures.ThreadPoolExecutor(1) as pool:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            worker = pool.submit(disk.create_from_func, None,
                                 disk_funcs.make_swap(), name, SIZE)
            func_helpers.wait_for_a_waiter(lock_file, worker)
            storage_lvm.rename_volume(lvm.vg, disk.volume_name + '.part',
                                      disk.volume_name)
            offset, length = lvm.aliases.extents(lvm.vg, disk.volume_name)
            with open(disk.path, 'r+b') as device:
                device.write(b'the winner' * 100)
            before = lvm.aliases.read(offset, length)
        finally:
            os.close(fd)
        with pytest.raises(exception.DiskAlreadyExists):
            worker.result()
    assert lvm.aliases.read(offset, length) == before
    assert storage_lvm.volume_size(lvm.vg, disk.volume_name + '.part') is None
    disk.remove()


def test_failed_first_create_leaves_no_lock_file(lvm, cache):
    name = policy.swap_template_name(SIZE // MiB)
    disk = _disk(lvm, cache, cache_name=name)

    def fails(target, size):
        raise exception.ProcessFailed(cmd='mkswap', reason='it died')

    with pytest.raises(exception.DiskCreateFailed):
        disk.create_from_func(None, fails, name, SIZE)
    assert not disk.exists()
    assert not os.path.exists(_lock_file(lvm, disk))


def test_unfinished_grow_is_zeroed_before_a_refused_shrink(lvm, cache):
    # A grow killed after its lvextend, then a resize to less than the
    # volume (not less than the record): the new extents are zeroed first,
    # whatever the answer.
    offset, length = _unwiped_extents(lvm, 2 * SIZE)
    disk = _swap_disk(lvm, cache)
    storage_lvm.add_tag(lvm.vg, disk.volume_name,
                        lvm_backend._UNZEROED_TAG + str(SIZE))
    storage_lvm.extend_volume(lvm.vg, disk.volume_name, 2 * SIZE)
    assert lvm.aliases.extents(lvm.vg, disk.volume_name) == (offset, length)

    with pytest.raises(exception.DiskShrinkNotSupported):
        disk.resize(SIZE + MiB)

    assert _differs_at(lvm.aliases.read(offset + SIZE, SIZE),
                       bytes(SIZE)) is None
    info = storage_lvm.volume_group_info(lvm.vg, with_volumes=True)
    assert info['tags'][disk.volume_name] == set()


def test_stale_tag_of_a_finished_grow_zeroes_nothing(lvm, cache):
    # A grow from SIZE whose tag removal failed, its record then saved at
    # 2 * SIZE; the guest wrote past SIZE since.
    disk = _swap_disk(lvm, cache, size=2 * SIZE)
    storage_lvm.add_tag(lvm.vg, disk.volume_name,
                        lvm_backend._UNZEROED_TAG + str(SIZE))
    offset, before = _guest_writes_past(lvm, disk, SIZE)

    disk.resize(2 * SIZE)

    assert lvm.aliases.read(offset, 2 * SIZE) == before
    info = storage_lvm.volume_group_info(lvm.vg, with_volumes=True)
    assert info['tags'][disk.volume_name] == set()

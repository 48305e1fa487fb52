"""Snapshots through the driver: real qemu-img, the local image store,
libvirt's test driver, LVM on a loop device and ploop as registered."""

import os
import subprocess

import libvirt
from oslo_utils import units
import pytest

import nova.conf
from nova import exception
from nova.image import api as image_api_mod
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import power_state
from nova.virt.libvirt import imagebackend
from nova.virt.libvirt.imagebackend import backends as disk_backends
from nova.virt.libvirt.imagebackend import cache as image_cache
from nova.virt.libvirt.imagebackend import manager as disk_manager
from nova.virt.libvirt.imagebackend import specs
from nova.virt import staging
from tests.functional.virt.libvirt import helpers

CONF = nova.conf.CONF


def configure(conf, request, backend, force_raw=True):
    conf.config(group='libvirt', images_type=backend)
    conf.config(force_raw_images=force_raw,
                use_cow_images=(backend == 'qcow2'))
    if specs.SPECS[backend].container == ('volume_group',
                                          'images_volume_group'):
        conf.config(group='libvirt', images_volume_group=request.
                    getfixturevalue('lvm_vg').vg)


def root_backend(context, instance):
    return imagebackend.backend_for(
        instance, helpers.records(context, instance)['disk'])


def read_disk(backend, fmt, directory):
    """The sha256 of the disk's guest-visible bytes, as raw (format
    pinned)."""
    out = os.path.join(str(directory), 'plain-%s.raw' % backend.disk_name)
    with backend.snapshot_source() as (source, qemu_fmt):
        subprocess.run(['qemu-img', 'convert', '-q', '-f', qemu_fmt, '-O',
                        'raw', source, out], check=True)
    digest = helpers.file_digest(out)
    os.unlink(out)
    return digest


def store_head(image_api, image_id):
    """The first chunk of an image in the store (its header)."""
    return next(iter(image_api.download(None, image_id)))


def victim_image(tmp_path, size, fmt):
    """The path of a ``fmt`` image of ``size`` bytes whose bytes differ
    from any test disk's from the first MiB on (written there only:
    tmp_path holds data, not sizes): what a neighbour swaps in."""
    raw = tmp_path / 'victim'
    with open(raw, 'wb') as f:
        f.write(b'\xee' * units.Mi)
        f.truncate(size)
    path = str(raw) + '.img'
    subprocess.run(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', fmt,
                    str(raw), path], check=True)
    return path


def snapshot_digest(image_api, meta, tmp_path):
    """The sha256 of the snapshot image's guest-visible bytes (raw)."""
    snap = helpers.download_to(image_api, meta['id'], tmp_path / 'snap.img')
    out = tmp_path / 'snap.raw'
    subprocess.run(['qemu-img', 'convert', '-q', '-f', meta['disk_format'],
                    '-O', 'raw', str(snap), str(out)], check=True)
    return helpers.file_digest(out)


def snapshots_dir_entries():
    path = CONF.libvirt.snapshots_directory
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def boot(driver, context, image_meta):
    instance, bdms = helpers.create_instance(context, image_meta,
                                             ephemeral_gb=0, ephemerals=0,
                                             swap_mb=0)
    driver.spawn(context, instance, image_meta, bdms)
    return instance


@pytest.mark.parametrize('backend', sorted(disk_backends.BACKENDS))
def test_snapshot_of_every_backend_boots_again(conf, context, images,
                                               image_api, driver, backend,
                                               request, tmp_path):
    """The image holds the root disk's guest-visible bytes, is declared
    in the recorded format (raw for ploop, which the store does not hold,
    by snapshot_image_format), the guest runs again after the copy, and
    an instance booted from the image gets the same bytes."""
    configure(conf, request, backend)
    if backend == 'ploop':
        conf.config(group='libvirt', snapshot_image_format='raw')
    instance = boot(driver, context, images['raw'])
    backend_obj = root_backend(context, instance)
    before = read_disk(backend_obj, backend_obj.record.format, tmp_path)

    meta = driver.snapshot(context, instance, 'snap-%s' % backend)

    assert meta['name'] == 'snap-%s' % backend
    assert meta['disk_format'] == (
        'raw' if backend == 'ploop' else backend_obj.record.format)
    assert meta['properties']['image_type'] == 'snapshot'
    assert meta['properties']['instance_uuid'] == instance.uuid
    assert image_api.get(context, meta['id']) == meta
    assert driver.get_power_state(instance) == power_state.RUNNING
    assert snapshots_dir_entries() == []

    # Booting from it: the same verified fetch as any image.
    copy = boot(driver, context, meta)
    assert read_disk(root_backend(context, copy), None, tmp_path) == before
    driver.destroy(context, copy)
    driver.destroy(context, instance)


@pytest.mark.parametrize('case', helpers.CASE_KEYS, ids=helpers.case_id)
def test_snapshot_keeps_the_recorded_format(conf, context, images,
                                            image_api, driver, case):
    backend, image_format, force_raw = case
    helpers.configure(conf, backend, force_raw)
    instance = boot(driver, context, images[image_format])
    record = helpers.records(context, instance)['disk']

    meta = driver.snapshot(context, instance, 'snap')

    assert meta['disk_format'] == record.format
    assert store_head(image_api, meta['id']).startswith(b'QFI\xfb') == (
        record.format == 'qcow2')
    driver.destroy(context, instance)


def test_snapshot_image_format_converts(conf, context, images, image_api,
                                        driver):
    helpers.configure(conf, 'flat', True)
    conf.config(group='libvirt', snapshot_image_format='qcow2')
    instance = boot(driver, context, images['raw'])

    meta = driver.snapshot(context, instance, 'snap')

    assert meta['disk_format'] == 'qcow2'
    assert store_head(image_api, meta['id']).startswith(b'QFI\xfb')
    driver.destroy(context, instance)


@pytest.mark.parametrize('fmt', ['vmdk', 'vdi'])
def test_formats_the_store_does_not_hold_are_refused_first(
        conf, context, images, image_api, driver, fmt):
    helpers.configure(conf, 'flat', True)
    conf.config(group='libvirt', snapshot_image_format=fmt)
    instance = boot(driver, context, images['raw'])
    before = image_api.get_all(context)

    with pytest.raises(exception.SnapshotFailed) as err:
        driver.snapshot(context, instance, 'snap')

    assert fmt in str(err.value) and instance.uuid in str(err.value)
    assert image_api.get_all(context) == before
    assert snapshots_dir_entries() == []
    assert driver.get_power_state(instance) == power_state.RUNNING
    driver.destroy(context, instance)


def test_ploop_without_snapshot_image_format_is_refused(
        conf, context, images, image_api, driver, request):
    configure(conf, request, 'ploop')
    instance = boot(driver, context, images['raw'])
    before = image_api.get_all(context)

    with pytest.raises(exception.SnapshotFailed) as err:
        driver.snapshot(context, instance, 'snap')

    assert 'snapshot_image_format' in str(err.value)
    assert image_api.get_all(context) == before
    driver.destroy(context, instance)


def test_paused_and_shut_off_guests_stay_as_they_were(conf, context, images,
                                                      driver):
    helpers.configure(conf, 'qcow2', False)
    instance = boot(driver, context, images['qcow2'])
    dom = driver.host.lookup_domain(instance)
    dom.suspend()
    driver.snapshot(context, instance, 'paused')
    assert driver.get_power_state(instance) == power_state.PAUSED
    driver.power_off(context, instance)
    driver.snapshot(context, instance, 'off')
    assert driver.get_power_state(instance) == power_state.SHUTDOWN
    driver.destroy(context, instance)


def test_running_guest_is_stopped_during_the_copy(conf, context, images,
                                                  image_api, driver):
    """libvirt reports the guest saved (managed save: QEMU gone, its disk
    locks released) and then started again, around the copy (lifecycle
    events)."""
    # Events need libvirt's event loop, registered before the connection
    # is opened.
    libvirt.virEventRegisterDefaultImpl()
    driver.host.close()
    helpers.configure(conf, 'flat', True)
    instance = boot(driver, context, images['raw'])
    dom = driver.host.lookup_domain(instance)
    events = []
    conn = driver.host.get_connection()
    callback = conn.domainEventRegisterAny(
        dom, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
        lambda conn, d, event, detail, opaque: events.append(
            (event, detail)), None)
    try:
        driver.snapshot(context, instance, 'snap')
        # The test driver queues events; run the loop until they came.
        for _ in range(20):
            if len(events) >= 2:
                break
            libvirt.virEventRunDefaultImpl()
    finally:
        conn.domainEventDeregisterAny(callback)
    assert events[0] == (libvirt.VIR_DOMAIN_EVENT_STOPPED,
                         libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED)
    # (QEMU says STARTED_RESTORED; the test driver STARTED_BOOTED.)
    assert events[1][0] == libvirt.VIR_DOMAIN_EVENT_STARTED
    assert driver.get_power_state(instance) == power_state.RUNNING
    driver.destroy(context, instance)


@pytest.mark.parametrize('backend,image_format', [
    ('flat', 'raw'), ('qcow2', 'qcow2'), ('ploop', 'raw')])
def test_snapshot_copies_the_disk_it_checked(conf, context, images,
                                             image_api, driver, request,
                                             backend, image_format, tmp_path):
    """The disk's name is swapped for a link to another file once the
    copy's source is open (instances_path may be shared): the image still
    holds the disk's own bytes, never the other file's."""
    configure(conf, request, backend, force_raw=False)
    if backend == 'ploop':
        conf.config(group='libvirt', snapshot_image_format='raw')
    instance = boot(driver, context, images[image_format])
    disk = root_backend(context, instance)
    before = read_disk(disk, disk.record.format, tmp_path)
    victim = victim_image(tmp_path, disk.record.size, disk.qemu_format)
    swapped = []

    def swap_the_name(message):
        # Called before the copy starts, its source already open.
        if message.startswith('copying') and not swapped:
            target = (os.path.join(disk.path, 'root.hds')
                      if backend == 'ploop' else disk.path)
            os.rename(target, target + '.moved')
            os.symlink(victim, target)
            swapped.append(target)

    meta = driver.snapshot(context, instance, 'snap', progress=swap_the_name)

    assert swapped
    assert snapshot_digest(image_api, meta, tmp_path) == before
    os.unlink(swapped[0])
    os.rename(swapped[0] + '.moved', swapped[0])
    driver.destroy(context, instance)


@pytest.mark.parametrize('force_raw,base_format',
                         [(True, 'raw'), (False, 'qcow2')])
def test_snapshot_of_an_overlay_reads_the_base_it_checked(
        conf, context, images, image_api, driver, request, force_raw,
        base_format, tmp_path):
    """The overlay's base in _base (which may be shared) is swapped for
    another file once the copy's sources are open: the image still holds
    the disk's bytes over its own base, never the other file's (qemu-img
    is given the checked base, not the name in the overlay's header)."""
    configure(conf, request, 'qcow2', force_raw=force_raw)
    instance = boot(driver, context, images['qcow2'])
    disk = root_backend(context, instance)
    assert disk.record.backing_format == base_format
    base = disk.cache.image_path(disk.record.image_id, base_format)
    before = read_disk(disk, 'qcow2', tmp_path)
    victim = victim_image(tmp_path, disk.record.size, base_format)
    swapped = []

    def swap_the_base(message):
        if message.startswith('copying') and not swapped:
            os.rename(base, base + '.moved')
            os.rename(victim, base)
            swapped.append(base)

    meta = driver.snapshot(context, instance, 'snap', progress=swap_the_base)

    assert swapped
    assert snapshot_digest(image_api, meta, tmp_path) == before
    os.replace(base + '.moved', base)
    driver.destroy(context, instance)


def test_snapshot_of_an_overlay_over_a_fifo_fails_closed(
        conf, context, images, image_api, driver, request):
    """A FIFO planted at the overlay's base (by name, qemu-img would block
    on it for ever) fails the cache's check: SnapshotFailed naming it,
    nothing added to the store, nothing left in the snapshots directory."""
    configure(conf, request, 'qcow2')
    instance = boot(driver, context, images['qcow2'])
    disk = root_backend(context, instance)
    base = disk.cache.image_path(disk.record.image_id,
                                 disk.record.backing_format)
    os.rename(base, base + '.moved')
    os.mkfifo(base)
    before = image_api.get_all(context)

    with pytest.raises(exception.SnapshotFailed) as e:
        driver.snapshot(context, instance, 'snap')

    assert instance.uuid in str(e.value)
    assert os.path.basename(base) in str(e.value)
    assert isinstance(e.value.__cause__, exception.CacheEntryInvalid)
    assert image_api.get_all(context) == before
    assert snapshots_dir_entries() == []
    os.unlink(base)
    os.rename(base + '.moved', base)
    driver.destroy(context, instance)


# --- a guest that writes a qcow2 header into its raw disk -----------------

def write_qcow2_header(path, tmp_path):
    """What a hostile guest writes at the start of its raw disk: a qcow2
    header whose backing file is a host file."""
    hdr = tmp_path / 'hdr.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b',
                    '/etc/hostname', '-F', 'raw', str(hdr), '64M'],
                   check=True)
    header = hdr.read_bytes()[:65536]
    with open(path, 'r+b') as f:
        f.write(header)


def test_raw_disk_with_a_qcow2_header_stays_raw(conf, context, images,
                                                image_api, driver,
                                                tmp_path):
    """The copy reads the disk as raw (its record): the local store, which
    checks an import as a fetch does, refuses it; nothing is added or
    left behind, and the guest runs again."""
    helpers.configure(conf, 'flat', True)
    instance = boot(driver, context, images['raw'])
    backend = root_backend(context, instance)
    write_qcow2_header(backend.path, tmp_path)
    before = image_api.get_all(context)

    with pytest.raises(exception.SnapshotFailed) as err:
        driver.snapshot(context, instance, 'hostile')

    assert isinstance(err.value.__cause__, exception.ImageFormatMismatch)
    assert image_api.get_all(context) == before
    assert snapshots_dir_entries() == []
    assert driver.get_power_state(instance) == power_state.RUNNING
    driver.destroy(context, instance)


def test_raw_image_of_a_qcow2_header_is_refused_by_the_fetch(
        conf, context, images, driver, host, tmp_path):
    """Where the image service accepts it (as Glance does), the snapshot
    is a raw image of the disk's bytes; booting from it is refused by the
    verified fetch and makes no disk."""
    helpers.configure(conf, 'flat', True)
    instance = boot(driver, context, images['raw'])
    backend = root_backend(context, instance)
    write_qcow2_header(backend.path, tmp_path)
    store_root = tmp_path / 'accepting'
    store_root.mkdir()
    store = image_api_mod.API(helpers.AcceptingStore(str(store_root)))

    meta = driver.snapshot(context, instance, 'hostile', image_api=store)

    assert meta['disk_format'] == 'raw'
    assert store_head(store, meta['id']).startswith(b'QFI\xfb')
    data = helpers.download_to(store, meta['id'], tmp_path / 'snap.img')
    assert helpers.file_digest(data) == helpers.file_digest(backend.path)

    other = libvirt_driver.LibvirtDriver(
        host=host, disks=disk_manager.DiskManager(
            cache=image_cache.ImageCache(image_api=store)))
    copy, bdms = helpers.create_instance(context, meta, ephemeral_gb=0,
                                         ephemerals=0, swap_mb=0)
    with pytest.raises(exception.DiskCreateFailed) as err:
        other.spawn(context, copy, meta, bdms)
    assert 'qcow2' in str(err.value)
    assert helpers.disk_files(copy) == []
    assert other.host.lookup_domain(copy) is None
    driver.destroy(context, instance)


def test_snapshot_removes_the_parts_of_dead_snapshots_only(
        conf, context, images, image_api, driver):
    """A snapshot killed mid-copy leaves its part in snapshots_directory:
    a file of the part pattern that no live process flocks (the kernel
    dropped its maker's flock). The next snapshot removes it; a live
    maker's part (flocked: here a Part held open by this test, whose
    flock is its own open file description's) is left alone."""
    helpers.configure(conf, 'flat', True)
    instance = boot(driver, context, images['raw'])
    with staging.open_root(CONF.libvirt.snapshots_directory,
                           create=True) as directory:
        stale = '.snapshot.%s.part' % os.urandom(8).hex()
        with open(directory.join(stale), 'wb') as f:
            f.write(os.urandom(64 * units.Ki))
        live = staging.Part(directory, 'snapshot')
        try:
            meta = driver.snapshot(context, instance, 'snap')

            assert snapshots_dir_entries() == [live.name]
            assert live.still_ours()
        finally:
            live.discard()
    assert image_api.get(context, meta['id']) == meta
    assert snapshots_dir_entries() == []
    driver.destroy(context, instance)

"""Config drives and rescue disks through the driver: each with a record of
its own, written before the disk is made; real genisoimage, mkfs.vfat,
mtools, qemu-img, LVM on a loop device, ploop and libvirt's test driver."""

import json
import os
import subprocess
import tempfile
import threading
from xml.etree import ElementTree as etree

import pytest

import nova.conf
from nova import context as nova_context
from nova import exception
from nova import objects
from nova.image import api as image_api_mod
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import power_state
from nova.virt.libvirt import imagebackend
from nova.virt.libvirt.imagebackend import backends as disk_backends
from nova.virt.libvirt.imagebackend import cache as image_cache
from nova.virt.libvirt.imagebackend import manager as disk_manager
from nova.virt.libvirt.imagebackend import specs
from tests.functional.virt.libvirt import helpers

CONF = nova.conf.CONF


def configure(conf, request, backend):
    conf.config(group='libvirt', images_type=backend)
    conf.config(force_raw_images=True, use_cow_images=(backend == 'qcow2'))
    if specs.SPECS[backend].container == ('volume_group',
                                          'images_volume_group'):
        conf.config(group='libvirt', images_volume_group=request.
                    getfixturevalue('lvm_vg').vg)


def domain_disks(dom):
    """[(device, target, bus, driver type, source, boot order, readonly)]"""
    result = []
    for disk in etree.fromstring(dom.XMLDesc(0)).findall('./devices/disk'):
        source = disk.find('source')
        boot = disk.find('boot')
        result.append((
            disk.get('device'), disk.find('target').get('dev'),
            disk.find('target').get('bus'), disk.find('driver').get('type'),
            source.get('file') or source.get('dev'),
            boot.get('order') if boot is not None else None,
            disk.find('readonly') is not None))
    return result


def texts(records):
    """{disk_name: driver_info text}: records compared as persisted."""
    return {n: r.to_driver_info() for n, r in records.items()}


def spawn(driver, context, image_meta, **kwargs):
    # Small (the root is the image's 64 MiB, a swap disk of 64 MiB): the
    # test volume group is small and shared.
    instance, bdms = helpers.create_instance(context, image_meta,
                                             root_gb=0, ephemeral_gb=0,
                                             ephemerals=0, swap_mb=64)
    driver.spawn(context, instance, image_meta, bdms, **kwargs)
    return instance


def read_disk(record, instance, tmp_path):
    """The raw bytes of a recorded disk (format pinned)."""
    out = tmp_path / ('%s.raw' % record.disk_name)
    backend = imagebackend.backend_for(instance, record)
    with backend.snapshot_source() as (source, fmt):
        subprocess.run(['qemu-img', 'convert', '-q', '-f', fmt, '-O', 'raw',
                        source, str(out)], check=True)
    return out


def iso_metadata(path):
    return json.loads(subprocess.run(
        ['isoinfo', '-J', '-i', str(path), '-x',
         '/openstack/latest/meta_data.json'],
        check=True, capture_output=True, text=True).stdout)


def vfat_metadata(path):
    return json.loads(subprocess.run(
        ['mcopy', '-n', '-i', str(path), '::/openstack/latest/meta_data.json',
         '-'], check=True, capture_output=True, text=True).stdout)


# --- config drive ----------------------------------------------------------

@pytest.mark.parametrize('backend', sorted(disk_backends.BACKENDS))
def test_iso9660_config_drive_on_every_backend(
        conf, context, images, driver, backend, request, tmp_path):
    configure(conf, request, backend)
    instance = spawn(driver, context, images['raw'], config_drive=True)

    record = helpers.records(context, instance)['disk.config']
    # As upstream: a raw file disk, except on an lvm node (a volume).
    assert record.backend == ('lvm' if backend == 'lvm' else 'flat')
    assert (record.format, record.source_kind) == ('raw', 'file')
    assert record.image_id is None and record.cache_name is None
    raw = read_disk(record, instance, tmp_path)
    assert iso_metadata(raw)['uuid'] == instance.uuid
    with open(raw, 'rb') as f:
        f.seek(32769)
        assert f.read(5) == b'CD001'

    disks = domain_disks(driver.host.lookup_domain(instance))
    assert disks[-1][:4] == ('cdrom', 'hdd', 'ide', 'raw')
    assert disks[-1][6] is True
    assert [d[0] for d in disks[:-1]] == ['disk'] * 2

    # Kept across a reboot; removed with its record by destroy.
    driver.reboot(context, instance)
    assert domain_disks(driver.host.lookup_domain(instance)) == disks
    driver.destroy(context, instance)
    assert not imagebackend.backend_for(instance, record).exists()


def test_vfat_config_drive_is_a_disk_and_forced(conf, context, images,
                                                driver, tmp_path):
    helpers.configure(conf, 'qcow2', True)
    conf.config(config_drive_format='vfat', force_config_drive=True)
    instance = spawn(driver, context, images['raw'])

    record = helpers.records(context, instance)['disk.config']
    assert record.backend == 'flat' and record.size == 64 << 20
    assert vfat_metadata(read_disk(record, instance, tmp_path))[
        'uuid'] == instance.uuid
    disks = domain_disks(driver.host.lookup_domain(instance))
    assert disks[-1][:3] == ('disk', 'vdc', 'virtio')
    assert disks[-1][6] is False
    driver.destroy(context, instance)


def test_no_config_drive_unless_asked(conf, context, images, driver):
    helpers.configure(conf, 'qcow2', True)
    instance = spawn(driver, context, images['raw'])
    assert 'disk.config' not in helpers.records(context, instance)
    assert 'disk.config' not in helpers.disk_files(instance)
    driver.destroy(context, instance)


def test_import_file_refuses_what_is_not_a_config_drive(
        conf, context, images, driver, tmp_path):
    helpers.configure(conf, 'qcow2', True)
    instance = spawn(driver, context, images['raw'])
    source = tmp_path / 'f'
    source.write_bytes(b'x' * 4096)
    root = imagebackend.backend_for(
        instance, helpers.records(context, instance)['disk'])
    with pytest.raises(exception.InvalidInput):
        root.import_file(str(source))
    driver.destroy(context, instance)


# --- rescue ----------------------------------------------------------------

@pytest.mark.parametrize('backend', sorted(disk_backends.BACKENDS))
def test_rescue_and_unrescue_on_every_backend(conf, context, images,
                                              driver, backend, request,
                                              image_api):
    configure(conf, request, backend)
    instance = spawn(driver, context, images['raw'])
    normal = domain_disks(driver.host.lookup_domain(instance))
    own = texts(helpers.records(context, instance))

    driver.rescue(context, instance, rescue_image_id=images['qcow2']['id'])

    records = helpers.records(context, instance)
    rescue = records['disk.rescue']
    assert (rescue.source_kind, rescue.image_id) == (
        'rescue', images['qcow2']['id'])
    assert rescue.backend == backend
    assert imagebackend.backend_for(instance, rescue).exists()
    # Its own disks are exactly as recorded, untouched.
    assert {n: r for n, r in texts(records).items()
            if n != 'disk.rescue'} == own
    dom = driver.host.lookup_domain(instance)
    assert dom.isActive()
    disks = domain_disks(dom)
    assert disks[0][5] == '1'   # boots from the rescue disk
    assert disks[0][3] == rescue.format
    rescue_backend = imagebackend.backend_for(instance, rescue)
    assert disks[0][4] == rescue_backend.libvirt_info('vda').source_path
    # ... then its own disks, each with its recorded format and source.
    assert [(d[3], d[4]) for d in disks[1:]] == [
        (d[3], d[4]) for d in normal]
    assert all(d[5] is None for d in disks[1:])

    with pytest.raises(exception.InvalidInput):
        driver.rescue(context, instance)

    driver.unrescue(context, instance)
    assert 'disk.rescue' not in helpers.records(context, instance)
    assert not rescue_backend.exists()
    assert domain_disks(driver.host.lookup_domain(instance)) == normal
    assert driver.get_power_state(instance) == power_state.RUNNING
    with pytest.raises(exception.InvalidInput):
        driver.unrescue(context, instance)
    driver.destroy(context, instance)


def test_rescue_image_defaults(conf, context, images, driver):
    helpers.configure(conf, 'qcow2', True)
    instance = spawn(driver, context, images['raw'])
    driver.rescue(context, instance)
    assert helpers.records(context, instance)['disk.rescue'].image_id == \
        images['raw']['id']
    driver.unrescue(context, instance)
    conf.config(group='libvirt', rescue_image_id=images['qcow2']['id'])
    driver.rescue(context, instance)
    assert helpers.records(context, instance)['disk.rescue'].image_id == \
        images['qcow2']['id']
    # destroy removes the rescue disk with the others.
    driver.destroy(context, instance)
    assert helpers.disk_files(instance) == []


def test_rescue_from_a_hostile_image_leaves_nothing(
        conf, context, images, host, tmp_path):
    """A rescue image declared raw holding a qcow2 header (which a store
    like Glance accepts) is refused by the verified fetch: no rescue disk,
    no record, the guest's own disks as they were."""
    helpers.configure(conf, 'flat', True)
    store_root = tmp_path / 'accepting'
    store_root.mkdir()
    store = image_api_mod.API(helpers.AcceptingStore(str(store_root)))
    good = store.import_file(context, helpers.make_image_file(
        str(tmp_path), 'raw'), 'raw')
    hostile = store.import_file(context, helpers.make_image_file(
        str(tmp_path), 'qcow2', name='hostile'), 'raw')
    driver = libvirt_driver.LibvirtDriver(
        host=host, disks=disk_manager.DiskManager(
            cache=image_cache.ImageCache(image_api=store)))
    instance = spawn(driver, context, good)
    before = texts(helpers.records(context, instance))
    files = helpers.disk_files(instance)

    with pytest.raises(exception.ImageUnacceptable):
        driver.rescue(context, instance, rescue_image_id=hostile['id'])

    assert texts(helpers.records(context, instance)) == before
    assert helpers.disk_files(instance) == files
    driver.destroy(context, instance)


def test_a_second_rescue_is_refused_with_the_guest_left_running(
        conf, context, images, driver):
    helpers.configure(conf, 'qcow2', True)
    instance = spawn(driver, context, images['raw'])
    driver.rescue(context, instance)
    rescued = domain_disks(driver.host.lookup_domain(instance))

    with pytest.raises(exception.InvalidInput) as e:
        driver.rescue(context, instance)

    assert 'rescued already' in str(e.value)
    assert driver.get_power_state(instance) == power_state.RUNNING
    assert domain_disks(driver.host.lookup_domain(instance)) == rescued
    driver.destroy(context, instance)


def test_two_rescues_at_once_leave_one_whole_rescue(
        conf, context, images, driver, monkeypatch):
    """Both pass the "rescued already" check before either records its
    disk (the two calls are lined up at ``_verify``, right after it: a
    barrier in the test, the only way to hit that window every time). The
    loser must not remove the winner's disk: one record, one disk, and
    unrescue undoes it."""
    helpers.configure(conf, 'qcow2', True)
    instance = spawn(driver, context, images['raw'])
    barrier = threading.Barrier(2, timeout=60)
    verify = libvirt_driver.LibvirtDriver._verify

    def lined_up(disks):
        barrier.wait()
        verify(disks)

    monkeypatch.setattr(libvirt_driver.LibvirtDriver, '_verify',
                        staticmethod(lined_up))
    outcomes = []

    def rescue():
        try:
            driver.rescue(nova_context.get_admin_context(), instance)
            outcomes.append(None)
        except exception.NovaException as e:
            outcomes.append(e)

    threads = [threading.Thread(target=rescue) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    monkeypatch.undo()

    assert outcomes.count(None) == 1, outcomes
    [failed] = [e for e in outcomes if e is not None]
    assert isinstance(failed, exception.DiskCreateFailed)
    assert 'disk.rescue' in str(failed)
    rescue = helpers.records(context, instance)['disk.rescue']
    assert imagebackend.backend_for(instance, rescue).exists()
    assert domain_disks(driver.host.lookup_domain(instance))[0][5] == '1'
    driver.unrescue(context, instance)
    assert 'disk.rescue' not in helpers.records(context, instance)
    assert 'disk.rescue' not in helpers.disk_files(instance)
    driver.destroy(context, instance)


def test_a_config_drive_recorded_but_never_made_is_made_on_retry(
        conf, context, images, driver):
    # What a spawn that died after recording the config drive, before
    # making it, leaves: the record, no file, no domain.
    helpers.configure(conf, 'qcow2', True)
    instance = spawn(driver, context, images['raw'], config_drive=True)
    driver.destroy(context, instance, destroy_disks=False)
    os.unlink(os.path.join(CONF.instances_path, instance.uuid,
                           'disk.config'))
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        context, instance.uuid)

    driver.spawn(context, instance, images['raw'], bdms, config_drive=True)

    assert driver.get_power_state(instance) == power_state.RUNNING
    assert 'disk.config' in helpers.disk_files(instance)
    assert list(helpers.records(context, instance)).count('disk.config') == 1
    driver.destroy(context, instance)


def test_a_config_drive_that_cannot_be_built_fails_the_spawn_typed(
        conf, context, images, driver, monkeypatch, tmp_path):
    # The drive is built in the system's temporary directory: gone, the
    # build fails (a real OSError). The spawn fails naming the drive and
    # removes the disks it made; their records stay for a retry.
    helpers.configure(conf, 'qcow2', True)
    instance, bdms = helpers.create_instance(context, images['raw'],
                                             root_gb=0, ephemeral_gb=0,
                                             ephemerals=0, swap_mb=64)
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path / 'missing'))

    with pytest.raises(exception.DiskCreateFailed) as e:
        driver.spawn(context, instance, images['raw'], bdms,
                     config_drive=True)

    assert 'disk.config' in str(e.value) and instance.uuid in str(e.value)
    assert helpers.disk_files(instance) == []
    assert sorted(helpers.records(context, instance)) == ['disk',
                                                          'disk.swap']
    assert driver.host.lookup_domain(instance) is None
    monkeypatch.undo()
    driver.spawn(context, instance, images['raw'], config_drive=True)
    assert 'disk.config' in helpers.disk_files(instance)
    driver.destroy(context, instance)


def test_an_interrupted_spawn_removes_its_config_drive(
        conf, context, images, driver, monkeypatch):
    # Ctrl-C once every disk is made: the cleanup must see the config
    # drive's mapping, created after the spawn loaded the others.
    helpers.configure(conf, 'qcow2', True)
    instance, bdms = helpers.create_instance(context, images['raw'],
                                             root_gb=0, ephemeral_gb=0,
                                             ephemerals=0, swap_mb=0)

    def interrupted(xml):
        raise KeyboardInterrupt()

    monkeypatch.setattr(driver.host, 'define_domain', interrupted)
    with pytest.raises(KeyboardInterrupt):
        driver.spawn(context, instance, images['raw'], bdms,
                     config_drive=True)

    assert helpers.disk_files(instance) == []


def test_a_rescued_guest_stays_rescued_through_reboots_and_power_cycles(
        conf, context, images, driver):
    helpers.configure(conf, 'qcow2', True)
    instance = spawn(driver, context, images['raw'])
    normal = domain_disks(driver.host.lookup_domain(instance))
    driver.rescue(context, instance, rescue_image_id=images['qcow2']['id'])
    rescued = domain_disks(driver.host.lookup_domain(instance))
    assert rescued[0][5] == '1' and rescued[1:] != []

    for step in (lambda: driver.reboot(context, instance),
                 lambda: driver.power_off(context, instance),
                 lambda: driver.power_on(context, instance)):
        step()
        assert domain_disks(driver.host.lookup_domain(instance)) == rescued
    assert 'disk.rescue' in driver.get_guest_xml(context, instance)

    driver.unrescue(context, instance)
    assert domain_disks(driver.host.lookup_domain(instance)) == normal
    driver.destroy(context, instance)

"""LibvirtDriver with real disks, a real database and libvirt's test driver.

Every landed file backend (flat, qcow2) spawns and destroys a 4-disk
instance (root, two ephemerals, swap); each disk is checked with qemu-img
(its format pinned from the record) and in the domain's XML. Then: the
layout settings are changed under a running instance and every later
operation still obeys the records.
"""

import os
import subprocess
from xml.etree import ElementTree as etree

import pytest

import nova.conf
from nova import exception
from nova import objects
from nova.virt.libvirt import power_state
from nova.virt.libvirt import imagebackend
from tests.functional import helpers as func_helpers
from tests.functional.virt.libvirt import helpers

CONF = nova.conf.CONF

FILE_BACKENDS = helpers.FILE_BACKENDS
CASES = helpers.CASES
DISK_NAMES = helpers.DISK_NAMES


def domain_disks(xml):
    """[(target, driver type, source, [(backing format, backing source)])]
    of a domain XML, in device order."""
    disks = []
    for disk in etree.fromstring(xml).findall('./devices/disk'):
        chain = []
        store = disk.find('backingStore')
        while store is not None and store.find('source') is not None:
            chain.append((store.find('format').get('type'),
                          store.find('source').get('file')))
            store = store.find('backingStore')
        disks.append((disk.find('target').get('dev'),
                      disk.find('driver').get('type'),
                      disk.find('source').get('file'), chain))
    return disks


def fs_type(path):
    """The filesystem signature in a raw file, by blkid (not qemu)."""
    return subprocess.run(['blkid', '-p', '-s', 'TYPE', '-o', 'value', path],
                          capture_output=True, text=True).stdout.strip()


def spawn_four_disks(driver, context, image_meta):
    instance, bdms = helpers.create_instance(context, image_meta,
                                             ephemerals=2)
    driver.spawn(context, instance, image_meta, bdms)
    return instance


@pytest.mark.parametrize('case', helpers.CASE_KEYS, ids=helpers.case_id)
def test_spawn_then_destroy(conf, context, images, driver, case):
    backend, image_format, force_raw = case
    helpers.configure(conf, backend, force_raw)
    image_meta = images[image_format]
    instance = spawn_four_disks(driver, context, image_meta)

    records = helpers.records(context, instance)
    assert sorted(records) == sorted(DISK_NAMES)
    assert {r.backend for r in records.values()} == {backend}
    root_format, root_backing = CASES[case]
    assert (records['disk'].format, records['disk'].backing_format) == (
        root_format, root_backing)
    assert records['disk'].image_id == image_meta['id']
    assert records['disk.local'].cache_name == 'ephemeral_1_ext4'
    assert records['disk.swap'].cache_name == 'swap_64'
    assert helpers.disk_files(instance) == sorted(DISK_NAMES)

    # Every disk is what its record says, read with the format pinned.
    for name, record in records.items():
        backend_obj = imagebackend.backend_for(instance, record)
        info = func_helpers.qemu_info(backend_obj.path, record.format)
        assert info['format'] == record.format
        assert info['virtual-size'] == record.size
        assert info.get('backing-filename-format') == record.backing_format
        assert backend_obj.inspect()['virtual_size'] == record.size
        if record.format == 'raw':
            assert fs_type(backend_obj.path) == {
                'disk.local': 'ext4', 'disk.eph1': 'ext4',
                'disk.swap': 'swap'}.get(name, '')

    # The guest has them in attach order, each with its recorded format.
    dom = driver.host.lookup_domain(instance)
    assert dom.isActive()
    assert driver.get_power_state(instance) == power_state.RUNNING
    disks = domain_disks(dom.XMLDesc(0))
    assert [d[0] for d in disks] == ['vda', 'vdb', 'vdc', 'vdd']
    for (target, driver_type, source, chain), name in zip(disks,
                                                          DISK_NAMES):
        record = records[name]
        assert os.path.basename(source) == name
        assert driver_type == record.format
        assert [fmt for fmt, _ in chain] == (
            [record.backing_format] if record.backing_format else [])

    driver.destroy(context, instance)
    assert driver.host.lookup_domain(instance) is None
    assert not os.path.exists(os.path.join(CONF.instances_path,
                                           instance.uuid))
    # Idempotent: nothing left to stop or remove is not an error.
    driver.destroy(context, instance)


@pytest.mark.parametrize('backend', FILE_BACKENDS)
def test_changed_settings_change_nothing_for_an_existing_instance(
        conf, context, images, driver, backend):
    helpers.configure(conf, backend, force_raw=False)
    instance = spawn_four_disks(driver, context, images['qcow2'])
    dom = driver.host.lookup_domain(instance)
    before_xml = domain_disks(dom.XMLDesc(0))
    before_records = {name: r.to_driver_info() for name, r in
                      helpers.records(context, instance).items()}
    files = {name: os.stat(os.path.join(CONF.instances_path,
                                        instance.uuid, name)).st_ino
             for name in DISK_NAMES}

    # Every layout setting flips; none may touch this instance.
    other = {'flat': 'qcow2', 'qcow2': 'flat'}[backend]
    conf.config(group='libvirt', images_type=other)
    conf.config(use_cow_images=(other == 'qcow2'), force_raw_images=True)

    driver.reboot(context, instance)
    dom = driver.host.lookup_domain(instance)
    assert dom.isActive()
    assert domain_disks(dom.XMLDesc(0)) == before_xml

    driver.power_off(context, instance)
    assert driver.get_power_state(instance) == power_state.SHUTDOWN
    assert domain_disks(dom.XMLDesc(0)) == before_xml
    driver.power_on(context, instance)
    assert driver.get_power_state(instance) == power_state.RUNNING
    assert domain_disks(dom.XMLDesc(0)) == before_xml

    after_records = {name: r.to_driver_info() for name, r in
                     helpers.records(context, instance).items()}
    assert after_records == before_records
    # Same files: nothing was recreated or converted.
    assert files == {name: os.stat(os.path.join(
        CONF.instances_path, instance.uuid, name)).st_ino
        for name in DISK_NAMES}

    # A new instance does get the new layout: the settings did change.
    other_instance = spawn_four_disks(driver, context, images['qcow2'])
    assert {r.backend for r in helpers.records(
        context, other_instance).values()} == {other}

    # Destroy removes the recorded disks, leaves the other instance and
    # the shared cache alone.
    base_dir = imagebackend.get_cache().base_dir
    cached = sorted(os.listdir(base_dir))
    driver.destroy(context, instance)
    assert helpers.disk_files(instance) == []
    assert helpers.disk_files(other_instance) == sorted(DISK_NAMES)
    assert sorted(os.listdir(base_dir)) == cached
    driver.destroy(context, other_instance)


@pytest.mark.parametrize('backend', FILE_BACKENDS)
def test_destroy_keeps_disks_when_asked(conf, context, images, driver,
                                        backend):
    helpers.configure(conf, backend, force_raw=True)
    instance = spawn_four_disks(driver, context, images['raw'])
    driver.destroy(context, instance, destroy_disks=False)
    assert driver.host.lookup_domain(instance) is None
    assert helpers.disk_files(instance) == sorted(DISK_NAMES)
    driver.destroy(context, instance)
    assert helpers.disk_files(instance) == []


def test_volume_mappings_are_refused_before_anything_is_made(
        conf, context, images, driver):
    instance, _ = helpers.create_instance(context, images['raw'])
    objects.BlockDeviceMapping(
        context, instance_uuid=instance.uuid, source_type='volume',
        destination_type='volume', boot_index=1, volume_id='vol-1').create()
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        context, instance.uuid)
    with pytest.raises(exception.InstanceSpawnFailed, match='volume'):
        driver.spawn(context, instance, images['raw'], bdms)
    assert helpers.records(context, instance) == {}
    assert helpers.disk_files(instance) == []


def test_spawn_refuses_a_running_guest_and_reboot_restores_a_lost_one(
        conf, context, images, driver):
    instance = spawn_four_disks(driver, context, images['raw'])
    before = domain_disks(driver.host.lookup_domain(instance).XMLDesc(0))
    with pytest.raises(exception.InstanceSpawnFailed, match='running'):
        driver.spawn(context, instance, images['raw'])
    assert driver.get_power_state(instance) == power_state.RUNNING

    # The hypervisor forgets the guest (a host that restarted): a hard
    # reboot defines it again from the records.
    dom = driver.host.lookup_domain(instance)
    dom.destroy()
    dom.undefine()
    assert driver.get_power_state(instance) == power_state.NOSTATE
    driver.reboot(context, instance)
    dom = driver.host.lookup_domain(instance)
    assert dom.isActive()
    assert domain_disks(dom.XMLDesc(0)) == before
    driver.destroy(context, instance)


def _record_on_unavailable_backend(context, instance, disk_name):
    """Rewrite one disk's record as if it were made on an LVM host (a
    migration from there, or a record of older code): this host has no
    LVM backend. Returns a function that puts the record back."""
    for bdm in objects.BlockDeviceMappingList.get_by_instance_uuid(
            context, instance.uuid):
        record = bdm.get_disk_metadata()
        if record is not None and record.disk_name == disk_name:
            break
    original = bdm.driver_info
    lvm = objects.LibvirtDiskMetadata(
        backend='lvm', format='raw', size=record.size, disk_name=disk_name,
        volume_group='vg0', volume_name='%s_%s' % (instance.uuid, disk_name),
        cache_name=record.cache_name, image_id=record.image_id)
    bdm.driver_info = lvm.to_driver_info()
    bdm.save()

    def restore():
        bdm.driver_info = original
        bdm.save()
    return restore


@pytest.mark.parametrize('operation', ['destroy', 'reboot'])
def test_unavailable_backend_refuses_before_touching_anything(
        conf, context, images, driver, operation, monkeypatch):
    monkeypatch.delitem(imagebackend.BACKENDS, 'lvm', raising=False)
    instance = spawn_four_disks(driver, context, images['raw'])
    before = domain_disks(driver.host.lookup_domain(instance).XMLDesc(0))
    restore = _record_on_unavailable_backend(context, instance, 'disk.eph1')

    with pytest.raises(exception.BackendUnavailable) as e:
        getattr(driver, operation)(context, instance)
    assert e.value.kwargs['disk_name'] == 'disk.eph1'
    assert e.value.kwargs['backend'] == 'lvm'
    assert instance.uuid in str(e.value)
    # The guest runs on as it was; every disk and record is still there.
    dom = driver.host.lookup_domain(instance)
    assert dom is not None and dom.isActive()
    assert domain_disks(dom.XMLDesc(0)) == before
    assert helpers.disk_files(instance) == sorted(DISK_NAMES)
    assert helpers.records(context, instance)['disk.eph1'].backend == 'lvm'

    restore()
    driver.destroy(context, instance)
    assert driver.host.lookup_domain(instance) is None
    assert helpers.disk_files(instance) == []


def _lie_about_the_root_disk(context, instance, host_file):
    """The root disk is raw; its record is made to say flat qcow2, and
    the guest writes a qcow2 header naming ``host_file`` as backing file
    into it. Returns a function that puts the record back."""
    for bdm in objects.BlockDeviceMappingList.get_by_instance_uuid(
            context, instance.uuid):
        record = bdm.get_disk_metadata()
        if record is not None and record.disk_name == 'disk':
            break
    assert (record.backend, record.format) == ('flat', 'raw')
    original = bdm.driver_info
    record.format = 'qcow2'
    bdm.driver_info = record.to_driver_info()
    bdm.save()
    header = host_file + '.hdr'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b',
                    host_file, '-F', 'raw', header, '1M'], check=True)
    path = os.path.join(CONF.instances_path, instance.uuid, 'disk')
    with open(header, 'rb') as src, open(path, 'r+b') as dst:
        dst.write(src.read())

    def restore():
        bdm.driver_info = original
        bdm.save()
    return restore


@pytest.mark.parametrize('operation', ['power_on', 'reboot'])
def test_disk_unlike_its_record_is_never_started(
        conf, context, images, driver, tmp_path, operation):
    helpers.configure(conf, 'flat', force_raw=True)
    instance = spawn_four_disks(driver, context, images['raw'])
    if operation == 'power_on':
        driver.power_off(context, instance)
    dom = driver.host.lookup_domain(instance)
    before = domain_disks(dom.XMLDesc(0))
    host_file = str(tmp_path / 'host-file')
    with open(host_file, 'wb') as f:
        f.write(b'host data')
    restore = _lie_about_the_root_disk(context, instance, host_file)

    with pytest.raises(exception.DiskLayoutMismatch) as e:
        getattr(driver, operation)(context, instance)
    assert e.value.kwargs['disk_name'] == 'disk'
    assert instance.uuid in str(e.value) and host_file in str(e.value)
    # Stopped, and neither redefined (the domain still says raw) nor
    # started.
    dom = driver.host.lookup_domain(instance)
    assert not dom.isActive()
    assert domain_disks(dom.XMLDesc(0)) == before
    assert before[0][1] == 'raw'

    restore()
    driver.power_on(context, instance)
    assert driver.get_power_state(instance) == power_state.RUNNING
    driver.destroy(context, instance)
    assert helpers.disk_files(instance) == []


def test_spawn_retry_verifies_the_disks_it_keeps(conf, context, images,
                                                 driver, tmp_path):
    helpers.configure(conf, 'qcow2', force_raw=True)
    image_meta = images['raw']
    instance = spawn_four_disks(driver, context, image_meta)
    driver.destroy(context, instance, destroy_disks=False)
    # Someone swapped the root overlay for one over a host file.
    host_file = str(tmp_path / 'host-file')
    with open(host_file, 'wb') as f:
        f.truncate(64 * 1024 * 1024)
    root = os.path.join(CONF.instances_path, instance.uuid, 'disk')
    os.unlink(root)
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b',
                    host_file, '-F', 'raw', root], check=True)
    # ... and a swap disk is gone, to be made again by the retry.
    os.unlink(os.path.join(CONF.instances_path, instance.uuid, 'disk.swap'))

    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        context, instance.uuid)
    with pytest.raises(exception.DiskLayoutMismatch, match=host_file):
        driver.spawn(context, instance, image_meta, bdms)
    assert driver.host.lookup_domain(instance) is None
    assert helpers.disk_files(instance) == ['disk', 'disk.eph1',
                                            'disk.local']
    driver.destroy(context, instance)
    assert helpers.disk_files(instance) == []


@pytest.mark.parametrize('backend', FILE_BACKENDS)
def test_unsyncable_disk_directory_fails_the_spawn_and_keeps_the_disks(
        conf, context, images, driver, backend, monkeypatch):
    helpers.configure(conf, backend, force_raw=True)
    image_meta = images['raw']
    instance, bdms = helpers.create_instance(context, image_meta,
                                             ephemerals=2)
    instance_dir = os.path.join(CONF.instances_path, instance.uuid)
    # A directory whose fsync fails with EIO cannot be made on this host
    # (no device-mapper for a failing device): os.fsync fails for the
    # instance directory alone.
    real_fsync = os.fsync

    def fsync(fd):
        if os.path.realpath('/proc/self/fd/%d' % fd) == instance_dir:
            raise OSError(5, 'Input/output error')
        return real_fsync(fd)
    monkeypatch.setattr(os, 'fsync', fsync)
    with pytest.raises(exception.InstanceSpawnFailed,
                       match='Input/output error'):
        driver.spawn(context, instance, image_meta, bdms)
    # The guest never ran; the disks and their records stay for a retry.
    assert driver.host.lookup_domain(instance) is None
    assert helpers.disk_files(instance) == sorted(DISK_NAMES)
    assert sorted(helpers.records(context, instance)) == sorted(DISK_NAMES)

    monkeypatch.setattr(os, 'fsync', real_fsync)
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        context, instance.uuid)
    driver.spawn(context, instance, image_meta, bdms)
    assert driver.host.lookup_domain(instance).isActive()
    driver.destroy(context, instance)
    assert helpers.disk_files(instance) == []

"""Guest disk tuning: what upstream Nova 34.0.0 computes, from config, the
flavor and the record, and that libvirt (test:///default) takes the element.

Upstream's answers below were read from its code (imagebackend's
``libvirt_info``/``disk_qos``/``disk_scsi`` and the driver's
``disk_cachemode``/``_set_cache_mode``).
"""

import types
import uuid
from xml.etree import ElementTree as etree

import libvirt
import pytest

import nova.conf
from nova import objects
from nova.virt.libvirt import config
from nova.virt.libvirt import disk_tuning
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import host as libvirt_host
from nova.virt.libvirt import imagebackend
from nova.virt.libvirt.imagebackend import manager as disk_manager

from tests import fixtures

CONF = nova.conf.CONF


@pytest.fixture
def conf(tmp_path):
    overrides = fixtures.ConfOverrides()
    overrides.config(state_path=str(tmp_path))
    yield overrides
    overrides.undo()


def _record(backend='flat', fmt='raw', preallocated=False, **extra):
    values = dict(backend=backend, format=fmt, size=1024 ** 3,
                  disk_name='disk', image_id='img', preallocated=preallocated)
    if backend == 'lvm':
        values.update(volume_group='vg', volume_name='u_disk')
    if backend == 'qcow2':
        values.update(backing_format='raw')
    values.update(extra)
    return objects.LibvirtDiskMetadata(**values)


def _settings(cache_modes=(), default='none', discard=None,
              virt_type='kvm'):
    return disk_tuning.Settings(
        cache_modes=disk_tuning.parse_cache_modes(list(cache_modes)),
        default_cache_mode=default, discard=discard, virt_type=virt_type)


# --- cache mode ---

def test_cache_modes_parse_per_source_type_and_skip_invalid_entries():
    assert disk_tuning.parse_cache_modes(
        ['file=writethrough', 'block=none', 'network=bogus',
         'network=writeback', 'mount=turbo']) == {
        'file': 'writethrough', 'block': 'none', 'network': 'writeback'}
    assert disk_tuning.parse_cache_modes([]) == {}


@pytest.mark.parametrize('direct_io,mode', [(True, 'none'),
                                            (False, 'writeback')])
def test_default_cache_mode_falls_back_to_writeback(direct_io, mode):
    # Upstream's disk_cachemode: 'none', or 'writeback' without O_DIRECT.
    assert disk_tuning.default_cache_mode(direct_io) == mode


@pytest.mark.parametrize('source_type,mode', [
    ('file', 'writethrough'), ('block', 'directsync'), ('network', 'none')])
def test_configured_cache_mode_wins_per_source_type(source_type, mode):
    settings = _settings(['file=writethrough', 'block=directsync'])
    assert disk_tuning.cache_mode(settings, source_type) == mode


# --- io ---

@pytest.mark.parametrize('record,cache,io', [
    # preallocate_images=space is recorded as preallocated: native AIO.
    (_record('flat', preallocated=True), 'none', 'native'),
    (_record('qcow2', 'qcow2', preallocated=True), 'none', 'native'),
    (_record('flat', preallocated=True), 'directsync', 'native'),
    # Not preallocated: libvirt's default.
    (_record('flat'), 'none', None),
    (_record('qcow2', 'qcow2'), 'none', None),
    # LVM volumes are fully allocated (never sparse here).
    (_record('lvm'), 'none', 'native'),
    # Ploop and RBD: upstream never sets io.
    (_record('ploop', 'ploop'), 'none', None),
    (_record('rbd', rbd_pool='rbd', volume_name='u_disk'), 'none', None),
    # native needs O_DIRECT: a caching mode falls back to threads.
    (_record('flat', preallocated=True), 'writeback', 'threads'),
    (_record('lvm'), 'writethrough', 'threads'),
    (_record('lvm'), 'unsafe', 'threads'),
])
def test_io_mode_as_upstream(record, cache, io):
    assert disk_tuning.io_mode(record, cache) == io


# --- driver name, QoS, SCSI ---

@pytest.mark.parametrize('virt_type,source_type,name', [
    ('kvm', 'file', 'qemu'), ('qemu', 'block', 'qemu'),
    ('parallels', 'file', None), ('lxc', 'file', None),
    # upstream's Rbd.libvirt_info never names a driver
    ('kvm', 'network', None)])
def test_driver_name(virt_type, source_type, name):
    assert disk_tuning.driver_name(virt_type, source_type) == name


def test_qos_takes_the_six_quota_specs_in_upstreams_order():
    specs = {'quota:disk_total_iops_sec': 300,
             'quota:disk_write_bytes_sec': '2048',
             'quota:disk_read_bytes_sec': '1024',
             'quota:disk_read_iops_sec': '100',
             'quota:disk_write_iops_sec': '200',
             'quota:disk_total_bytes_sec': '4096',
             # not disk QoS, or not upstream's disk keys:
             'quota:cpu_shares': '10', 'hw:disk_read_bytes_sec': '1',
             'quota:disk_read_bytes_sec_max': '1', 'disk_read_iops_sec': '1'}
    assert list(disk_tuning.qos(specs).items()) == [
        ('read_bytes_sec', '1024'), ('read_iops_sec', '100'),
        ('write_bytes_sec', '2048'), ('write_iops_sec', '200'),
        ('total_bytes_sec', '4096'), ('total_iops_sec', '300')]
    assert disk_tuning.qos(None) == {}
    assert disk_tuning.qos({}) == {}


def test_scsi_units_count_scsi_disks_only():
    assert disk_tuning.scsi_units(['scsi', 'virtio', 'scsi', 'scsi']) == [
        0, None, 1, 2]
    assert disk_tuning.scsi_units(['virtio', 'virtio']) == [None, None]


# --- the flavor ---

SPECS = {'quota:disk_read_bytes_sec': '1024'}


@pytest.mark.parametrize('instance,specs', [
    (objects.Instance(uuid=str(uuid.uuid4())), {}),
    (types.SimpleNamespace(uuid='u'), {}),
    (types.SimpleNamespace(uuid='u', flavor=None), {}),
    (types.SimpleNamespace(uuid='u', flavor={'extra_specs': SPECS}), SPECS),
    (types.SimpleNamespace(uuid='u', flavor={}), {}),
    (types.SimpleNamespace(
        uuid='u', flavor=types.SimpleNamespace(extra_specs=SPECS)), SPECS),
    (types.SimpleNamespace(
        uuid='u', flavor=types.SimpleNamespace(extra_specs=None)), {}),
])
def test_flavor_extra_specs_with_or_without_a_flavor(instance, specs):
    assert disk_tuning.flavor_extra_specs(instance) == specs


# --- the element, through libvirt ---

def _define_and_read_back(disk_elements):
    """Define a domain with ``disk_elements`` in test:///default and
    return libvirt's own XML of its disks."""
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    conn = libvirt.open('test:///default')
    guest = config.LibvirtConfigGuest(name='tuning-%s' % uuid.uuid4(),
                                      uuid=str(uuid.uuid4()),
                                      virt_type='test',
                                      disks=disk_elements)
    dom = conn.defineXML(guest.to_xml())
    try:
        return etree.fromstring(dom.XMLDesc(0)).findall('./devices/disk')
    finally:
        dom.undefine()
        conn.close()


def test_tuned_elements_are_what_libvirt_keeps():
    settings = _settings(['block=writethrough'], default='none',
                         discard='unmap')
    specs = {'quota:disk_read_bytes_sec': '10240000',
             'quota:disk_write_iops_sec': '500'}
    file_disk = config.LibvirtConfigGuestDisk(
        source_type='file', source_path='/nonexistent/u/disk',
        target_dev='sda', target_bus='scsi', driver_format='raw')
    block_disk = config.LibvirtConfigGuestDisk(
        source_type='block', source_path='/dev/vg/u_disk.local',
        target_dev='sdb', target_bus='scsi', driver_format='raw')
    units = disk_tuning.scsi_units(['scsi', 'scsi'])
    disk_tuning.apply(file_disk, disk_tuning.tune(
        settings, 'file', _record('flat', preallocated=True), specs,
        unit=units[0]))
    disk_tuning.apply(block_disk, disk_tuning.tune(
        settings, 'block', _record('lvm'), specs, unit=units[1]))

    first, second = _define_and_read_back([file_disk, block_disk])
    driver = first.find('driver')
    assert (driver.get('name'), driver.get('type'), driver.get('cache'),
            driver.get('io'), driver.get('discard')) == (
        'qemu', 'raw', 'none', 'native', 'unmap')
    assert {c.tag: c.text for c in first.find('iotune')} == {
        'read_bytes_sec': '10240000', 'write_iops_sec': '500'}
    address = first.find('address')
    assert (address.get('type'), address.get('controller'),
            address.get('unit')) == ('drive', '0', '0')

    # block=writethrough does not use O_DIRECT: io falls back to threads.
    driver = second.find('driver')
    assert (driver.get('cache'), driver.get('io')) == ('writethrough',
                                                       'threads')
    assert second.find('address').get('unit') == '1'


def test_parallels_gets_no_qemu_driver_name():
    disk = config.LibvirtConfigGuestDisk(
        source_type='file', source_path='/nonexistent/u/disk',
        target_dev='sda', target_bus='sata', driver_format='ploop')
    disk_tuning.apply(disk, disk_tuning.tune(
        _settings(virt_type='parallels'), 'file', _record('ploop', 'ploop')))
    element = etree.fromstring(disk.to_xml())
    assert element.find('driver').attrib == {'type': 'ploop',
                                             'cache': 'none'}
    assert element.find('iotune') is None
    assert element.find('address') is None


# --- the driver's guest XML ---

def _driver():
    host = libvirt_host.Host('test:///default')
    return libvirt_driver.LibvirtDriver(host=host,
                                        disks=disk_manager.DiskManager())


def _disks(instance, records):
    return [disk_manager.LocalDisk(None, 'root',
                                   imagebackend.backend_for(instance, r))
            for r in records]


def test_guest_xml_tunes_every_disk_from_conf_flavor_and_record(conf):
    conf.config(group='libvirt', disk_cachemodes=['file=writethrough'],
                hw_disk_discard='unmap', virt_type='kvm')
    instance = types.SimpleNamespace(
        uuid=str(uuid.uuid4()),
        flavor={'extra_specs': {'quota:disk_total_iops_sec': '1000'}})
    records = [_record('flat', preallocated=True),
               _record('flat', 'qcow2', disk_name='disk.local',
                       image_id=None, cache_name='ephemeral_1_ext4')]
    xml = _driver()._guest_xml(instance, _disks(instance, records))
    disks = etree.fromstring(xml).findall('./devices/disk')
    assert [(d.find('driver').get('cache'), d.find('driver').get('io'),
             d.find('driver').get('discard'), d.find('driver').get('name'),
             d.find('iotune/total_iops_sec').text) for d in disks] == [
        ('writethrough', 'threads', 'unmap', 'qemu', '1000'),
        ('writethrough', None, 'unmap', 'qemu', '1000')]
    # The record still says what the disk is.
    assert [d.find('driver').get('type') for d in disks] == ['raw', 'qcow2']


def test_guest_xml_default_cache_is_none_where_o_direct_works(conf):
    conf.config(group='libvirt', virt_type='parallels')
    instance = objects.Instance(uuid=str(uuid.uuid4()))
    xml = _driver()._guest_xml(instance, _disks(instance, [_record()]))
    driver = etree.fromstring(xml).find('./devices/disk/driver')
    # tmp_path (instances_path) is on a filesystem with O_DIRECT.
    assert driver.attrib == {'type': 'raw', 'cache': 'none'}

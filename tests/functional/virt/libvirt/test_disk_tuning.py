"""Disk tuning side by side with upstream Nova 34.0.0, on real filesystems.

Upstream falls back to ``writeback`` when ``instances_path`` refuses
O_DIRECT, and a preallocated disk's ``io='native'`` then becomes
``threads``. ramfs is a real filesystem that refuses O_DIRECT; mounting it
needs root, which these functional tests have.

The side-by-side test runs upstream's own imagebackend and driver code (in
its venv, ``NOVA_TEST_UPSTREAM_PYTHON``, see tools/upstream/venv.sh) on the
same layouts and settings as disk_tuning, and compares the attributes of
the ``<disk>`` element that say how it is attached. What the disk is (type,
source, backing chain) is not compared: it comes from the record here.
"""

import itertools
import json
import os
import subprocess
import uuid
from xml.etree import ElementTree as etree

import pytest

from nova import objects
from nova.virt.libvirt import config
from nova.virt.libvirt import disk_tuning
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import host as libvirt_host
from nova.virt.libvirt import imagebackend
from nova.virt.libvirt.imagebackend import manager as disk_manager
from tests import fixtures


@pytest.fixture
def ramfs(tmp_path):
    mountpoint = tmp_path / 'ramfs'
    mountpoint.mkdir()
    subprocess.run(['mount', '-t', 'ramfs', 'ramfs', str(mountpoint)],
                   check=True)
    try:
        yield str(mountpoint)
    finally:
        subprocess.run(['umount', str(mountpoint)], check=True)


@pytest.fixture
def overrides():
    conf = fixtures.ConfOverrides()
    yield conf
    conf.undo()


def test_direct_io_probe(ramfs, tmp_path):
    # Twice each: a probe must not trip over what an earlier one left.
    for _ in range(2):
        assert libvirt_driver._supports_direct_io(ramfs) is False
        assert libvirt_driver._supports_direct_io(str(tmp_path)) is True
    # The probe leaves nothing behind (on ramfs, Linux creates the file
    # before it refuses O_DIRECT).
    assert [p.name for p in tmp_path.iterdir()] == ['ramfs']
    assert os.listdir(ramfs) == []


def test_without_o_direct_cache_is_writeback_and_io_threads(ramfs,
                                                            overrides):
    overrides.config(instances_path=ramfs)
    overrides.config(group='libvirt', virt_type='kvm', disk_cachemodes=[])
    instance = objects.Instance(uuid=str(uuid.uuid4()))
    records = [objects.LibvirtDiskMetadata(
        backend='flat', format='raw', size=1024 ** 3, disk_name='disk',
        image_id='img', preallocated=True)]
    disks = [disk_manager.LocalDisk(None, 'root',
                                    imagebackend.backend_for(instance, r))
             for r in records]
    driver = libvirt_driver.LibvirtDriver(
        host=libvirt_host.Host('test:///default'),
        disks=disk_manager.DiskManager())
    xml = driver._guest_xml(instance, disks)
    element = etree.fromstring(xml).find('./devices/disk/driver')
    assert (element.get('cache'), element.get('io')) == ('writeback',
                                                         'threads')


UPSTREAM_PYTHON = os.environ.get('NOVA_TEST_UPSTREAM_PYTHON')
CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                     'upstream_tuning_child.py')
FORMATS = {'flat': 'raw', 'qcow2': 'qcow2', 'lvm': 'raw', 'ploop': 'ploop'}
EXTRA_SPECS = {'quota:disk_read_bytes_sec': '10485760',
               'quota:disk_read_iops_sec': '1024',
               'quota:disk_write_bytes_sec': '20971520',
               'quota:disk_write_iops_sec': '2048',
               'quota:disk_total_bytes_sec': '31457280',
               'quota:disk_total_iops_sec': '3072',
               'quota:cpu_shares': '5', 'hw:disk_read_bytes_sec': '1'}


def _cases():
    for (backend, prealloc, virt_type, modes, discard,
         (bus, unit)) in itertools.product(
            FORMATS, ('none', 'space'), ('kvm', 'qemu', 'parallels'),
            ({}, {'file': 'writethrough', 'block': 'writeback'},
             {'file': 'directsync', 'block': 'none'}, {'file': 'unsafe'}),
            (None, 'unmap'), (('virtio', None), ('scsi', 2))):
        yield {'backend': backend, 'preallocate_images': prealloc,
               'virt_type': virt_type, 'disk_cachemodes': modes,
               'hw_disk_discard': discard, 'extra_specs': EXTRA_SPECS,
               'bus': bus, 'unit': unit}


def _upstream(instances_path, cases, cwd):
    result = subprocess.run(
        [UPSTREAM_PYTHON, '-P', CHILD],
        input=json.dumps({'instances_path': instances_path,
                          'cases': cases}),
        capture_output=True, text=True, cwd=cwd,
        env=dict(os.environ, OS_NOVA_DISABLE_EVENTLET_PATCHING='1'))
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def _ours(instances_path, case):
    backend = case['backend']
    record = objects.LibvirtDiskMetadata(
        backend=backend, format=FORMATS[backend], size=1024 ** 3,
        disk_name='disk', image_id='img',
        # what policy records for preallocate_images = space
        preallocated=(case['preallocate_images'] == 'space' and
                      backend in ('flat', 'qcow2')))
    source_type = 'block' if backend == 'lvm' else 'file'
    element = config.LibvirtConfigGuestDisk(
        source_type=source_type, source_path='/nonexistent/disk',
        target_dev='sda', target_bus=case['bus'],
        driver_format=FORMATS[backend])
    settings = disk_tuning.Settings(
        cache_modes=case['disk_cachemodes'],
        default_cache_mode=disk_tuning.default_cache_mode(
            libvirt_driver._supports_direct_io(instances_path)),
        discard=case['hw_disk_discard'], virt_type=case['virt_type'])
    disk_tuning.apply(element, disk_tuning.tune(
        settings, source_type, record, case['extra_specs'],
        unit=case['unit']))
    xml = etree.fromstring(element.to_xml())
    driver = dict(xml.find('driver').attrib)
    driver.pop('type')
    address = xml.find('address')
    iotune = xml.find('iotune')
    return {'driver': driver,
            'iotune': {c.tag: c.text
                       for c in (iotune if iotune is not None else [])},
            'unit': address.get('unit') if address is not None else None}


@pytest.mark.skipif(not UPSTREAM_PYTHON,
                    reason='NOVA_TEST_UPSTREAM_PYTHON not set: run under '
                           'tools/with-services.sh (tools/upstream/venv.sh)')
@pytest.mark.parametrize('filesystem', ['direct_io', 'ramfs'])
def test_tuning_is_upstreams(filesystem, tmp_path, request):
    if filesystem == 'ramfs':
        instances_path = request.getfixturevalue('ramfs')
    else:
        instances_path = str(tmp_path / 'instances')
        os.makedirs(instances_path)
    cases = list(_cases())
    upstream = _upstream(instances_path, cases, cwd=str(tmp_path))
    differences = [(case, theirs, ours) for case, theirs, ours in zip(
        cases, upstream, (_ours(instances_path, c) for c in cases))
        if theirs != ours]
    assert len(upstream) == len(cases) == 384
    assert differences == [], differences[:3]
    # The comparison is not vacuous: both modes and fallbacks occurred.
    caches = {r['driver'].get('cache') for r in upstream}
    ios = {r['driver'].get('io') for r in upstream}
    assert ios == {None, 'native', 'threads'}
    expected_default = 'writeback' if filesystem == 'ramfs' else 'none'
    assert expected_default in caches

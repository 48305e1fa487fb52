"""The cache mode on a real filesystem without O_DIRECT (ramfs).

Upstream falls back to ``writeback`` when ``instances_path`` refuses
O_DIRECT, and a preallocated disk's ``io='native'`` then becomes
``threads``. ramfs is a real filesystem that refuses O_DIRECT; mounting it
needs root, which these functional tests have.
"""

import subprocess
import uuid
from xml.etree import ElementTree as etree

import pytest

from nova import objects
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import host as libvirt_host
from nova.virt.libvirt import imagebackend
from nova.virt.libvirt.imagebackend import manager as disk_manager

import lv_func_helpers


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
    conf = lv_func_helpers.ConfOverrides()
    yield conf
    conf.undo()


def test_direct_io_probe(ramfs, tmp_path):
    assert libvirt_driver._supports_direct_io(ramfs) is False
    assert libvirt_driver._supports_direct_io(str(tmp_path)) is True
    # The probe leaves nothing behind.
    assert [p.name for p in tmp_path.iterdir()] == ['ramfs']


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

"""Fixtures of the libvirt driver's functional tests.

Everything is real: a fresh SQLite database migrated by ``db_sync``
(``tests.fixtures.Database``), the local image store with images made by
qemu-img, the image cache, qemu-img/mkfs/mkswap, and libvirt's test driver
(``test:///default``, in process). Each test has its own ``state_path``
(and so its own instances_path, image store and locks).
"""

import pytest

import nova.conf
from nova import image
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import host as libvirt_host
from nova.virt.libvirt.imagebackend import manager as disk_manager

import lv_func_helpers

CONF = nova.conf.CONF


@pytest.fixture
def image_api(conf):
    return image.API()


@pytest.fixture
def images(context, image_api, tmp_path):
    """{'raw': metadata, 'qcow2': metadata} of two imported images."""
    return {fmt: image_api.import_file(
        context, lv_func_helpers.make_image_file(str(tmp_path), fmt), fmt,
        name=fmt) for fmt in ('raw', 'qcow2')}


@pytest.fixture
def host(conf):
    """A connection to libvirt's in-process test driver.

    The test driver keeps its state while any connection is open, so each
    test closes its own at the end.
    """
    conf.config(group='libvirt', connection_uri='test:///default')
    h = libvirt_host.Host()
    yield h
    h.close()


@pytest.fixture
def driver(host):
    return libvirt_driver.LibvirtDriver(host=host,
                                        disks=disk_manager.DiskManager())

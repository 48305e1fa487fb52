"""Fixtures of the libvirt driver's functional tests.

Everything is real: a fresh SQLite database migrated by ``db_sync``
(``tests.fixtures.Database``), the local image store with images made by
qemu-img, the image cache, qemu-img/mkfs/mkswap, and libvirt's test driver
(``test:///default``, in process). Each test has its own ``state_path``
(and so its own instances_path, image store and locks).
"""

import os

import pytest

import nova.conf
from nova import image
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import host as libvirt_host
from nova.virt.libvirt.imagebackend import manager as disk_manager
from tests.functional.virt.libvirt import helpers

CONF = nova.conf.CONF
URI_ENV = 'NOVA_TEST_LIBVIRT_URI'


@pytest.fixture
def image_api(conf):
    return image.API()


@pytest.fixture
def images(context, image_api, tmp_path):
    """{'raw': metadata, 'qcow2': metadata} of two imported images."""
    return {fmt: image_api.import_file(
        context, helpers.make_image_file(str(tmp_path), fmt), fmt,
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


@pytest.fixture
def kvm_driver(conf):
    """This project's driver on libvirtd with QEMU/KVM
    (``NOVA_TEST_LIBVIRT_URI``): (driver, [(context, instance) to
    destroy afterwards]). Skips (outside CI) without libvirtd."""
    uri = os.environ.get(URI_ENV)
    if not uri:
        pytest.skip('%s not configured: run tools/services/libvirtd.sh '
                    'start and export what it prints' % URI_ENV)
    conf.config(group='libvirt', connection_uri=uri, virt_type='kvm')
    host = libvirt_host.Host()
    driver = libvirt_driver.LibvirtDriver(host=host,
                                          disks=disk_manager.DiskManager())
    spawned = []
    yield driver, spawned
    for context, instance in spawned:
        driver.destroy(context, instance)
    host.close()

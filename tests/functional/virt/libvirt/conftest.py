"""Fixtures of the libvirt driver's functional tests, on top of those of
tests/functional/virt (``conf``, ``image_api``, ``images``, ``host``).

Everything is real: a fresh SQLite database migrated by ``db_sync``
(``tests.fixtures.Database``), the local image store with images made by
qemu-img, the image cache, qemu-img/mkfs/mkswap, and libvirt's test driver
(``test:///default``, in process). Each test has its own ``state_path``
(and so its own instances_path, image store and locks). ``driver`` here
is the driver with a DiskManager of its own; ``kvm_driver`` the driver on
libvirtd with QEMU/KVM.
"""

import os

import pytest

import nova.conf
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import host as libvirt_host
from nova.virt.libvirt.imagebackend import manager as disk_manager

CONF = nova.conf.CONF
URI_ENV = 'NOVA_TEST_LIBVIRT_URI'


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

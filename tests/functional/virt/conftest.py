"""Fixtures of the tests of nova/virt and below: a real database, the
local image store, the image cache, qemu-img/mkfs and libvirt's test
driver, under a private state_path per test (``conf``); and, for the
hostile-neighbour tests of staging, a directory outside every service
directory and a victim file in it."""

import os

import pytest

import nova.conf
from nova import image
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import host as libvirt_host
from nova.virt.libvirt.imagebackend import cache as image_cache
from nova.virt.libvirt.imagebackend import manager as disk_manager
from tests import fixtures
from tests.functional.virt.libvirt import helpers as libvirt_helpers
from tests.functional.virt import racer

CONF = nova.conf.CONF


@pytest.fixture
def conf(db, tmp_path):
    """CONF overrides on the test's database, with the service's
    directories under ``tmp_path/state``."""
    overrides = fixtures.ConfOverrides()
    # Nothing made: the hostile-neighbour tests plant links and modes at
    # these paths before the service makes them.
    overrides.private_paths(tmp_path / 'state', make=False)
    yield overrides
    overrides.undo()


@pytest.fixture
def image_api(conf):
    return image.API()


@pytest.fixture
def images(context, image_api, src_dir):
    """{'raw': metadata, 'qcow2': metadata} of two imported images."""
    return {fmt: image_api.import_file(
        context, libvirt_helpers.make_image_file(src_dir, fmt), fmt,
        name=fmt) for fmt in ('raw', 'qcow2')}


@pytest.fixture
def cache(conf, image_api):
    return image_cache.ImageCache(image_api=image_api)


@pytest.fixture
def host(conf):
    conf.config(group='libvirt', connection_uri='test:///default')
    h = libvirt_host.Host()
    yield h
    h.close()


@pytest.fixture
def driver(host, cache):
    return libvirt_driver.LibvirtDriver(
        host=host, disks=disk_manager.DiskManager(cache=cache))


@pytest.fixture
def outside(tmp_path):
    """A directory outside every service directory: the victims' home."""
    path = tmp_path / 'outside'
    path.mkdir()
    return str(path)


@pytest.fixture
def victim(outside):
    """A host file a neighbour would like the service to write or read."""
    return racer.Victim(os.path.join(outside, 'host-file'))

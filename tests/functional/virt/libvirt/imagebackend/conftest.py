"""Fixtures of the imagebackend functional tests: a private instances_path,
real test images (raw and qcow2) in a real local image store, and an image
cache fetching from it through the real verified fetch.

For the legacy disks (legacy.py): disks made by upstream Nova 34.0.0's own
code in its own venv and process (see nova34_disks.py), from
``nova34_image_files``. Tests that need upstream skip outside CI when
NOVA_TEST_UPSTREAM_PYTHON is not set (``tools/with-services.sh`` sets it);
in CI a skip fails.
"""

import os
import shutil
import subprocess

import pytest

import nova.conf
from nova import image
from nova.image import local
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import host as libvirt_host
from nova.virt.libvirt.imagebackend import cache as image_cache
from tests import fixtures
from tests.functional.virt.libvirt import helpers as libvirt_helpers
from tests.functional.virt.libvirt.imagebackend import helpers
from tests.functional.virt.libvirt.imagebackend import nova34_disks

CONF = nova.conf.CONF
HERE = os.path.dirname(os.path.abspath(__file__))
MiB = helpers.MiB
IMAGE_SIZE = helpers.IMAGE_SIZE


def pytest_collection_modifyitems(items):
    for tool in ('qemu-img', 'mkfs.ext4', 'mkswap', 'blkid'):
        if shutil.which(tool) is None:
            skip = pytest.mark.skip(reason='%s is not installed' % tool)
            for item in items:
                if HERE in str(item.fspath):
                    item.add_marker(skip)


@pytest.fixture(scope='session')
def image_files(tmp_path_factory):
    """{'raw': path, 'qcow2': path}: the same disk in both formats."""
    d = tmp_path_factory.mktemp('images')
    raw = str(d / 'img.raw')
    helpers.make_image(raw, IMAGE_SIZE, [
        (0, 3 * MiB), (20 * MiB, MiB), (IMAGE_SIZE - 64 * 1024, 64 * 1024)])
    qcow2 = str(d / 'img.qcow2')
    subprocess.run(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2',
                    raw, qcow2], check=True)
    return {'raw': raw, 'qcow2': qcow2}


@pytest.fixture
def conf(tmp_path):
    """CONF overrides with state_path, instances_path and lock_path in
    tmp_path (no database: a test that needs one asks for ``context``)."""
    overrides = fixtures.ConfOverrides()
    overrides.private_paths(tmp_path)
    yield overrides
    overrides.undo()


@pytest.fixture(scope='session')
def image_store(tmp_path_factory, image_files):
    """A local image store holding both test images: (root, ids by format).
    """
    root = str(tmp_path_factory.mktemp('store'))
    store = local.LocalImageService(root=root)
    ids = {fmt: store.import_file(None, path, fmt)['id']
           for fmt, path in image_files.items()}
    return root, ids


@pytest.fixture
def image_service(tmp_path, image_store):
    root, ids = image_store
    service = helpers.CountingImageService(
        root, str(tmp_path / 'downloads'))
    service.ids = dict(ids)
    return service


@pytest.fixture
def cache(conf, image_service):
    return image_cache.ImageCache(image_api=image.API(service=image_service))


@pytest.fixture
def base_dir(conf):
    return os.path.join(CONF.instances_path, '_base')


@pytest.fixture
def lvm(conf, lvm_vg):
    """The session's volume group (see tests/functional/lvm_harness.py),
    with ``conf`` set up first."""
    return lvm_vg


@pytest.fixture(scope='session')
def nova34_image_files(tmp_path_factory):
    """{'raw': path, 'qcow2': path}: the same 64 MiB disk in both, the
    images upstream Nova 34.0.0 makes the legacy disks from."""
    d = str(tmp_path_factory.mktemp('legacy-images'))
    return {fmt: libvirt_helpers.make_image_file(d, fmt)
            for fmt in ('raw', 'qcow2')}


@pytest.fixture
def upstream():
    """Skip (outside CI) without the upstream Nova 34.0.0 venv."""
    if not nova34_disks.upstream_python():
        pytest.skip('%s is not set: run under tools/with-services.sh' %
                    nova34_disks.UPSTREAM_PYTHON_ENV)


@pytest.fixture
def driver(conf):
    """This project's driver on libvirt's in-process test driver."""
    conf.config(group='libvirt', connection_uri='test:///default')
    host = libvirt_host.Host()
    yield libvirt_driver.LibvirtDriver(host=host)
    host.close()

"""Fixtures of the imagebackend functional tests: a private instances_path,
real test images (raw and qcow2) in a real local image store, and an image
cache fetching from it through the real verified fetch."""

import os
import shutil
import subprocess

from oslo_config import fixture as config_fixture
import pytest

import nova.conf
from nova import image
from nova.image import local
from nova.virt.libvirt.imagebackend import cache as image_cache
from tests.functional import lvm_harness

import ib_func_helpers

CONF = nova.conf.CONF
MiB = ib_func_helpers.MiB
IMAGE_SIZE = ib_func_helpers.IMAGE_SIZE


def pytest_collection_modifyitems(items):
    for tool in ('qemu-img', 'mkfs.ext4', 'mkswap', 'blkid'):
        if shutil.which(tool) is None:
            skip = pytest.mark.skip(reason='%s is not installed' % tool)
            for item in items:
                if 'functional/imagebackend' in str(item.fspath):
                    item.add_marker(skip)


@pytest.fixture(scope='session')
def image_files(tmp_path_factory):
    """{'raw': path, 'qcow2': path}: the same disk in both formats."""
    d = tmp_path_factory.mktemp('images')
    raw = str(d / 'img.raw')
    ib_func_helpers.make_image(raw, IMAGE_SIZE, [
        (0, 3 * MiB), (20 * MiB, MiB), (IMAGE_SIZE - 64 * 1024, 64 * 1024)])
    qcow2 = str(d / 'img.qcow2')
    subprocess.run(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2',
                    raw, qcow2], check=True)
    return {'raw': raw, 'qcow2': qcow2}


@pytest.fixture
def conf(tmp_path):
    """CONF with state_path, instances_path and lock_path in tmp_path."""
    fix = config_fixture.Config(CONF)
    fix.setUp()
    instances = tmp_path / 'instances'
    instances.mkdir()
    fix.config(state_path=str(tmp_path))
    fix.config(instances_path=str(instances))
    fix.config(lock_path=str(instances / 'locks'), group='oslo_concurrency')
    yield fix
    fix.cleanUp()


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
    service = ib_func_helpers.CountingImageService(
        root, str(tmp_path / 'downloads'))
    service.ids = dict(ids)
    return service


@pytest.fixture
def cache(conf, image_service):
    return image_cache.ImageCache(image_api=image.API(service=image_service))


@pytest.fixture
def base_dir(conf):
    return os.path.join(CONF.instances_path, '_base')


lvm_vg = lvm_harness.lvm_vg


@pytest.fixture
def lvm(conf, lvm_vg):  # noqa: F811
    """The test volume group (see tests/functional/lvm_harness.py)."""
    return lvm_vg

"""Fixtures of the imagebackend functional tests: a private instances_path,
real test images (raw and qcow2) in a real local image store, and an image
cache fetching from it through the real verified fetch."""

import os
import shutil
import subprocess
import types

from oslo_config import fixture as config_fixture
import pytest

import nova.conf
from nova import image
from nova.image import local
from nova.virt.libvirt.imagebackend import cache as image_cache

import ib_func_helpers
import lvm_harness

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


@pytest.fixture
def lvm(conf, monkeypatch):
    """The harness's volume group (tools/services/lvm.sh), with LVM and
    ``storage.lvm.device_path`` pointed at it (see lvm_harness).

    Yields vg (its name) and aliases (lvm_harness.LoopAliases). Afterwards
    every volume the test made and left is removed and every loop device
    over the PV detached.
    """
    if not lvm_harness.available():
        pytest.skip('no test volume group: run under tools/with-services.sh '
                    'with the lvm service')
    from nova.virt.libvirt.storage import lvm as storage_lvm
    aliases = lvm_harness.install(monkeypatch.setenv)
    vg = os.environ[lvm_harness.ENV_VG]
    before = set(storage_lvm.volumes(vg))
    try:
        yield types.SimpleNamespace(vg=vg, aliases=aliases)
    finally:
        lvm_harness.uninstall()
        aliases.detach_all()
        for lv in set(storage_lvm.volumes(vg)) - before:
            storage_lvm.remove_volume(vg, lv)

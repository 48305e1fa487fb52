"""Fixtures of the legacy-disk tests.

Everything is real: a fresh SQLite database migrated by ``db_sync``, disks
made by upstream Nova 34.0.0's own code in its own venv and process (see
legacy_helpers.py), and qemu-img. Tests that need upstream skip outside CI
when NOVA_TEST_UPSTREAM_PYTHON is not set (``tools/with-services.sh`` sets
it); in CI a skip fails.
"""

import pytest

from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import host as libvirt_host
from tests.functional.legacy import legacy_helpers


@pytest.fixture(scope='session')
def image_files(tmp_path_factory):
    """{'raw': path, 'qcow2': path}: the same 64 MiB disk in both."""
    d = str(tmp_path_factory.mktemp('legacy-images'))
    return {fmt: legacy_helpers.make_image_file(d, fmt)
            for fmt in ('raw', 'qcow2')}


@pytest.fixture
def upstream():
    """Skip (outside CI) without the upstream Nova 34.0.0 venv."""
    if not legacy_helpers.upstream_python():
        pytest.skip('%s is not set: run under tools/with-services.sh' %
                    legacy_helpers.UPSTREAM_PYTHON_ENV)


@pytest.fixture
def driver(conf):
    """This project's driver on libvirt's in-process test driver."""
    conf.config(group='libvirt', connection_uri='test:///default')
    host = libvirt_host.Host()
    yield libvirt_driver.LibvirtDriver(host=host)
    host.close()

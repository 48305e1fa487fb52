"""Fixtures of the imagebackend unit tests: a private instances_path and an
image cache whose fetch writes bytes from a dict (no image service, no
qemu-img)."""

import pytest

import nova.conf
from tests import fixtures
from tests.unit.virt.libvirt.imagebackend import helpers

CONF = nova.conf.CONF


@pytest.fixture
def conf(tmp_path):
    """CONF overrides with state_path, instances_path and lock_path under
    ``tmp_path``."""
    overrides = fixtures.ConfOverrides()
    overrides.private_paths(tmp_path)
    yield overrides
    overrides.undo()


@pytest.fixture
def images():
    """{image_id: (format, data, virtual_size)} for DictFetchCache."""
    return {
        'raw-image': ('raw', b'\x01' * 4096 + b'\0' * 4096, 1 << 20),
        'qcow2-image': ('qcow2', helpers.qcow2_header(2 << 20),
                        2 << 20),
    }


@pytest.fixture
def cache(conf, images):
    return helpers.DictFetchCache(images)

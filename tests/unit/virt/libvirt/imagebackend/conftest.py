"""Fixtures of the imagebackend unit tests: a private instances_path and an
image cache whose fetch writes bytes from a dict (no image service, no
qemu-img)."""

from oslo_config import fixture as config_fixture
import pytest

import nova.conf

import ib_unit_helpers

CONF = nova.conf.CONF


@pytest.fixture
def conf(tmp_path):
    """CONF with instances_path and lock_path under ``tmp_path``."""
    fix = config_fixture.Config(CONF)
    fix.setUp()
    instances = tmp_path / 'instances'
    instances.mkdir()
    fix.config(instances_path=str(instances))
    fix.config(lock_path=str(instances / 'locks'), group='oslo_concurrency')
    yield fix
    fix.cleanUp()


@pytest.fixture
def images():
    """{image_id: (format, data, virtual_size)} for DictFetchCache."""
    return {
        'raw-image': ('raw', b'\x01' * 4096 + b'\0' * 4096, 1 << 20),
        'qcow2-image': ('qcow2', ib_unit_helpers.qcow2_header(2 << 20),
                        2 << 20),
    }


@pytest.fixture
def cache(conf, images):
    return ib_unit_helpers.DictFetchCache(images)

"""Pure pieces of the driver and of the libvirt connection wrapper: no
connection is opened."""

import pytest

import nova.conf
from nova import objects
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import power_state
from nova.virt.libvirt import host as libvirt_host

from tests import fixtures

CONF = nova.conf.CONF


@pytest.fixture
def conf():
    overrides = fixtures.ConfOverrides()
    yield overrides
    overrides.undo()


@pytest.mark.parametrize('index,dev', [
    (0, 'vda'), (1, 'vdb'), (3, 'vdd'), (25, 'vdz'), (26, 'vdaa'),
    (27, 'vdab'), (701, 'vdzz'), (702, 'vdaaa')])
def test_target_dev(index, dev):
    assert libvirt_driver.target_dev(index) == dev


def test_domain_name_is_the_uuid():
    instance = objects.Instance(uuid='5b0b2a38-08c2-4c2a-bd3c-1c1a3e3bbd0e')
    assert libvirt_host.domain_name(instance) == \
        'instance-5b0b2a38-08c2-4c2a-bd3c-1c1a3e3bbd0e'


def test_domain_type_follows_the_uri(conf):
    conf.config(group='libvirt', connection_uri='test:///default',
                virt_type='kvm')
    assert libvirt_host.Host().domain_type == 'test'
    assert libvirt_host.Host().is_test_driver
    conf.config(group='libvirt', connection_uri='qemu:///system',
                virt_type='qemu')
    assert libvirt_host.Host().domain_type == 'qemu'
    assert not libvirt_host.Host().is_test_driver
    assert libvirt_host.Host('test:///default').domain_type == 'test'


def test_power_states_are_upstreams():
    # nova.compute.power_state values, which the database stores.
    assert (power_state.NOSTATE, power_state.RUNNING,
            power_state.PAUSED, power_state.SHUTDOWN,
            power_state.CRASHED, power_state.SUSPENDED) == (
        0, 1, 3, 4, 6, 7)

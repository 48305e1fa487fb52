"""Rescue, a config drive and a snapshot on libvirtd with QEMU/KVM: QEMU
opens the rescue disk first and each of the guest's own disks as recorded,
the config drive as a cdrom, and a running guest is snapshotted."""

from xml.etree import ElementTree as etree

import pytest

from nova.virt.libvirt import power_state
from tests.functional.virt.libvirt import helpers


def boot_order(dom):
    """{target: boot order} of the live domain."""
    orders = {}
    for disk in etree.fromstring(dom.XMLDesc(0)).findall('./devices/disk'):
        boot = disk.find('boot')
        orders[disk.find('target').get('dev')] = (
            boot.get('order') if boot is not None else None)
    return orders


@pytest.mark.parametrize('backend', helpers.FILE_BACKENDS)
def test_kvm_rescue_config_drive_and_snapshot(kvm_driver,
                                              conf, context, images,
                                              backend):
    driver, spawned = kvm_driver
    helpers.configure(conf, backend, True)
    image_meta = images['raw']
    instance, bdms = helpers.create_instance(context, image_meta,
                                             root_gb=0, ephemeral_gb=0,
                                             ephemerals=0, swap_mb=64)
    driver.spawn(context, instance, image_meta, bdms, config_drive=True)
    spawned.append((context, instance))
    dom = driver.host.lookup_domain(instance)
    assert dom.isActive()
    records = helpers.records(context, instance)
    assert helpers.live_disks(dom)['hdd'] == ('raw', [])
    assert dom.blockInfo('hdd')[0] == records['disk.config'].size

    meta = driver.snapshot(context, instance, 'kvm-snap')
    assert meta['disk_format'] == records['disk'].format
    assert driver.get_power_state(instance) == power_state.RUNNING

    driver.rescue(context, instance, rescue_image_id=images['qcow2']['id'])
    dom = driver.host.lookup_domain(instance)
    assert dom.isActive()
    records = helpers.records(context, instance)
    live = helpers.live_disks(dom)
    assert boot_order(dom)['vda'] == '1'
    for target, name in (('vda', 'disk.rescue'), ('vdb', 'disk'),
                         ('vdc', 'disk.swap')):
        record = records[name]
        assert dom.blockInfo(target)[0] == record.size, name
        assert live[target] == (record.format, [record.backing_format]
                                if record.backing_format else []), name
    assert live['hdd'] == ('raw', [])

    driver.unrescue(context, instance)
    dom = driver.host.lookup_domain(instance)
    assert dom.isActive()
    assert sorted(helpers.live_disks(dom)) == ['hdd', 'vda', 'vdb']
    assert 'disk.rescue' not in helpers.records(context, instance)

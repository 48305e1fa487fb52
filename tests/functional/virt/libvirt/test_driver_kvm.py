"""End to end on libvirtd with QEMU/KVM: the guest opens each disk as
recorded.

Needs ``NOVA_TEST_LIBVIRT_URI`` (``tools/services/libvirtd.sh start``
prints it; ``tools/with-services.sh`` exports it). For every landed file
backend and image layout, a KVM domain boots with a root, two ephemeral and
a swap disk; libvirt then reports, for each target, the capacity QEMU sees
(``virDomainGetBlockInfo``) and the driver type and backing chain of the
live XML, which must equal the record's size, format and backing format.
"""

from xml.etree import ElementTree as etree

import pytest

import nova.conf
from nova.virt.libvirt.imagebackend import backends as disk_backends
from nova.virt.libvirt.imagebackend import specs
from tests.functional.virt.libvirt import helpers

CONF = nova.conf.CONF


@pytest.mark.parametrize('case', helpers.CASE_KEYS, ids=helpers.case_id)
def test_kvm_guest_opens_each_disk_as_recorded(kvm_driver, conf, context,
                                               images, case):
    driver, spawned = kvm_driver
    backend, image_format, force_raw = case
    helpers.configure(conf, backend, force_raw)
    image_meta = images[image_format]
    instance, bdms = helpers.create_instance(context, image_meta,
                                             ephemerals=2)
    driver.spawn(context, instance, image_meta, bdms)
    spawned.append((context, instance))

    dom = driver.host.lookup_domain(instance)
    assert dom.isActive()
    assert dom.XMLDesc(0).startswith("<domain type='kvm'")
    records = helpers.records(context, instance)
    assert records['disk'].format == helpers.CASES[case][0]
    live = helpers.live_disks(dom)
    for target, name in zip(['vda', 'vdb', 'vdc', 'vdd'],
                            helpers.DISK_NAMES):
        record = records[name]
        capacity, _allocation, _physical = dom.blockInfo(target)
        assert capacity == record.size, name
        driver_type, chain = live[target]
        assert driver_type == record.format, name
        assert chain == ([record.backing_format]
                         if record.backing_format else []), name


def test_kvm_guest_with_disks_of_every_backend(kvm_driver, conf, context,
                                               images):
    """Records are per disk: one guest can hold disks that different node
    settings planned (here the root planned under one backend, the rest
    under another), and each opens as its own record says."""
    driver, spawned = kvm_driver
    backends = helpers.FILE_BACKENDS
    image_meta = images['qcow2']
    instance, bdms = helpers.create_instance(context, image_meta,
                                             ephemerals=2)
    # The root disk is planned and made under the first backend ...
    helpers.configure(conf, backends[0], force_raw=False)
    driver.disks.create_local_disks(context, instance, image_meta,
                                    [bdms[0]])
    # ... the others when the instance spawns under the last one.
    helpers.configure(conf, backends[-1], force_raw=True)
    driver.spawn(context, instance, image_meta)
    spawned.append((context, instance))

    records = helpers.records(context, instance)
    assert {r.backend for r in records.values()} == set(backends)
    dom = driver.host.lookup_domain(instance)
    live = helpers.live_disks(dom)
    for target, name in zip(['vda', 'vdb', 'vdc', 'vdd'],
                            helpers.DISK_NAMES):
        record = records[name]
        assert dom.blockInfo(target)[0] == record.size, name
        assert live[target] == (record.format, [record.backing_format]
                                if record.backing_format else []), name


@pytest.mark.parametrize('backend', sorted(disk_backends.BACKENDS))
def test_kvm_guest_opens_every_backend_as_recorded(kvm_driver, conf,
                                                   context, images, backend,
                                                   request):
    """The backend contract under KVM: a guest with a root, an ephemeral
    and a swap disk of each registered backend starts, and QEMU opens each
    disk with the recorded format and size (an Lvm disk as a block
    device)."""
    driver, spawned = kvm_driver
    spec = specs.SPECS[backend]
    conf.config(group='libvirt', images_type=backend)
    conf.config(force_raw_images=True, use_cow_images=False)
    if spec.container == ('volume_group', 'images_volume_group'):
        conf.config(group='libvirt',
                    images_volume_group=request.getfixturevalue(
                        'lvm_vg').vg)
    image_meta = images['raw']
    instance, bdms = helpers.create_instance(context, image_meta,
                                             ephemerals=1)
    driver.spawn(context, instance, image_meta, bdms)
    spawned.append((context, instance))

    dom = driver.host.lookup_domain(instance)
    assert dom.isActive()
    records = helpers.records(context, instance)
    assert {r.backend for r in records.values()} == {backend}
    live = helpers.live_disks(dom)
    element = etree.fromstring(dom.XMLDesc(0))
    for target, name in zip(['vda', 'vdb', 'vdc'],
                            ['disk', 'disk.local', 'disk.swap']):
        record = records[name]
        assert dom.blockInfo(target)[0] == record.size, name
        assert live[target][0] == record.format, name
        [disk] = [d for d in element.findall('./devices/disk')
                  if d.find('target').get('dev') == target]
        assert disk.get('type') == spec.source_type, name

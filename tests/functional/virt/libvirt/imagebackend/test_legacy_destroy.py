"""Destroy of a Nova 34 instance whose mappings have no records: each disk
is recorded and removed as recorded; a disk whose layout is refused is
still removed where its name makes it the instance's; what cannot be looked
at is reported, and the instance stays."""

import os

import pytest

from nova import exception
from tests.functional.virt.libvirt import helpers as libvirt_helpers
from tests.functional.virt.libvirt.imagebackend import nova34_disks

pytestmark = pytest.mark.usefixtures('upstream')


def test_destroy_records_then_removes_every_disk(conf, context,
                                                 nova34_image_files, driver):
    nova34_disks.configure(conf, 'qcow2-forceraw')
    instance, made = nova34_disks.make_upstream_instance(
        context, 'qcow2-forceraw', nova34_image_files, 'raw',
        ephemerals=({'size': 1},), swap_mb=64)
    # The swap disk's base is gone: its layout cannot be proven, but the
    # file is in the instance's own directory.
    os.unlink(os.path.join(nova34_disks.CONF.instances_path, '_base',
                           'swap_64'))
    driver.destroy(context, instance)
    inst_dir = os.path.dirname(made['disks']['disk'])
    assert not os.path.exists(inst_dir)
    # The disks that could be proven were recorded on the way.
    recorded = libvirt_helpers.records(context, instance)
    assert sorted(recorded) == ['disk', 'disk.eph0']


def test_destroy_cli_removes_an_unrecorded_instance(conf, context,
                                                    nova34_image_files,
                                                    tmp_path):
    nova34_disks.configure(conf, 'flat-forceraw')
    instance, made = nova34_disks.make_upstream_instance(
        context, 'flat-forceraw', nova34_image_files, 'raw',
        ephemerals=({'size': 1},), swap_mb=64)
    # disk.info is corrupt: no Flat disk's format can be proven.
    inst_dir = os.path.dirname(made['disks']['disk'])
    with open(os.path.join(inst_dir, 'disk.info'), 'w') as f:
        f.write('garbage')
    result = nova34_disks.manage(tmp_path, 'destroy', instance.uuid,
                                 prog='nova-libvirt')
    assert result.returncode == 0, result.stderr
    assert not os.path.exists(inst_dir)
    assert libvirt_helpers.records(context, instance) == {}


def test_destroy_reports_what_it_cannot_look_at(conf, context,
                                                nova34_image_files, driver):
    nova34_disks.configure(conf, 'flat-forceraw')
    instance, made = nova34_disks.make_upstream_instance(
        context, 'flat-forceraw', nova34_image_files, 'raw', ephemerals=(),
        swap_mb=0)
    # The node now says lvm, without a volume group: where the disk would
    # be cannot even be looked at.
    conf.config(group='libvirt', images_type='lvm')
    with pytest.raises(exception.LegacyDisksNotRemoved,
                       match='images_type is lvm') as e:
        driver.destroy(context, instance)
    assert e.value.kwargs['instance_uuid'] == instance.uuid
    # Nothing of the instance's was guessed at or removed.
    assert os.path.exists(made['disks']['disk'])

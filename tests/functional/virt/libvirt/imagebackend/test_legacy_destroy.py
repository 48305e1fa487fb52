"""Destroy of a Nova 34 instance whose mappings have no records: each disk
is recorded and removed as recorded; a disk whose layout is refused is
still removed where its name makes it the instance's; what cannot be looked
at is reported, and the instance stays."""

import os

from oslo_utils import units
import pytest

from nova import exception
from nova.virt.libvirt.imagebackend import manager as disk_manager
from nova.virt.libvirt.storage import lvm as storage_lvm
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
    # The node now says lvm, without a volume group: where its disk would
    # be cannot even be looked at, and is reported. The file in the
    # instance's own directory is certainly its disk: removed.
    conf.config(group='libvirt', images_type='lvm')
    with pytest.raises(exception.LegacyDisksNotRemoved,
                       match='images_type is lvm') as e:
        driver.destroy(context, instance)
    assert e.value.kwargs['instance_uuid'] == instance.uuid
    assert not os.path.exists(made['disks']['disk'])
    assert libvirt_helpers.records(context, instance) == {}


def test_destroy_after_images_type_changed_removes_the_old_disks(
        conf, context, nova34_image_files, driver, lvm):
    # Made as files; the node then moved to LVM. The files are still the
    # instance's disks (their names in its own directory), as upstream's
    # destroy removes its whole directory.
    nova34_disks.configure(conf, 'flat-forceraw')
    instance, made = nova34_disks.make_upstream_instance(
        context, 'flat-forceraw', nova34_image_files, 'raw',
        ephemerals=({'size': 1},), swap_mb=64)
    conf.config(group='libvirt', images_type='lvm',
                images_volume_group=lvm.vg)

    driver.destroy(context, instance)

    assert not os.path.exists(os.path.dirname(made['disks']['disk']))


def test_spawn_after_images_type_changed_plans_nothing_beside_them(
        conf, context, nova34_image_files, cache, lvm):
    # The guest's data is in the old files: new volumes planned from the
    # image would abandon it. The spawn is refused naming the disk, and
    # nothing is recorded or made.
    nova34_disks.configure(conf, 'flat-forceraw')
    instance, made = nova34_disks.make_upstream_instance(
        context, 'flat-forceraw', nova34_image_files, 'raw', ephemerals=(),
        swap_mb=0)
    conf.config(group='libvirt', images_type='lvm',
                images_volume_group=lvm.vg)
    volumes = storage_lvm.volumes(lvm.vg)
    bdms = nova34_disks.bdms_of(context, instance)
    image_meta = {'id': instance.image_ref, 'disk_format': 'raw',
                  'virtual_size': units.Gi, 'size': units.Gi}

    with pytest.raises(exception.DiskLayoutNotInferred,
                       match='flat') as e:
        disk_manager.DiskManager(cache=cache).create_local_disks(
            context, instance, image_meta, bdms)

    assert e.value.kwargs['instance_uuid'] == instance.uuid
    assert libvirt_helpers.records(context, instance) == {}
    assert storage_lvm.volumes(lvm.vg) == volumes
    assert os.path.exists(made['disks']['disk'])

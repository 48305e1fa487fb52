"""Instances and block device mappings through the objects and the SQL API,
on SQLite, PostgreSQL and MariaDB."""

import datetime

from oslo_utils import uuidutils
import pytest
import sqlalchemy as sa

from nova import context
from nova.db import api as db
from nova import exception
from nova import objects


def _record(disk_name='disk', **overrides):
    values = dict(backend='qcow2', format='qcow2', size=20 * 1024 ** 3,
                  disk_name=disk_name, backing_format='raw',
                  image_id='7d5e6b9c-2f4d-4a3b-9c1e-0a8b7c6d5e4f')
    values.update(overrides)
    return objects.LibvirtDiskMetadata(**values)


def _fields(record):
    return {name: getattr(record, name) for name in record.fields}


def _plan(bdm, record):
    """Stand in for the imagebackend DiskManager, the one product writer of
    driver_info: tests outside nova/objects need to change a record too."""
    setattr(bdm, 'driver_info', record.to_driver_info())


def _rows(database):
    """Every row of the tables a create writes (deleted ones too), read
    underneath the API: what a failed create must leave unchanged."""
    rows = {}
    with database.engine.connect() as conn:
        for table in ('instances', 'instance_extra', 'block_device_mapping'):
            rows[table] = [dict(row._mapping) for row in conn.execute(sa.text(
                'SELECT * FROM %s ORDER BY id' % table))]
    return rows


def _instance(ctx, **values):
    defaults = dict(uuid=uuidutils.generate_uuid(), host='compute1',
                    node='node1', root_gb=20, ephemeral_gb=1,
                    flavor=objects.Flavor.from_sizes(20, 1, 512))
    instance = objects.Instance(ctx, **dict(defaults, **values))
    instance.create()
    return instance


def _bdm(ctx, instance, **values):
    bdm = objects.BlockDeviceMapping(ctx, instance_uuid=instance.uuid,
                                     destination_type='local', **values)
    bdm.create()
    return bdm


def test_instance_lifecycle(ctx):
    launched = datetime.datetime(2026, 1, 2, 3, 4, 5,
                                 tzinfo=datetime.timezone.utc)
    instance = _instance(ctx, display_name='vm1', image_ref='img',
                         vm_state='building', power_state=0)
    assert instance.id and not instance.deleted and instance.created_at
    loaded = objects.Instance.get_by_uuid(ctx, instance.uuid)
    assert (loaded.display_name, loaded.flavor.swap, loaded.root_gb) == (
        'vm1', 512, 20)

    loaded.vm_state = 'active'
    loaded.launched_at = launched
    loaded.save()
    assert not loaded.obj_what_changed()
    again = objects.Instance.get_by_uuid(ctx, instance.uuid)
    assert again.vm_state == 'active' and again.launched_at == launched

    # The flavor is saved where upstream keeps it, instance_extra.flavor.
    again.flavor = objects.Flavor.from_sizes(20, 1, 1024)
    again.save()
    assert not again.obj_what_changed() and again.flavor.swap == 1024
    again = objects.Instance.get_by_uuid(ctx, instance.uuid)
    assert again.flavor.swap == 1024 and again.vm_state == 'active'

    again.destroy()
    assert again.deleted and again.deleted_at
    with pytest.raises(exception.InstanceNotFound):
        objects.Instance.get_by_uuid(ctx, instance.uuid)
    read_deleted = context.get_admin_context(read_deleted='yes')
    deleted = objects.Instance.get_by_uuid(read_deleted, instance.uuid)
    assert deleted.deleted and deleted.flavor.swap == 1024
    with pytest.raises(exception.InstanceNotFound):
        again.destroy()


def test_instance_create_is_strict(ctx, database):
    with pytest.raises(exception.InvalidUUID):
        objects.Instance(ctx, uuid='not-a-uuid').create()
    assert _rows(database) == {'instances': [], 'instance_extra': [],
                               'block_device_mapping': []}
    instance = _instance(ctx)
    before = _rows(database)
    with pytest.raises(exception.InstanceExists):
        objects.Instance(ctx, uuid=instance.uuid).create()
    assert _rows(database) == before
    with pytest.raises(exception.ObjectActionError):
        instance.create()
    assert _rows(database) == before


def test_instance_lists(ctx):
    here = [_instance(ctx) for _ in range(2)]
    there = _instance(ctx, host='compute2')
    _instance(ctx).destroy()
    assert [i.uuid for i in objects.InstanceList.get_all(ctx)] == [
        i.uuid for i in here + [there]]
    assert [i.uuid for i in
            objects.InstanceList.get_by_host(ctx, 'compute1')] == [
        i.uuid for i in here]
    only_deleted = context.get_admin_context(read_deleted='only')
    assert len(objects.InstanceList.get_all(only_deleted)) == 1


def test_bdm_driver_info_reads_back_equal(ctx):
    instance = _instance(ctx)
    record = _record()
    bdm = objects.BlockDeviceMapping(
        ctx, instance_uuid=instance.uuid, source_type='image',
        destination_type='local', boot_index=0, image_id=record.image_id,
        driver_info=record.to_driver_info())
    bdm.create()
    assert bdm.id and uuidutils.is_uuid_like(bdm.uuid)

    loaded = objects.BlockDeviceMappingList.get_by_instance_uuid(
        ctx, instance.uuid)[0]
    assert loaded.driver_info == record.to_driver_info()
    assert _fields(loaded.get_disk_metadata()) == _fields(record)

    # save() of one member, then of the list.
    resized = _record(size=40 * 1024 ** 3)
    _plan(loaded, resized)
    loaded.save()
    assert _fields(objects.BlockDeviceMapping.get_by_id(
        ctx, bdm.id).get_disk_metadata()) == _fields(resized)


def test_bdm_list_save(ctx):
    instance = _instance(ctx)
    root = _bdm(ctx, instance, source_type='image', boot_index=0)
    eph = _bdm(ctx, instance, source_type='blank', guest_format='ext4')
    swap = _bdm(ctx, instance, source_type='blank', guest_format='swap')
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        ctx, instance.uuid)
    assert [b.id for b in bdms] == [root.id, eph.id, swap.id]

    records = {
        root.id: _record(),
        swap.id: _record(backend='flat', format='raw', backing_format=None,
                         image_id=None, cache_name='swap_512',
                         disk_name='disk.swap', size=512 * 1024 ** 2),
    }
    for bdm in bdms:
        if bdm.id in records:
            _plan(bdm, records[bdm.id])
    bdms[2].device_name = '/dev/vdc'
    # Other column types through the same CASE: boolean, integer, NULL.
    bdms[2].delete_on_termination = True
    bdms[2].volume_size = 1
    bdms[0].boot_index = None
    bdms.save()
    assert not any(b.obj_what_changed() for b in bdms)
    assert bdms[0].updated_at and bdms[1].updated_at is None

    loaded = objects.BlockDeviceMappingList.get_by_instance_uuid(
        ctx, instance.uuid)
    assert _fields(loaded[0].get_disk_metadata()) == _fields(records[root.id])
    assert loaded[1].driver_info is None
    assert _fields(loaded[2].get_disk_metadata()) == _fields(records[swap.id])
    assert (loaded[2].device_name, loaded[2].delete_on_termination,
            loaded[2].volume_size) == ('/dev/vdc', True, 1)
    assert loaded[0].boot_index is None and loaded[1].boot_index is None
    assert not loaded[1].delete_on_termination
    assert loaded[0].updated_at == bdms[0].updated_at

    # Nothing changed: nothing written.
    loaded.save()


def test_bdm_list_save_is_all_or_nothing(ctx):
    instance = _instance(ctx)
    first = _bdm(ctx, instance, source_type='image', boot_index=0)
    second = _bdm(ctx, instance, source_type='blank')
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        ctx, instance.uuid)
    second.destroy()
    for bdm in bdms:
        _plan(bdm, _record())
    with pytest.raises(exception.BDMNotFound) as caught:
        bdms.save()
    assert str(bdms[1].id) in str(caught.value)
    assert objects.BlockDeviceMapping.get_by_id(
        ctx, first.id).driver_info is None
    # The failed save kept the members' changes for a retry.
    assert bdms[0].obj_what_changed() == {'driver_info'}


def test_bdm_create_needs_a_live_instance(ctx, database):
    with pytest.raises(exception.InstanceNotFound):
        objects.BlockDeviceMapping(
            ctx, instance_uuid=uuidutils.generate_uuid(),
            source_type='blank', destination_type='local').create()
    assert _rows(database)['block_device_mapping'] == []
    instance = _instance(ctx)
    instance.destroy()
    before = _rows(database)
    with pytest.raises(exception.InstanceNotFound):
        objects.BlockDeviceMapping(
            ctx, instance_uuid=instance.uuid, source_type='blank',
            destination_type='local').create()
    assert _rows(database) == before
    assert before['block_device_mapping'] == []


def test_bdm_uuid_is_unique(ctx, database):
    instance = _instance(ctx)
    bdm = _bdm(ctx, instance, source_type='blank')
    before = _rows(database)
    with pytest.raises(exception.BDMExists):
        _bdm(ctx, instance, source_type='blank', uuid=bdm.uuid)
    assert _rows(database) == before
    assert [row['id'] for row in before['block_device_mapping']] == [bdm.id]


def test_bdm_destroy_and_instance_destroy(ctx):
    instance = _instance(ctx)
    kept = _bdm(ctx, instance, source_type='image', boot_index=0)
    gone = _bdm(ctx, instance, source_type='blank')
    gone_id = gone.id
    gone.destroy()
    assert not gone.obj_attr_is_set('id')
    with pytest.raises(exception.BDMNotFound):
        db.block_device_mapping_destroy(ctx, gone_id)
    assert [b.id for b in objects.BlockDeviceMappingList.get_by_instance_uuid(
        ctx, instance.uuid)] == [kept.id]

    instance.destroy()
    assert not objects.BlockDeviceMappingList.get_by_instance_uuid(
        ctx, instance.uuid)
    read_deleted = context.get_admin_context(read_deleted='yes')
    assert len(objects.BlockDeviceMappingList.get_by_instance_uuid(
        read_deleted, instance.uuid)) == 2


def test_get_all_with_driver_info(ctx):
    one, two = _instance(ctx), _instance(ctx)
    recorded = _bdm(ctx, one, source_type='image', boot_index=0,
                    driver_info=_record().to_driver_info())
    _bdm(ctx, one, source_type='blank')
    _bdm(ctx, two, source_type='image', boot_index=0,
         driver_info=_record().to_driver_info())
    _bdm(ctx, two, source_type='blank',
         driver_info=_record(disk_name='disk.local').to_driver_info())
    two.destroy()
    found = objects.BlockDeviceMappingList.get_all_with_driver_info(ctx)
    assert [b.id for b in found] == [recorded.id]
    # Deleted rows never count as in use, whatever the context says.
    read_deleted = context.get_admin_context(read_deleted='yes')
    assert len(objects.BlockDeviceMappingList.get_all_with_driver_info(
        read_deleted)) == 1


def test_get_by_instance_uuids(ctx):
    one, two = _instance(ctx), _instance(ctx)
    ids = [_bdm(ctx, i, source_type='blank').id for i in (one, two, one)]
    found = objects.BlockDeviceMappingList.get_by_instance_uuids(
        ctx, [one.uuid, two.uuid])
    assert [b.id for b in found] == ids
    assert not objects.BlockDeviceMappingList.get_by_instance_uuids(ctx, [])


def test_update_refuses_unknown_and_immutable_columns(ctx):
    instance = _instance(ctx)
    bdm = _bdm(ctx, instance, source_type='blank')
    for values in ({'nonsense': 1}, {'deleted': 1}, {'id': 99}):
        with pytest.raises(exception.InvalidInput):
            db.block_device_mapping_update_many(ctx, {bdm.id: values})
    with pytest.raises(exception.InvalidInput):
        db.instance_update(ctx, instance.uuid, {'uuid': 'x'})


def test_volume_lookups_as_upstream(ctx):
    instance = _instance(ctx)
    other = _instance(ctx)
    volume_id = uuidutils.generate_uuid()
    bdm = _bdm(ctx, instance, source_type='volume', volume_id=volume_id,
               device_name='/dev/vdb')
    assert objects.BlockDeviceMapping.get_by_volume(ctx, volume_id).id == (
        bdm.id)
    assert objects.BlockDeviceMapping.get_by_volume_and_instance(
        ctx, volume_id, instance.uuid).id == bdm.id
    assert objects.BlockDeviceMapping.get_by_volume_id(
        ctx, volume_id, instance_uuid=instance.uuid).id == bdm.id
    with pytest.raises(exception.InvalidVolume):
        objects.BlockDeviceMapping.get_by_volume_id(
            ctx, volume_id, instance_uuid=other.uuid)
    with pytest.raises(exception.VolumeBDMNotFound):
        objects.BlockDeviceMapping.get_by_volume_and_instance(
            ctx, volume_id, other.uuid)
    # Attached twice (multiattach): the single lookup refuses.
    _bdm(ctx, other, source_type='volume', volume_id=volume_id)
    with pytest.raises(exception.VolumeBDMIsMultiAttach):
        objects.BlockDeviceMapping.get_by_volume(ctx, volume_id)
    assert len(objects.BlockDeviceMappingList.get_by_volume(
        ctx, volume_id)) == 2
    with pytest.raises(exception.VolumeBDMNotFound):
        objects.BlockDeviceMappingList.get_by_volume(
            ctx, uuidutils.generate_uuid())


def test_update_or_create_as_upstream(ctx):
    instance = _instance(ctx)
    first = objects.BlockDeviceMapping(
        ctx, instance_uuid=instance.uuid, source_type='blank',
        destination_type='local', guest_format='ext4', volume_size=1,
        device_name='/dev/vdb')
    first.update_or_create()
    # The same device name updates that mapping ...
    again = objects.BlockDeviceMapping(
        ctx, instance_uuid=instance.uuid, source_type='blank',
        destination_type='local', guest_format='ext4', volume_size=2,
        device_name='/dev/vdb')
    again.update_or_create()
    assert again.id == first.id and again.volume_size == 2
    # ... and a new swap mapping replaces the instance's other swap.
    for device in ('/dev/vdc', '/dev/vdd'):
        objects.BlockDeviceMapping(
            ctx, instance_uuid=instance.uuid, source_type='blank',
            destination_type='local', guest_format='swap',
            device_name=device).update_or_create()
    live = objects.BlockDeviceMappingList.get_by_instance_uuid(
        ctx, instance.uuid)
    assert sorted(b.device_name for b in live) == ['/dev/vdb', '/dev/vdd']


def test_driver_info_missing_from_a_sender_is_loaded(ctx):
    instance = _instance(ctx)
    bdm = _bdm(ctx, instance, source_type='blank', guest_format='ext4')
    record = objects.LibvirtDiskMetadata(
        backend='flat', format='raw', size=1024 ** 3,
        disk_name='disk.local', cache_name='ephemeral_1_ext4')
    _plan(bdm, record)
    bdm.save()
    # As a Nova 34 service would send it: 1.21, no driver_info.
    primitive = bdm.obj_to_primitive(target_version='1.21')
    received = objects.BlockDeviceMapping.obj_from_primitive(primitive, ctx)
    assert 'driver_info' not in received
    assert received.get_disk_metadata().disk_name == 'disk.local'
    assert not received.obj_what_changed()

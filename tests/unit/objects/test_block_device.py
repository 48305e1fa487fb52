"""BlockDeviceMapping 1.22: primitives, compatibility, convenience."""

from oslo_utils import uuidutils
import pytest

from nova import context
from nova import exception
from nova import objects

_UPSTREAM_1_21 = {
    'id', 'uuid', 'instance_uuid', 'instance', 'source_type',
    'destination_type', 'guest_format', 'device_type', 'disk_bus',
    'boot_index', 'device_name', 'delete_on_termination', 'snapshot_id',
    'volume_id', 'volume_size', 'image_id', 'no_device', 'connection_info',
    'tag', 'attachment_id', 'volume_type', 'encrypted',
    'encryption_secret_uuid', 'encryption_format', 'encryption_options',
    'created_at', 'updated_at', 'deleted_at', 'deleted',
}


def _record():
    return objects.LibvirtDiskMetadata(
        backend='flat', format='raw', size=1024 ** 3, disk_name='disk.local',
        cache_name='ephemeral_1_ext4')


def _bdm(**overrides):
    values = dict(
        id=7, uuid=uuidutils.generate_uuid(),
        instance_uuid=uuidutils.generate_uuid(),
        source_type='blank', destination_type='local', guest_format='ext4',
        device_type='disk', disk_bus='virtio', boot_index=-1,
        device_name='/dev/vdb', delete_on_termination=True, volume_size=1,
        no_device=False, encrypted=False, tag='scratch',
        driver_info=_record().to_driver_info())
    values.update(overrides)
    return objects.BlockDeviceMapping(context.get_admin_context(), **values)


def test_fields_are_upstream_1_21_plus_driver_info():
    assert objects.BlockDeviceMapping.VERSION == '1.22'
    assert set(objects.BlockDeviceMapping.fields) == (
        _UPSTREAM_1_21 | {'driver_info'})
    assert objects.BlockDeviceMapping.fields['driver_info'].nullable


def test_round_trip_1_22():
    bdm = _bdm()
    primitive = bdm.obj_to_primitive()
    assert primitive['nova_object.version'] == '1.22'
    loaded = objects.BlockDeviceMapping.obj_from_primitive(primitive)
    for name in bdm.fields:
        assert (getattr(loaded, name) if loaded.obj_attr_is_set(name)
                else 'unset') == (getattr(bdm, name)
                                  if bdm.obj_attr_is_set(name) else 'unset')
    assert loaded.driver_info == bdm.driver_info


def test_make_compatible_1_21_drops_driver_info_only():
    bdm = _bdm(volume_type='fast')
    new = bdm.obj_to_primitive()['nova_object.data']
    old = bdm.obj_to_primitive(target_version='1.21')['nova_object.data']
    assert set(new) - set(old) == {'driver_info'}
    assert old['volume_type'] == 'fast'


@pytest.mark.parametrize('version,gone', [
    ('1.20', {'driver_info', 'encrypted', 'encryption_format',
              'encryption_options', 'encryption_secret_uuid'}),
    ('1.19', {'volume_type'}),
    ('1.18', {'uuid'}),
    ('1.17', {'attachment_id'}),
    ('1.16', {'tag'}),
])
def test_make_compatible_older(version, gone):
    data = _bdm(attachment_id=uuidutils.generate_uuid(),
                volume_type='fast', encryption_format='luks').obj_to_primitive(
        target_version=version)['nova_object.data']
    assert not gone & set(data)


def test_get_disk_metadata():
    record = _bdm().get_disk_metadata()
    assert isinstance(record, objects.LibvirtDiskMetadata)
    assert record.cache_name == 'ephemeral_1_ext4'
    assert _bdm(driver_info=None).get_disk_metadata() is None


def test_get_disk_metadata_is_strict():
    with pytest.raises(exception.DiskMetadataInvalid):
        _bdm(driver_info='{"nova_object.name": "Other"}').get_disk_metadata()


def test_convenience_properties():
    swap = _bdm(guest_format='swap', source_type='blank')
    assert swap.is_swap and swap.is_blank and swap.is_local
    assert not swap.is_image and not swap.is_volume and not swap.is_root
    root = _bdm(source_type='image', boot_index=0, guest_format=None)
    assert root.is_image and root.is_root and root.is_local
    assert not root.is_swap and not root.is_blank
    volume = _bdm(source_type='volume', destination_type='volume')
    assert volume.is_volume and not volume.is_local


def test_instance_not_lazy_loadable_without_context():
    bdm = objects.BlockDeviceMapping(instance_uuid=uuidutils.generate_uuid())
    with pytest.raises(exception.OrphanedObjectError):
        bdm.instance


def test_only_instance_and_driver_info_are_lazy_loadable():
    with pytest.raises(exception.ObjectActionError):
        _bdm().obj_load_attr('volume_id')


def test_mapping_from_a_1_21_sender_without_a_row_has_no_record():
    """A Nova 34 primitive never carries driver_info; a mapping that is not
    in this database (no context, or no id) has no record, and asking for
    it neither raises nor guesses."""
    primitive = _bdm().obj_to_primitive(target_version='1.21')
    assert 'driver_info' not in primitive['nova_object.data']
    loaded = objects.BlockDeviceMapping.obj_from_primitive(primitive)
    assert 'driver_info' not in loaded
    assert loaded.get_disk_metadata() is None
    unsaved = objects.BlockDeviceMapping(context.get_admin_context(),
                                         instance_uuid=loaded.instance_uuid)
    assert unsaved.get_disk_metadata() is None


def test_nested_instance_and_flavor_backport_with_a_manifest():
    flavor = objects.Flavor.from_sizes(root_gb=1, swap=512)
    instance = objects.Instance(uuid=uuidutils.generate_uuid(), root_gb=1,
                                flavor=flavor)
    bdm = _bdm(instance_uuid=instance.uuid, instance=instance)
    primitive = bdm.obj_to_primitive(
        target_version='1.21',
        version_manifest={'BlockDeviceMapping': '1.21', 'Instance': '2.8',
                          'Flavor': '1.2'})
    data = primitive['nova_object.data']
    assert primitive['nova_object.version'] == '1.21'
    assert 'driver_info' not in data
    nested = data['instance']
    assert nested['nova_object.name'] == 'Instance'
    assert nested['nova_object.version'] == '2.8'
    assert nested['nova_object.data']['flavor']['nova_object.data'][
        'swap'] == 512

"""LibvirtDiskMetadata: round trip through driver_info, and strict loading."""

import copy

from oslo_serialization import jsonutils
import pytest

from nova import exception
from nova import objects


def _record(**overrides):
    values = dict(backend='qcow2', format='qcow2', size=2 * 1024 ** 3,
                  disk_name='disk', backing_format='raw',
                  image_id='c0f5b6d4-1b5c-4d8e-9a3f-7e2a1b0c9d8e')
    values.update(overrides)
    return objects.LibvirtDiskMetadata(**values)


def _fields(record):
    return {name: getattr(record, name) for name in record.fields}


def _primitive(**data_overrides):
    primitive = jsonutils.loads(_record().to_driver_info())
    primitive['nova_object.data'].update(data_overrides)
    return primitive


def _load(primitive):
    return objects.LibvirtDiskMetadata.from_driver_info(
        jsonutils.dumps(primitive))


@pytest.mark.parametrize('record', [
    _record(),
    _record(backend='flat', format='raw', backing_format=None,
            image_id=None),
    _record(backend='flat', format='raw', backing_format=None,
            image_id=None, cache_name='ephemeral_1_ext4',
            disk_name='disk.local'),
    _record(backend='lvm', format='raw', backing_format=None,
            volume_group='nova-vg', volume_name='uuid_disk'),
    # An Lvm record keeps the format of the base it was converted from.
    _record(backend='lvm', format='raw', backing_format='qcow2',
            volume_group='nova-vg', volume_name='uuid_disk'),
    _record(backend='rbd', format='raw', backing_format=None,
            rbd_pool='vms', volume_name='uuid_disk.swap', image_id=None,
            cache_name='swap_512', disk_name='disk.swap'),
    _record(backend='ploop', format='ploop', backing_format=None),
    _record(backend='lvm', format='raw', backing_format=None,
            volume_group='nova-vg', volume_name='uuid_disk.local',
            disk_name='disk.local', image_id=None,
            cache_name='ephemeral_1_vfat', encryption='dmcrypt-plain',
            encryption_cipher='aes-xts-plain64', encryption_key_size=512),
], ids=lambda r: r.backend + (
    '-encrypted' if r.obj_attr_is_set('encryption') else ''))
def test_round_trip(record):
    text = record.to_driver_info()
    loaded = objects.LibvirtDiskMetadata.from_driver_info(text)
    assert _fields(loaded) == _fields(record)
    assert not loaded.obj_what_changed()
    # The text is stable: the same record always serialises the same.
    assert loaded.to_driver_info() == text


def test_serialised_form_is_an_ovo_primitive():
    primitive = jsonutils.loads(_record().to_driver_info())
    assert primitive['nova_object.name'] == 'LibvirtDiskMetadata'
    assert primitive['nova_object.namespace'] == 'nova'
    assert primitive['nova_object.version'] == \
        objects.LibvirtDiskMetadata.VERSION
    assert 'nova_object.changes' not in primitive
    assert primitive['nova_object.data']['size'] == 2 * 1024 ** 3


@pytest.mark.parametrize('text', ['', '{', 'not json', '{"a": }', None],
                         ids=['empty', 'truncated', 'text', 'bad', 'none'])
def test_malformed_json(text):
    with pytest.raises(exception.DiskMetadataMalformed):
        objects.LibvirtDiskMetadata.from_driver_info(text)


@pytest.mark.parametrize('value', [[], 'disk', 42, None])
def test_top_level_not_an_object(value):
    with pytest.raises(exception.DiskMetadataMalformed):
        _load(value)


def test_missing_envelope_key():
    primitive = _primitive()
    del primitive['nova_object.version']
    with pytest.raises(exception.DiskMetadataMalformed):
        _load(primitive)


def test_data_not_an_object():
    primitive = _primitive()
    primitive['nova_object.data'] = ['backend', 'qcow2']
    with pytest.raises(exception.DiskMetadataMalformed):
        _load(primitive)


def test_unknown_object_name():
    primitive = _primitive()
    primitive['nova_object.name'] = 'BlockDeviceMapping'
    with pytest.raises(exception.DiskMetadataUnknownObject):
        _load(primitive)


def test_unknown_namespace():
    primitive = _primitive()
    primitive['nova_object.namespace'] = 'cinder'
    with pytest.raises(exception.DiskMetadataUnknownObject):
        _load(primitive)


@pytest.mark.parametrize('version', ['2.0', '0.9'])
def test_unknown_major_version(version):
    primitive = _primitive()
    primitive['nova_object.version'] = version
    with pytest.raises(exception.DiskMetadataUnsupportedVersion):
        _load(primitive)


def test_newer_minor_version():
    # A newer minor version may carry facts this code would drop: refuse,
    # never half-load.
    major, minor = objects.LibvirtDiskMetadata.VERSION.split('.')
    primitive = _primitive()
    primitive['nova_object.version'] = '%s.%d' % (major, int(minor) + 1)
    with pytest.raises(exception.DiskMetadataUnsupportedVersion):
        _load(primitive)


@pytest.mark.parametrize('field,value', [
    ('size', True), ('size', '12'), ('size', 1.5), ('size', None),
    ('disk_name', 7), ('image_id', ['x']), ('preallocated', 1),
    ('preallocated', 'yes'), ('backend', None), ('volume_group', {}),
])
def test_wrong_json_types_are_refused_not_coerced(field, value):
    with pytest.raises(exception.DiskMetadataMalformed, match=field):
        _load(_primitive(**{field: value}))


def test_a_loaded_1_0_record_is_written_back_as_current():
    primitive = _record().obj_to_primitive(target_version='1.0')
    primitive.pop('nova_object.changes', None)
    loaded = _load(primitive)
    written = jsonutils.loads(loaded.to_driver_info())
    assert written['nova_object.version'] == \
        objects.LibvirtDiskMetadata.VERSION
    assert written['nova_object.data']['preallocated'] is False
    assert written['nova_object.data']['encryption'] is None


def test_a_1_0_record_loads_with_the_1_1_default():
    # What 1.0 code wrote (before preallocated existed) still loads.
    primitive = _record().obj_to_primitive(target_version='1.0')
    primitive.pop('nova_object.changes', None)
    assert primitive['nova_object.version'] == '1.0'
    assert 'preallocated' not in primitive['nova_object.data']
    loaded = _load(primitive)
    assert loaded.preallocated is False
    current = _load(jsonutils.loads(_record().to_driver_info()))
    assert _fields(loaded) == _fields(current)


def test_backport_to_1_0_drops_preallocated():
    record = _record(preallocated=True)
    primitive = record.obj_to_primitive(target_version='1.0')
    assert primitive['nova_object.version'] == '1.0'
    assert 'preallocated' not in primitive['nova_object.data']
    assert record.obj_to_primitive()['nova_object.data']['preallocated']


@pytest.mark.parametrize('version', ['one', '1.x', '', 1.0, '1', '1.0.0',
                                     ' 1.0'])
def test_bad_version(version):
    primitive = _primitive()
    primitive['nova_object.version'] = version
    with pytest.raises(exception.DiskMetadataInvalid):
        _load(primitive)


@pytest.mark.parametrize('field,value', [
    ('backend', 'zfs'), ('format', 'vmdk'), ('backing_format', 'vhd')])
def test_unknown_enum_value(field, value):
    with pytest.raises(exception.DiskMetadataUnknownValue):
        _load(_primitive(**{field: value}))


def test_unknown_field():
    with pytest.raises(exception.DiskMetadataMalformed):
        _load(_primitive(compression='zstd'))


@pytest.mark.parametrize('overrides', [
    # lvm without its volume group
    dict(backend='lvm', format='raw', backing_format=None,
         volume_name='uuid_disk'),
    # rbd without its pool
    dict(backend='rbd', format='raw', backing_format=None,
         volume_name='uuid_disk'),
    # a qcow2 overlay must name its base's format
    dict(backing_format=None),
    # backing_format only means something where the spec keeps it
    dict(backend='flat', format='raw', backing_format='raw'),
    dict(backend='rbd', format='raw', backing_format='qcow2',
         rbd_pool='vms', volume_name='uuid_disk'),
    # a backend that cannot hold the format
    dict(backend='lvm', format='qcow2', backing_format=None,
         volume_group='vg', volume_name='lv'),
    # one source, not two
    dict(cache_name='ephemeral_1_ext4'),
    # names end up in paths and volume names
    dict(disk_name='../x'),
    dict(disk_name='a/b'),
    dict(disk_name=''),
    dict(backend='lvm', format='raw', backing_format=None,
         volume_group='..', volume_name='lv'),
    # negative sizes are not sizes
    dict(size=-1),
], ids=['lvm-no-vg', 'rbd-no-pool', 'qcow2-no-backing-format',
        'flat-backing-format', 'rbd-backing-format', 'lvm-qcow2',
        'two-sources', 'dotdot', 'slash', 'empty-name', 'vg-dotdot',
        'negative-size'])
def test_inconsistent_fields(overrides):
    with pytest.raises(exception.DiskMetadataInvalid):
        _load(_primitive(**overrides))


@pytest.mark.parametrize('missing', ['backend', 'format', 'size',
                                     'disk_name'])
def test_missing_required_field(missing):
    primitive = _primitive()
    del primitive['nova_object.data'][missing]
    with pytest.raises(exception.DiskMetadataInvalid):
        _load(primitive)


def test_to_driver_info_refuses_inconsistent_record():
    with pytest.raises(exception.DiskMetadataInvalid):
        _record(disk_name='../x').to_driver_info()


def test_loading_does_not_alter_the_input():
    primitive = _primitive()
    before = copy.deepcopy(primitive)
    _load(primitive)
    assert primitive == before


@pytest.mark.parametrize('opener', ['[', '{"a":'])
def test_nesting_that_exhausts_the_parser_is_malformed(opener):
    """Issue 10: a record nested deep enough to exhaust the JSON parser is
    refused with the same typed error as any bad record."""
    with pytest.raises(exception.DiskMetadataMalformed):
        objects.LibvirtDiskMetadata.from_driver_info(opener * 200000)


# --- encryption (1.2) -------------------------------------------------------

def _encrypted(**overrides):
    values = dict(backend='lvm', format='raw', backing_format=None,
                  volume_group='nova-vg', volume_name='uuid_disk',
                  encryption='dmcrypt-plain',
                  encryption_cipher='aes-xts-plain64',
                  encryption_key_size=512)
    values.update(overrides)
    return _record(**values)


def test_a_1_1_record_loads_as_a_disk_in_clear():
    # What 1.1 code wrote (before encryption existed) still loads.
    primitive = _record().obj_to_primitive(target_version='1.1')
    primitive.pop('nova_object.changes', None)
    assert primitive['nova_object.version'] == '1.1'
    assert not {'encryption', 'encryption_cipher', 'encryption_key_size'} & \
        set(primitive['nova_object.data'])
    loaded = _load(primitive)
    assert (loaded.encryption, loaded.encryption_cipher,
            loaded.encryption_key_size) == (None, None, None)


@pytest.mark.parametrize('target', ['1.1', '1.0'])
def test_an_encrypted_record_is_never_backported_below_1_2(target):
    # A 1.1 reader would attach the encrypted volume as a disk in clear.
    record = _encrypted()
    with pytest.raises(exception.ObjectActionError, match='encryption'):
        record.obj_to_primitive(target_version=target)
    # The record itself keeps saying how its disk is encrypted.
    data = record.obj_to_primitive()['nova_object.data']
    assert data['encryption'] == 'dmcrypt-plain'
    assert data['encryption_key_size'] == 512


@pytest.mark.parametrize('overrides', [
    # only LVM volumes are encrypted (upstream: Lvm alone)
    dict(backend='flat', format='raw', volume_group=None, volume_name=None),
    dict(backend='rbd', format='raw', volume_group=None, rbd_pool='vms'),
    # a kind of encryption this code does not know
    dict(encryption='luks'),
    # encrypted, but not said how
    dict(encryption_cipher=None),
    dict(encryption_key_size=None),
    # said how, but in clear
    dict(encryption=None),
    dict(encryption=None, encryption_cipher=None),
    # settings dm-crypt would not take
    dict(encryption_cipher='aes'),
    dict(encryption_key_size=100),
    dict(encryption_key_size=384),
], ids=['flat', 'rbd', 'luks', 'no-cipher', 'no-key-size', 'clear-with-how',
        'clear-with-key-size', 'bad-cipher', 'partial-bytes', 'xts-384'])
def test_inconsistent_encryption_is_refused(overrides):
    primitive = jsonutils.loads(_encrypted().to_driver_info())
    primitive['nova_object.data'].update(overrides)
    with pytest.raises(exception.DiskMetadataInvalid):
        _load(primitive)
    with pytest.raises(exception.DiskMetadataInvalid):
        _encrypted(**overrides).to_driver_info()


@pytest.mark.parametrize('field,value', [
    ('encryption', True), ('encryption_key_size', '512'),
    ('encryption_key_size', 512.0), ('encryption_cipher', 7)])
def test_encryption_json_types_are_refused_not_coerced(field, value):
    primitive = jsonutils.loads(_encrypted().to_driver_info())
    primitive['nova_object.data'][field] = value
    with pytest.raises(exception.DiskMetadataMalformed, match=field):
        _load(primitive)


# --- config drive and rescue disks (1.2) -----------------------------------

def test_config_drive_and_rescue_records_round_trip():
    config = _record(backend='flat', format='raw', backing_format=None,
                     image_id=None, disk_name='disk.config',
                     source_kind='file')
    rescue = _record(disk_name='disk.rescue', source_kind='rescue')
    for record in (config, rescue):
        loaded = objects.LibvirtDiskMetadata.from_driver_info(
            record.to_driver_info())
        assert _fields(loaded) == _fields(record)
    assert config.source == 'file'
    assert rescue.source == 'rescue:image:%s' % rescue.image_id


@pytest.mark.parametrize('overrides', [
    dict(source_kind='file'),                       # a file and an image
    dict(source_kind='rescue', image_id=None),      # a rescue disk, no image
])
def test_inconsistent_source_kinds_are_refused(overrides):
    with pytest.raises(exception.DiskMetadataInvalid):
        _record(**overrides).to_driver_info()


@pytest.mark.parametrize('image_id', ['', 'x' * 256])
def test_image_ids_fit_nova_s_image_ref(image_id):
    # 255 characters at most, as instances.image_ref: a record stored on
    # one database fits every other's (MySQL's TEXT is 64 KiB).
    _record(image_id='x' * 255).to_driver_info()
    with pytest.raises(exception.DiskMetadataInvalid, match='image_id'):
        _record(image_id=image_id).to_driver_info()


def test_unknown_source_kind_is_refused():
    with pytest.raises(exception.DiskMetadataUnknownValue):
        _load(_primitive(source_kind='volume'))


def test_source_kind_is_never_backported_and_absent_means_none():
    # A 1.1 reader would take the rescue disk for one of the instance's.
    with pytest.raises(exception.ObjectActionError, match='source_kind'):
        _record(source_kind='rescue').obj_to_primitive(target_version='1.1')
    primitive = _record().obj_to_primitive(target_version='1.1')
    assert 'source_kind' not in primitive['nova_object.data']
    primitive.pop('nova_object.changes', None)
    assert _load(primitive).source_kind is None


# --- adopted upstream cache files (1.3) ------------------------------------

IMAGE_SHA1 = 'f3b1a6b8e0a7f8a4f6c5e3a1d2b9c8e7f6a5b4c3'


def _adopted(**overrides):
    values = dict(base_name=objects.libvirt_disk.upstream_base_name(
        _record().image_id))
    values.update(overrides)
    return _record(**values)


def test_base_name_is_the_upstream_name_of_the_source():
    record = _adopted()
    assert record.base_name == objects.libvirt_disk.upstream_base_name(
        record.image_id)
    assert len(record.base_name) == 40
    loaded = objects.LibvirtDiskMetadata.from_driver_info(
        record.to_driver_info())
    assert loaded.base_name == record.base_name
    swap = _record(image_id=None, cache_name='swap_64', base_name='swap_64',
                   disk_name='disk.swap')
    eph = _record(image_id=None, cache_name='ephemeral_1_8bf2f6a',
                  base_name='ephemeral_1_8bf2f6a', disk_name='disk.eph0')
    for record in (swap, eph):
        assert objects.LibvirtDiskMetadata.from_driver_info(
            record.to_driver_info()).base_name == record.base_name


@pytest.mark.parametrize('overrides', [
    # another image's base, or a path
    {'base_name': IMAGE_SHA1},
    {'base_name': '../' + IMAGE_SHA1},
    # this cache's own names are derived, never recorded
    {'base_name': IMAGE_SHA1 + '.raw'},
    # a template's upstream name is its own name
    {'image_id': None, 'cache_name': 'swap_64', 'base_name': 'swap_128'},
    {'image_id': None, 'cache_name': 'ephemeral_1_ext4',
     'base_name': 'ephemeral_1_ext4'},
    {'image_id': None, 'cache_name': 'swap_64', 'base_name': 'swap_64',
     'backing_format': 'qcow2'},
    # a blank disk, or a backend without a base
    {'image_id': None, 'base_name': IMAGE_SHA1},
    {'backend': 'flat', 'format': 'raw', 'backing_format': None},
])
def test_inconsistent_base_names_are_refused(overrides):
    with pytest.raises(exception.DiskMetadataInvalid, match='base_name'):
        _adopted(**overrides).validate()


def test_a_1_2_record_loads_without_a_base_name():
    primitive = _record().obj_to_primitive(target_version='1.2')
    primitive.pop('nova_object.changes', None)
    assert 'base_name' not in primitive['nova_object.data']
    assert _load(primitive).base_name is None


def test_a_record_with_a_base_name_is_never_backported():
    # A 1.2 reader would derive another base and define the overlay over
    # a file it does not sit on.
    for target in ('1.2', '1.1', '1.0'):
        with pytest.raises(exception.ObjectActionError, match='base_name|'
                           'cannot name'):
            _adopted().obj_to_primitive(target_version=target)


def test_a_proven_record_is_checked_again_once_a_field_changes():
    record = _record()
    record.validate()
    # Setting a field: the next validate() (and serialising) checks anew.
    record.cache_name = 'swap_64'
    record.image_id = record.image_id or 'a-image'
    with pytest.raises(exception.DiskMetadataInvalid, match='one source'):
        record.validate()
    with pytest.raises(exception.DiskMetadataInvalid, match='one source'):
        record.to_driver_info()
    # Deleting one: a required fact gone is noticed too.
    record = _record()
    record.validate()
    del record.disk_name
    with pytest.raises(exception.DiskMetadataInvalid, match='disk_name'):
        record.validate()

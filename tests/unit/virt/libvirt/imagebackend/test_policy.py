"""policy.py: the layout of new disks, for every setting that decides it.

Pure logic: real objects (Instance, BlockDeviceMapping, LibvirtDiskMetadata)
built in memory, real configuration (overrides on nova.conf.CONF); no
database, no files.
"""

import hashlib
import itertools
import types

from oslo_utils import units
from oslo_utils import uuidutils
import pytest

import nova.conf
from nova import exception
from nova import objects
from nova.objects import libvirt_disk
from nova.virt.libvirt import ephemeral_crypt
from nova.virt.libvirt import ephemeral_fs
from nova.virt.libvirt.imagebackend import policy

from tests import fixtures

CONF = nova.conf.CONF
UUID = '5b0b2a38-08c2-4c2a-bd3c-1c1a3e3bbd0e'
IMAGE_ID = 'c0f5e0d2-7a3e-4d0b-9a57-0f0d7b1e2c11'


@pytest.fixture
def conf():
    overrides = fixtures.ConfOverrides()
    yield overrides
    overrides.undo()


def make_instance(root_gb=2, ephemeral_gb=1, swap=512):
    return objects.Instance(uuid=UUID, image_ref=IMAGE_ID, root_gb=root_gb,
                            ephemeral_gb=ephemeral_gb,
                            flavor=objects.Flavor.from_sizes(
                                root_gb, ephemeral_gb, swap))


def image_meta(disk_format='qcow2', virtual_size=units.Gi, min_disk=0):
    return dict(id=IMAGE_ID, disk_format=disk_format,
                virtual_size=virtual_size, min_disk=min_disk)


def root_bdm(**kw):
    return objects.BlockDeviceMapping(
        id=1, source_type='image', destination_type='local', boot_index=0,
        image_id=IMAGE_ID, guest_format=None, volume_size=None, **kw)


def ephemeral_bdm(bdm_id=2, volume_size=None, guest_format='ext4'):
    return objects.BlockDeviceMapping(
        id=bdm_id, source_type='blank', destination_type='local',
        boot_index=-1, guest_format=guest_format, volume_size=volume_size,
        image_id=None)


def swap_bdm(bdm_id=9, volume_size=None):
    return objects.BlockDeviceMapping(
        id=bdm_id, source_type='blank', destination_type='local',
        boot_index=-1, guest_format='swap', volume_size=volume_size,
        image_id=None)


def plan_one(bdm, instance=None, meta=None):
    [(planned_bdm, record)] = policy.plan_disks(
        instance or make_instance(), meta or image_meta(), [bdm])
    assert planned_bdm is bdm
    return record


# --- which backend ---------------------------------------------------------

@pytest.mark.parametrize('images_type,use_cow,backend', [
    ('default', True, 'qcow2'),
    ('default', False, 'flat'),
    ('raw', True, 'flat'),
    ('raw', False, 'flat'),
    ('flat', True, 'flat'),
    ('qcow2', False, 'qcow2'),
    ('qcow2', True, 'qcow2'),
    ('ploop', True, 'ploop'),
    ('rbd', False, 'rbd'),
])
def test_backend_from_images_type_and_use_cow(conf, images_type,
                                              use_cow, backend):
    conf.config(group='libvirt', images_type=images_type)
    conf.config(use_cow_images=use_cow)
    assert policy.node_layout().backend == backend
    for bdm in (root_bdm(), ephemeral_bdm(), swap_bdm()):
        assert plan_one(bdm).backend == backend


def test_sparse_logical_volumes_is_refused_at_planning(conf):
    conf.config(group='libvirt', images_type='lvm',
                images_volume_group='nova-vg', sparse_logical_volumes=True)
    with pytest.raises(exception.DiskPlanningFailed) as e:
        plan_one(root_bdm())
    msg = str(e.value)
    assert 'sparse_logical_volumes' in msg and UUID in msg and 'disk' in msg


def test_sparse_logical_volumes_is_ignored_by_other_backends(conf):
    conf.config(group='libvirt', images_type='flat',
                sparse_logical_volumes=True)
    assert plan_one(root_bdm()).backend == 'flat'


def test_lvm_backend(conf):
    conf.config(group='libvirt', images_type='lvm',
                images_volume_group='nova-vg')
    record = plan_one(root_bdm())
    assert (record.backend, record.format) == ('lvm', 'raw')
    assert record.volume_group == 'nova-vg'
    assert record.volume_name == '%s_disk' % UUID


# --- which format -----------------------------------------------------------

# (backend, image format, force_raw_images) -> (format, backing_format)
ROOT_FORMATS = {
    ('flat', 'raw', True): ('raw', None),
    ('flat', 'raw', False): ('raw', None),
    ('flat', 'qcow2', True): ('raw', None),
    ('flat', 'qcow2', False): ('qcow2', None),
    ('flat', 'vmdk', True): ('raw', None),
    ('flat', 'vmdk', False): ('raw', None),
    ('qcow2', 'raw', True): ('qcow2', 'raw'),
    ('qcow2', 'raw', False): ('qcow2', 'raw'),
    ('qcow2', 'qcow2', True): ('qcow2', 'raw'),
    ('qcow2', 'qcow2', False): ('qcow2', 'qcow2'),
    ('qcow2', 'vmdk', False): ('qcow2', 'raw'),
    ('lvm', 'qcow2', False): ('raw', 'qcow2'),
    ('lvm', 'raw', True): ('raw', None),
    ('rbd', 'qcow2', False): ('raw', None),
    ('rbd', 'raw', True): ('raw', None),
    ('ploop', 'qcow2', False): ('ploop', None),
    ('ploop', 'raw', True): ('ploop', None),
}


@pytest.mark.parametrize('key', sorted(ROOT_FORMATS))
def test_root_format_matrix(conf, key):
    backend, image_format, force_raw = key
    conf.config(group='libvirt', images_type=backend,
                images_volume_group='vg0')
    conf.config(force_raw_images=force_raw)
    record = plan_one(root_bdm(), meta=image_meta(image_format))
    assert (record.format, record.backing_format) == ROOT_FORMATS[key]
    assert record.backend == backend
    assert record.image_id == IMAGE_ID
    assert record.cache_name is None


# backend -> (format, backing_format) of ephemeral and swap disks
TEMPLATE_FORMATS = {
    'flat': ('raw', None),
    'qcow2': ('qcow2', 'raw'),
    'lvm': ('raw', None),
    'rbd': ('raw', None),
    'ploop': ('ploop', None),
}


@pytest.mark.parametrize('backend,force_raw,make_bdm', list(
    itertools.product(sorted(TEMPLATE_FORMATS), (True, False),
                      (ephemeral_bdm, swap_bdm))))
def test_template_format_matrix(conf, backend, force_raw, make_bdm):
    conf.config(group='libvirt', images_type=backend,
                images_volume_group='vg0')
    conf.config(force_raw_images=force_raw)
    record = plan_one(make_bdm())
    assert (record.format, record.backing_format) == \
        TEMPLATE_FORMATS[backend]
    assert record.image_id is None
    assert record.cache_name


# --- sizes -------------------------------------------------------------------

def test_sizes_come_from_the_flavor(conf):
    instance = make_instance(root_gb=2, ephemeral_gb=1, swap=512)
    planned = dict((r.disk_name, r) for _, r in policy.plan_disks(
        instance, image_meta(), [root_bdm(), ephemeral_bdm(), swap_bdm()]))
    assert planned['disk'].size == 2 * units.Gi
    assert planned['disk.local'].size == 1 * units.Gi
    assert planned['disk.swap'].size == 512 * units.Mi


def test_mapping_volume_size_wins_over_flavor(conf):
    # Upstream's units: GB for an ephemeral mapping, MiB for swap.
    eph = plan_one(ephemeral_bdm(volume_size=3))
    swap = plan_one(swap_bdm(volume_size=64))
    assert eph.size == 3 * units.Gi
    assert eph.cache_name == 'ephemeral_3_ext4'
    assert swap.size == 64 * units.Mi
    assert swap.cache_name == 'swap_64'


def test_root_gb_zero_means_image_virtual_size(conf):
    record = plan_one(root_bdm(), instance=make_instance(root_gb=0),
                      meta=image_meta(virtual_size=123 * units.Mi))
    assert record.size == 123 * units.Mi


def test_root_gb_zero_and_unknown_virtual_size_is_refused(conf):
    with pytest.raises(exception.DiskPlanningFailed) as e:
        plan_one(root_bdm(), instance=make_instance(root_gb=0),
                 meta=image_meta(virtual_size=None))
    assert 'disk' in str(e.value) and UUID in str(e.value)
    assert 'virtual size' in str(e.value)


def test_image_larger_than_root_is_refused(conf):
    with pytest.raises(exception.DiskPlanningFailed, match='larger'):
        plan_one(root_bdm(), instance=make_instance(root_gb=1),
                 meta=image_meta(virtual_size=2 * units.Gi))


def test_image_min_disk_is_obeyed(conf):
    with pytest.raises(exception.DiskPlanningFailed, match='at least 5 GB'):
        plan_one(root_bdm(), instance=make_instance(root_gb=2),
                 meta=image_meta(min_disk=5))


def test_zero_sized_ephemeral_or_swap_is_refused(conf):
    instance = make_instance(ephemeral_gb=0, swap=0)
    with pytest.raises(exception.DiskPlanningFailed, match='disk.local'):
        plan_one(ephemeral_bdm(), instance=instance)
    with pytest.raises(exception.DiskPlanningFailed, match='disk.swap'):
        plan_one(swap_bdm(), instance=instance)


# --- names, locations and sources -------------------------------------------

def test_upstream_disk_names_and_sources(conf):
    planned = policy.plan_disks(
        make_instance(), image_meta(),
        [root_bdm(), ephemeral_bdm(2), ephemeral_bdm(3, volume_size=2,
                                                     guest_format='vfat'),
         swap_bdm()])
    assert [(r.disk_name, r.source) for _, r in planned] == [
        ('disk', 'image:%s' % IMAGE_ID),
        ('disk.local', 'template:ephemeral_1_ext4'),
        ('disk.eph1', 'template:ephemeral_2_vfat'),
        ('disk.swap', 'template:swap_512'),
    ]


def test_ephemeral_default_filesystem_is_vfat_as_upstream(conf):
    # No guest_format, no default_ephemeral_format, no os_type (our
    # Instance has none): upstream's vfat.
    assert plan_one(ephemeral_bdm(guest_format=None)).cache_name == \
        'ephemeral_1_vfat'


def test_names_already_recorded_are_skipped(conf):
    planned = policy.plan_disks(make_instance(), None, [ephemeral_bdm()],
                                taken_names={'disk', 'disk.local'})
    assert planned[0][1].disk_name == 'disk.eph1'


def test_second_root_or_swap_is_refused(conf):
    with pytest.raises(exception.DiskPlanningFailed,
                       match='already has a disk'):
        policy.plan_disks(make_instance(), image_meta(), [swap_bdm()],
                          taken_names={'disk.swap'})


def test_lvm_without_volume_group_is_a_typed_error(conf):
    conf.config(group='libvirt', images_type='lvm', images_volume_group=None)
    with pytest.raises(exception.DiskLayoutConfigMissing) as e:
        plan_one(root_bdm())
    msg = str(e.value)
    assert UUID in msg and 'disk ' in msg
    assert 'images_volume_group' in msg and 'lvm' in msg


def test_rbd_records_its_pool(conf):
    conf.config(group='libvirt', images_type='rbd', images_rbd_pool='vms')
    record = plan_one(swap_bdm())
    assert (record.rbd_pool, record.volume_name) == (
        'vms', '%s_disk.swap' % UUID)
    conf.config(group='libvirt', images_rbd_pool='')
    with pytest.raises(exception.DiskLayoutConfigMissing,
                       match='images_rbd_pool'):
        plan_one(swap_bdm())


def test_volume_name_is_escaped_and_injective():
    assert policy.volume_name(UUID, 'disk.eph1') == UUID + '_disk.eph1'
    odd = policy.volume_name(UUID, 'a/b c+')
    assert '/' not in odd and ' ' not in odd
    assert odd == UUID + '_a+2fb+20c+2b'
    assert policy.volume_name(UUID, 'a+2f') != policy.volume_name(UUID, 'a/')
    with pytest.raises(exception.InvalidUUID):
        policy.volume_name('../etc', 'disk')


def test_image_metadata_must_match_the_mapping(conf):
    with pytest.raises(exception.DiskPlanningFailed, match='metadata is of'):
        plan_one(root_bdm(), meta=dict(image_meta(),
                                       id=uuidutils.generate_uuid()))
    with pytest.raises(exception.DiskPlanningFailed, match='no image meta'):
        policy.plan_disks(make_instance(), None, [root_bdm()])


def test_unsupported_mappings_are_refused(conf):
    volume = objects.BlockDeviceMapping(
        id=5, source_type='volume', destination_type='volume',
        boot_index=1, guest_format=None, volume_size=1, image_id=None)
    with pytest.raises(exception.DiskPlanningFailed, match='mapping 5'):
        plan_one(volume)
    snapshot = objects.BlockDeviceMapping(
        id=6, source_type='snapshot', destination_type='local',
        boot_index=1, guest_format=None, volume_size=1, image_id=None)
    with pytest.raises(exception.DiskPlanningFailed, match='snapshot'):
        plan_one(snapshot)
    with pytest.raises(exception.DiskPlanningFailed, match='btrfs'):
        plan_one(ephemeral_bdm(guest_format='btrfs'))


def test_bad_instance_uuid_is_refused(conf):
    instance = make_instance()
    with pytest.warns(FutureWarning):
        instance.uuid = '../../etc'  # a UUIDField only warns
    with pytest.raises(exception.InvalidUUID):
        policy.plan_disks(instance, image_meta(), [root_bdm()])


def test_disk_role():
    assert policy.disk_role(root_bdm()) == policy.ROOT
    assert policy.disk_role(ephemeral_bdm()) == policy.EPHEMERAL
    assert policy.disk_role(swap_bdm()) == policy.SWAP
    volume = objects.BlockDeviceMapping(source_type='volume',
                                        destination_type='volume')
    assert policy.disk_role(volume) is None


# --- templates ---------------------------------------------------------------

def test_template_names_round_trip():
    name = policy.ephemeral_template_name(1, 'ext4')
    assert name == 'ephemeral_1_ext4'
    assert policy.parse_template_name(name) == policy.Template(
        'ephemeral', 1, 'ext4')
    assert policy.parse_template_name(policy.swap_template_name(512)) == \
        policy.Template('swap', 512)


@pytest.mark.parametrize('name', [
    None, '', 'swap_', 'swap_0', 'swap_-1', 'ephemeral_1_', 'ephemeral_1_zfs',
    'ephemeral_01_ext4', '../swap_1', 'swap_1/..', 'disk'])
def test_unknown_template_names_are_refused(name):
    with pytest.raises(exception.DiskMetadataInvalid):
        policy.parse_template_name(name)


# --- the records are complete ---------------------------------------------

@pytest.mark.parametrize('backend', sorted(TEMPLATE_FORMATS))
def test_every_planned_record_survives_persistence(conf, backend):
    conf.config(group='libvirt', images_type=backend,
                images_volume_group='vg0')
    planned = policy.plan_disks(
        make_instance(), image_meta(),
        [root_bdm(), ephemeral_bdm(), swap_bdm()])
    for _, record in planned:
        loaded = libvirt_disk.LibvirtDiskMetadata.from_driver_info(
            record.to_driver_info())
        assert loaded.to_driver_info() == record.to_driver_info()
        for name in loaded.fields:
            assert getattr(loaded, name) == getattr(record, name)


def test_config_change_after_planning_changes_nothing_planned(conf):
    conf.config(group='libvirt', images_type='qcow2')
    record = plan_one(root_bdm())
    text = record.to_driver_info()
    conf.config(group='libvirt', images_type='flat')
    conf.config(use_cow_images=False, force_raw_images=False)
    assert libvirt_disk.LibvirtDiskMetadata.from_driver_info(
        text).backend == 'qcow2'
    assert plan_one(root_bdm()).backend == 'flat'


@pytest.mark.parametrize('images_type,expected', [
    ('flat', True), ('qcow2', True), ('rbd', False)])
def test_preallocate_images_is_recorded_for_file_backends(conf, images_type,
                                                          expected):
    conf.config(preallocate_images='space')
    conf.config(group='libvirt', images_type=images_type)
    assert {r.preallocated for _, r in policy.plan_disks(
        make_instance(), image_meta(),
        [root_bdm(), ephemeral_bdm(), swap_bdm()])} == {expected}
    conf.config(preallocate_images='none')
    assert not plan_one(root_bdm()).preallocated


# --- the ephemeral filesystem, as upstream chooses it ------------------------

MKFS_CMD = 'mkfs.vfat -n %(fs_label)s %(target)s'


def instance_with_os_type(os_type):
    """Our Instance has no os_type: a stand-in with just what an ephemeral
    disk of a sized mapping reads."""
    return types.SimpleNamespace(uuid=UUID, image_ref=IMAGE_ID,
                                 os_type=os_type)


def test_default_ephemeral_format_is_used(conf):
    conf.config(default_ephemeral_format='xfs')
    assert plan_one(ephemeral_bdm(guest_format=None)).cache_name == \
        'ephemeral_1_xfs'
    # The mapping's own guest_format wins over it.
    assert plan_one(ephemeral_bdm(guest_format='ext3')).cache_name == \
        'ephemeral_1_ext3'


@pytest.mark.parametrize('os_type,fs_type', [
    ('linux', 'ext4'), (None, 'vfat'), ('freebsd', 'vfat')])
def test_os_type_decides_the_default_filesystem(conf, os_type, fs_type):
    record = plan_one(ephemeral_bdm(volume_size=1, guest_format=None),
                      instance=instance_with_os_type(os_type))
    assert record.cache_name == 'ephemeral_1_%s' % fs_type


def test_a_filesystem_this_host_cannot_make_is_refused(conf):
    # Upstream's ntfs for windows: no mkfs.ntfs here, so never promised.
    with pytest.raises(exception.DiskPlanningFailed) as e:
        plan_one(ephemeral_bdm(volume_size=1, guest_format=None),
                 instance=instance_with_os_type('windows'))
    assert "'ntfs'" in str(e.value) and 'disk.local' in str(e.value)


def test_a_virt_mkfs_command_gets_upstreams_template_name(conf):
    conf.config(virt_mkfs=['default=' + MKFS_CMD])
    digest = hashlib.md5(MKFS_CMD.encode()).hexdigest()[:7]
    # The command wins over the mapping's guest_format, as upstream.
    record = plan_one(ephemeral_bdm(volume_size=2, guest_format='ext4'))
    assert record.cache_name == 'ephemeral_2_%s' % digest
    template = policy.parse_template_name(record.cache_name)
    assert template == policy.Template('ephemeral', 2, mkfs_digest=digest)


def test_virt_mkfs_for_another_os_type_changes_nothing(conf):
    conf.config(virt_mkfs=['windows=' + MKFS_CMD])
    assert plan_one(ephemeral_bdm(guest_format=None)).cache_name == \
        'ephemeral_1_vfat'


@pytest.mark.parametrize('virt_mkfs', [
    ['default=mkfs.ext4 %(device)s'], ['default mkfs.ext4']],
    ids=['unknown-key', 'no-equals'])
def test_a_bad_virt_mkfs_is_refused_when_planning(conf, virt_mkfs):
    conf.config(virt_mkfs=virt_mkfs)
    with pytest.raises(exception.DiskPlanningFailed, match='disk.local'):
        plan_one(ephemeral_bdm())


def test_a_template_whose_command_is_gone_is_never_made(conf):
    conf.config(virt_mkfs=['default=' + MKFS_CMD])
    name = plan_one(ephemeral_bdm()).cache_name
    conf.config(virt_mkfs=['default=mkfs.ext4 -L %(fs_label)s %(target)s'])
    func = policy.template_func(policy.parse_template_name(name))
    with pytest.raises(ephemeral_fs.MkfsCommandNotConfigured,
                       match=name.rsplit('_', 1)[1]):
        func('/nonexistent/target', units.Gi)


def test_mkfs_digests_never_look_like_filesystems():
    assert policy.parse_template_name('ephemeral_1_vfat').fs_type == 'vfat'
    for bad in ('ephemeral_1_abcdef', 'ephemeral_1_abcdef12',
                'ephemeral_1_ABCDEF1', 'ephemeral_1_abcdefg'):
        with pytest.raises(exception.DiskMetadataInvalid):
            policy.parse_template_name(bad)


# --- encrypted LVM ----------------------------------------------------------

@pytest.fixture
def encrypted_lvm(conf):
    conf.config(group='libvirt', images_type='lvm',
                images_volume_group='nova-vg')
    conf.config(group='ephemeral_storage_encryption', enabled=True)
    return conf


def stand_in_probe(monkeypatch, available, reason=None):
    """This kernel has no dm-crypt: the answer of one that has it (or of
    one that lacks it, whatever the host) is stood in for."""
    monkeypatch.setattr(policy, 'DMCRYPT_PROBE',
                        lambda: (available, reason))


def test_encrypted_lvm_disks_record_how(encrypted_lvm, monkeypatch):
    stand_in_probe(monkeypatch, True)
    encrypted_lvm.config(group='ephemeral_storage_encryption',
                         cipher='aes-cbc-essiv:sha256', key_size=256)
    planned = policy.plan_disks(make_instance(), image_meta(),
                                [root_bdm(), ephemeral_bdm(), swap_bdm()])
    # As upstream, every LVM disk of the instance is encrypted.
    assert [(r.disk_name, r.encryption, r.encryption_cipher,
             r.encryption_key_size) for _, r in planned] == [
        (name, 'dmcrypt-plain', 'aes-cbc-essiv:sha256', 256)
        for name in ('disk', 'disk.local', 'disk.swap')]
    for _, record in planned:
        loaded = libvirt_disk.LibvirtDiskMetadata.from_driver_info(
            record.to_driver_info())
        assert loaded.encryption == 'dmcrypt-plain'


def test_no_dmcrypt_refuses_before_anything_is_planned(encrypted_lvm,
                                                       monkeypatch):
    stand_in_probe(monkeypatch, False, 'device-mapper is unavailable')
    bdms = [root_bdm(), ephemeral_bdm()]
    with pytest.raises(ephemeral_crypt.EphemeralEncryptionUnavailable) as e:
        policy.plan_disks(make_instance(), image_meta(), bdms)
    assert UUID in str(e.value) and 'disk' in str(e.value)
    assert 'device-mapper is unavailable' in str(e.value)
    assert not any(bdm.obj_attr_is_set('driver_info') for bdm in bdms)


def test_this_hosts_own_answer_is_obeyed(encrypted_lvm):
    # The real probe: on a host without dm-crypt (this kind of machine),
    # the refusal; on one with it, the encrypted record.
    available, reason = ephemeral_crypt.probe_dmcrypt()
    if available:
        assert plan_one(root_bdm()).encryption == 'dmcrypt-plain'
    else:
        with pytest.raises(ephemeral_crypt.EphemeralEncryptionUnavailable,
                           match='disk'):
            plan_one(root_bdm())


@pytest.mark.parametrize('images_type', ['flat', 'qcow2', 'ploop', 'rbd'])
def test_encryption_is_for_lvm_only(encrypted_lvm, monkeypatch, images_type):
    stand_in_probe(monkeypatch, True)
    encrypted_lvm.config(group='libvirt', images_type=images_type,
                         images_rbd_pool='vms')
    with pytest.raises(exception.DiskPlanningFailed,
                       match='images_type = lvm'):
        plan_one(root_bdm())


def test_encryption_settings_dmcrypt_refuses_are_refused(encrypted_lvm,
                                                         monkeypatch):
    stand_in_probe(monkeypatch, True)
    encrypted_lvm.config(group='ephemeral_storage_encryption', key_size=384)
    with pytest.raises(ephemeral_crypt.EphemeralEncryptionInvalid,
                       match='384'):
        plan_one(root_bdm())


def test_encryption_off_records_disks_in_clear(conf):
    conf.config(group='libvirt', images_type='lvm',
                images_volume_group='nova-vg')
    record = plan_one(root_bdm())
    assert (record.encryption, record.encryption_cipher,
            record.encryption_key_size) == (None, None, None)

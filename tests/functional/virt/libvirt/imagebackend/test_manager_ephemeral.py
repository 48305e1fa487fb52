"""Upstream's ephemeral scenarios through the DiskManager, on real tools.

Ephemeral disks made as Nova 34.0.0 makes them (the filesystem from
``[DEFAULT] virt_mkfs``, ``default_ephemeral_format`` and the os_type, vfat
when unset), and encrypted LVM storage refused where this host cannot
encrypt, before anything is recorded or made. Real SQLite (the records),
real mkfs and blkid (the disks), the real LVM volume group and this host's
own answer about dm-crypt.
"""

import hashlib
import os
import subprocess
import textwrap

from oslo_utils import units
from oslo_utils import uuidutils
import pytest

import nova.conf
from nova import context as nova_context
from nova import exception
from nova import objects
from nova.virt.libvirt import ephemeral_crypt
from nova.virt.libvirt.imagebackend import backends
from nova.virt.libvirt.imagebackend import manager as disk_manager
from nova.virt.libvirt.storage import lvm as storage_lvm
from tests.functional.virt.libvirt.imagebackend import helpers

CONF = nova.conf.CONF
UPSTREAM_PYTHON = os.environ.get('NOVA_TEST_UPSTREAM_PYTHON')
MKFS_EXT3 = 'mkfs.ext3 -q -F -L %(fs_label)s %(target)s'


@pytest.fixture
def context(db):
    return nova_context.get_admin_context()


@pytest.fixture
def flat(conf):
    """Flat disks: raw, so blkid reads the filesystem in the disk itself.
    """
    conf.config(group='libvirt', images_type='flat')
    return conf


def create_instance(context, guest_format=None, size_gb=1, root=False,
                    image_id=None):
    """An instance with one blank ephemeral mapping (and a root one)."""
    instance = objects.Instance(
        context, uuid=uuidutils.generate_uuid(), image_ref=image_id,
        root_gb=1, ephemeral_gb=size_gb, swap=0)
    instance.create()
    mappings = [dict(source_type='blank', destination_type='local',
                     boot_index=-1, guest_format=guest_format,
                     volume_size=size_gb)]
    if root:
        mappings.insert(0, dict(source_type='image', destination_type='local',
                                boot_index=0, image_id=image_id))
    for values in mappings:
        objects.BlockDeviceMapping(context, instance_uuid=instance.uuid,
                                   **values).create()
    return instance, objects.BlockDeviceMappingList.get_by_instance_uuid(
        context, instance.uuid)


def recorded(context, instance):
    return [bdm.driver_info for bdm in
            objects.BlockDeviceMappingList.get_by_instance_uuid(
                context, instance.uuid)]


def blkid_label(path):
    return subprocess.run(
        ['blkid', '-p', '-o', 'value', '-s', 'LABEL', path],
        capture_output=True, text=True).stdout.strip()


def upstream_extension(virt_mkfs, default_format=None, os_type=None):
    """Nova 34.0.0's own template suffix for these settings."""
    child = textwrap.dedent('''
        import sys
        import nova.privsep.fs as fs
        virt_mkfs, default_format, os_type = eval(sys.argv[1])
        for entry in virt_mkfs:
            os_t, command = entry.split('=', 1)
            fs.load_mkfs_command(os_t, command)
        os_type = fs.get_fs_type_for_os_type(os_type)
        print(fs.get_file_extension_for_os_type(os_type, default_format))
    ''')
    out = subprocess.run(
        [UPSTREAM_PYTHON, '-P', '-c', child,
         repr((virt_mkfs, default_format, os_type))],
        env=dict(os.environ, OS_NOVA_DISABLE_EVENTLET_PATCHING='1'),
        capture_output=True, text=True, check=True, cwd='/')
    return out.stdout.strip()


def test_default_filesystem_is_vfat(flat, context, cache):
    instance, bdms = create_instance(context)
    [disk] = disk_manager.DiskManager(cache=cache).create_local_disks(
        context, instance, None, bdms)
    assert disk.record.cache_name == 'ephemeral_1_vfat'
    assert helpers.blkid_type(disk.backend.path) == 'vfat'


def test_default_ephemeral_format_and_guest_format(flat, context, cache):
    flat.config(default_ephemeral_format='ext3')
    instance, bdms = create_instance(context)
    [disk] = disk_manager.DiskManager(cache=cache).create_local_disks(
        context, instance, None, bdms)
    assert helpers.blkid_type(disk.backend.path) == 'ext3'
    instance, bdms = create_instance(context, guest_format='ext2')
    [disk] = disk_manager.DiskManager(cache=cache).create_local_disks(
        context, instance, None, bdms)
    assert (disk.record.cache_name, helpers.blkid_type(
        disk.backend.path)) == ('ephemeral_1_ext2', 'ext2')


def test_virt_mkfs_command_makes_the_disk(flat, context, cache):
    # Upstream's test_create_ephemeral_specified_fs / the mkfs command
    # scenarios: the command wins over guest_format, and its template has
    # a name of its own.
    flat.config(virt_mkfs=['default=' + MKFS_EXT3])
    instance, bdms = create_instance(context, guest_format='vfat')
    [disk] = disk_manager.DiskManager(cache=cache).create_local_disks(
        context, instance, None, bdms)
    digest = hashlib.md5(MKFS_EXT3.encode()).hexdigest()[:7]
    assert disk.record.cache_name == 'ephemeral_1_' + digest
    assert helpers.blkid_type(disk.backend.path) == 'ext3'
    assert blkid_label(disk.backend.path) == 'ephemeral0'
    assert disk.record.size == units.Gi


@pytest.mark.skipif(not UPSTREAM_PYTHON,
                    reason='NOVA_TEST_UPSTREAM_PYTHON not set: run under '
                           'tools/with-services.sh')
def test_template_name_is_upstreams_for_a_command(flat, context, cache):
    flat.config(virt_mkfs=['default=' + MKFS_EXT3])
    instance, bdms = create_instance(context)
    [disk] = disk_manager.DiskManager(cache=cache).create_local_disks(
        context, instance, None, bdms)
    assert disk.record.cache_name == 'ephemeral_1_' + upstream_extension(
        ['default=' + MKFS_EXT3])


@pytest.mark.parametrize('images_type', ['flat', 'qcow2'])
def test_encryption_off_lvm_is_refused_before_recording(
        conf, context, cache, images_type):
    conf.config(group='libvirt', images_type=images_type)
    conf.config(group='ephemeral_storage_encryption', enabled=True)
    instance, bdms = create_instance(context)
    with pytest.raises(exception.DiskPlanningFailed,
                       match='images_type = lvm'):
        disk_manager.DiskManager(cache=cache).create_local_disks(
            context, instance, None, bdms)
    assert recorded(context, instance) == [None]
    assert not os.path.exists(os.path.join(CONF.instances_path,
                                           instance.uuid))


def test_encrypted_lvm_is_refused_where_dmcrypt_is_missing(
        conf, context, cache, image_service, lvm):
    conf.config(group='libvirt', images_type='lvm',
                images_volume_group=lvm.vg)
    conf.config(group='ephemeral_storage_encryption', enabled=True)
    image_id = image_service.ids['raw']
    instance, bdms = create_instance(context, root=True, image_id=image_id)
    meta = image_service.get(context, image_id)
    available, reason = ephemeral_crypt.probe_dmcrypt()
    # This kind of host has no device-mapper: planning refuses. A host
    # with dm-crypt records the disks' encryption, which Lvm then refuses
    # to serve (the mapping is not opened yet): before the save too.
    expected = (exception.BackendUnavailable if available else
                ephemeral_crypt.EphemeralEncryptionUnavailable)
    with pytest.raises(expected) as e:
        disk_manager.DiskManager(cache=cache).create_local_disks(
            context, instance, meta, bdms)
    assert instance.uuid in str(e.value)
    if not available:
        assert reason in str(e.value)
    assert recorded(context, instance) == [None, None]
    assert not [lv for lv in storage_lvm.volumes(lvm.vg)
                if lv.startswith(instance.uuid)]
    assert helpers.files_under(cache.base_dir) == []


def test_an_encrypted_record_is_never_made_in_clear(conf, cache, lvm):
    # A record that says encrypted (written where dm-crypt was, or by a
    # later version) on this host: the Lvm backend refuses it before any
    # volume exists, whatever the host's answer.
    instance = helpers.Instance()
    record = objects.LibvirtDiskMetadata(
        backend='lvm', format='raw', size=16 * units.Mi,
        disk_name='disk.swap', cache_name='swap_16', volume_group=lvm.vg,
        volume_name=instance.uuid + '_disk.swap',
        encryption='dmcrypt-plain', encryption_cipher='aes-xts-plain64',
        encryption_key_size=512)
    record.validate()
    disk = backends.backend_for(instance, record, cache=cache)
    with pytest.raises((ephemeral_crypt.EphemeralEncryptionUnavailable,
                        exception.BackendUnavailable)) as e:
        disk.check_available()
    assert 'disk.swap' in str(e.value) and instance.uuid in str(e.value)
    assert not disk.exists()
    assert not [lv for lv in storage_lvm.volumes(lvm.vg)
                if lv.startswith(instance.uuid)]

"""Records for the Lvm volumes that real Nova 34.0.0 made.

Upstream's own ``LibvirtDriver._create_image`` (``images_type = lvm``,
``images_volume_group`` = the test volume group of tools/services/lvm.sh)
creates an instance's root volume from an image, its ephemeral volumes
(vfat, ext4) and its swap volume, with lvcreate, qemu-img convert, mkfs
and mkswap, all for real. This kernel has no device-mapper, so no volume
can be activated and ``/dev/<vg>/<lv>`` never appears; the one stand-in:
in upstream's process, right after its lvcreate, ``/dev/<vg>/<lv>``
becomes a link to a loop device over exactly the volume's extents on the
PV, as udev would link the device-mapper device (tools/upstream/
drive.emulate_lvm_devices, lvm_devices.py). Upstream then writes through
that path to where LVM put the volume, and this project reads the same
extents through the harness's loop devices (tests/functional/
lvm_harness.py).

Then records are inferred lazily (the DiskManager's first touch) and in
bulk (``nova-manage libvirt record_disks``): each names
the volume and its group and has the size ``qemu-img info -f raw``
reports on the volume's device; a volume of the wrong size and a missing
one are refused with their reason; destroying the recorded instance wipes
(volume_clear) and removes every volume.
"""

import os
import subprocess
import types

from oslo_utils import units
from oslo_utils import uuidutils
import pytest

from nova import exception
from nova.virt.libvirt.imagebackend import manager as disk_manager
from nova.virt.libvirt.storage import lvm
from tests.functional import helpers as func_helpers
from tests.functional import lvm_harness
from tests.functional.virt.libvirt import helpers as libvirt_helpers
from tests.functional.virt.libvirt.imagebackend import nova34_disks

pytestmark = pytest.mark.usefixtures('upstream')

# No guest_format and no os_type: upstream's default filesystem, vfat.
VFAT = {'size': 1, 'guest_format': None}
EXT4 = {'size': 1, 'guest_format': 'ext4'}


@pytest.fixture
def vg(conf, lvm_vg):
    """The test volume group as this node's ``images_volume_group``.

    Afterwards no volume upstream made is left, nor its loop device, nor
    its ``/dev/<vg>/<lv>`` link or ``/dev/<vg>``, whatever the test did.
    """
    conf.config(group='libvirt', images_type='lvm',
                images_volume_group=lvm_vg.vg)
    made = []
    yield types.SimpleNamespace(name=lvm_vg.vg, aliases=lvm_vg.aliases,
                                made=made)
    lvm_harness.remove_volumes(lvm_vg.vg, [
        lv for lv in lvm.volumes(lvm_vg.vg)
        if any(lv.startswith(uuid + '_') for uuid in made)])
    links = os.path.join('/dev', lvm_vg.vg)
    for lv in (os.listdir(links) if os.path.isdir(links) else ()):
        lvm_harness.lvm_devices.unlink(lvm_vg.vg, lv)
    # (lvm_vg detaches every loop device over the PV after this.)
    assert not os.path.exists(links)


def make_upstream_lvm_instance(context, vg, nova34_image_files, root_gb,
                               ephemerals, swap_mb=64):
    """Volumes made by Nova 34.0.0's _create_image with images_type lvm,
    and this project's rows for them (no records).

    :returns: (Instance, {disk name: upstream's path of its volume}).
    """
    uuid = uuidutils.generate_uuid()
    image_id = uuidutils.generate_uuid()
    vg.made.append(uuid)
    made = nova34_disks.run_upstream({
        'instances_path': os.path.abspath(nova34_disks.CONF.instances_path),
        'images_type': 'lvm', 'use_cow_images': False,
        'force_raw_images': True, 'volume_group': vg.name,
        'pv': os.environ[lvm_harness.ENV_PV],
        'image': nova34_image_files['qcow2'], 'disk_format': 'qcow2',
        'image_id': image_id, 'uuid': uuid, 'root_gb': root_gb,
        'ephemerals': [dict(e) for e in ephemerals], 'swap_mb': swap_mb,
        'os_type': None})
    instance = nova34_disks.create_instance_rows(context, uuid, image_id,
                                                 root_gb, ephemerals, swap_mb)
    return instance, made['disks']


def volume_names(instance, count):
    names = ['disk'] + ['disk.eph%d' % i for i in range(count)]
    return names + ['disk.swap']


def assert_records_match_volumes(context, vg, instance, names, root_size):
    records = libvirt_helpers.records(context, instance)
    assert sorted(records) == sorted(names)
    volumes = lvm.volumes(vg.name)
    for name, record in records.items():
        assert (record.backend, record.format) == ('lvm', 'raw')
        assert record.volume_group == vg.name
        assert record.volume_name == '%s_%s' % (instance.uuid, name)
        device = vg.aliases.device_path(vg.name, record.volume_name)
        info = func_helpers.qemu_info(device, 'raw')
        assert info['virtual-size'] == record.size
        assert volumes[record.volume_name] == record.size
    assert records['disk'].size == root_size
    assert records['disk'].image_id == instance.image_ref
    assert records['disk.swap'].size == 64 * units.Mi
    for name in names:
        if name.startswith('disk.eph'):
            assert records[name].size == units.Gi
    return records


def blkid_type(offset, length):
    """The filesystem or swap signature blkid finds at that range of the
    PV."""
    return subprocess.run(
        ['blkid', '-p', '-o', 'value', '-s', 'TYPE', '-O', str(offset),
         '-S', str(length), os.environ[lvm_harness.ENV_PV]],
        capture_output=True, text=True).stdout.strip()


def test_first_touch_records_then_destroy_wipes_and_removes(
        conf, context, nova34_image_files, vg, driver):
    instance, disks = make_upstream_lvm_instance(
        context, vg, nova34_image_files, root_gb=1, ephemerals=(VFAT, EXT4))
    names = volume_names(instance, 2)
    assert disks == {n: '/dev/%s/%s_%s' % (vg.name, instance.uuid, n)
                     for n in names}
    # Upstream wrote where LVM put each volume: the image on the root
    # volume, the filesystems and the swap signature on the others. Read
    # on the PV itself, where the volumes' extents are.
    extents = {n: vg.aliases.extents(vg.name, '%s_%s' % (instance.uuid, n))
               for n in names}
    assert vg.aliases.read(extents['disk'][0], 8) == b'nova' * 2
    assert [blkid_type(*extents[n]) for n in names[1:]] == [
        'vfat', 'ext4', 'swap']

    manager = disk_manager.DiskManager()
    disks = manager.local_disks(
        instance, nova34_disks.bdms_of(context, instance))
    assert [d.disk_name for d in disks] == names
    assert_records_match_volumes(context, vg, instance, names, units.Gi)
    for disk in disks:
        disk.backend.verify()

    # Destroy removes every volume, each wiped first (volume_clear zero
    # over its first MiB): the PV's bytes there are zeros afterwards.
    conf.config(group='libvirt', volume_clear='zero', volume_clear_size=1)
    driver.destroy(context, instance)
    assert not [lv for lv in lvm.volumes(vg.name)
                if lv.startswith(instance.uuid)]
    for name, (offset, _length) in extents.items():
        assert vg.aliases.read(offset, units.Mi) == bytes(units.Mi), name


def test_record_disks_records_volumes_in_bulk(conf, context,
                                              nova34_image_files, vg,
                                              tmp_path):
    # root_gb 0: the root volume is the image's size, as upstream made it.
    instance, _ = make_upstream_lvm_instance(
        context, vg, nova34_image_files, root_gb=0, ephemerals=(EXT4,))
    names = volume_names(instance, 1)
    result = manage(tmp_path, vg, 'libvirt', 'record_disks', '--host',
                    'legacy-host')
    assert result.returncode == 0, result.stderr
    assert '| recorded         | 3     |' in result.stdout
    assert_records_match_volumes(context, vg, instance, names,
                                 libvirt_helpers.IMAGE_VIRTUAL_SIZE)
    result = manage(tmp_path, vg, 'libvirt', 'record_disks', '--host',
                    'legacy-host')
    assert result.returncode == 0, result.stderr
    assert '| already recorded | 3     |' in result.stdout


def test_wrong_size_and_missing_volumes_are_refused(
        conf, context, nova34_image_files, vg, tmp_path):
    instance, _ = make_upstream_lvm_instance(
        context, vg, nova34_image_files, root_gb=0, ephemerals=(VFAT,))
    swap = '%s_disk.swap' % instance.uuid
    eph = '%s_disk.eph0' % instance.uuid
    # The swap volume shrunk by an extent; the ephemeral volume is gone.
    subprocess.run(['lvresize', '-q', '-f', '-y', '-L', '60m',
                    '%s/%s' % (vg.name, swap)], check=True,
                   capture_output=True)
    lvm.remove_volume(vg.name, eph)

    result = manage(tmp_path, vg, 'libvirt', 'record_disks', '--host',
                    'legacy-host')
    assert result.returncode != 0
    assert ('its virtual size as raw is %d bytes, the flavor says %d' % (
        60 * units.Mi, 64 * units.Mi)) in result.stdout
    # The first ephemeral could be Nova 34's disk.eph0 or the older
    # disk.local: neither volume exists.
    assert 'no disk disk.eph0 or disk.local on lvm storage' in result.stdout
    assert '| refused          | 2     |' in result.stdout

    # First touch: the first disk refused is the error, naming it.
    with pytest.raises(exception.DiskLayoutNotInferred,
                       match='no disk disk.eph0 or disk.local') as e:
        disk_manager.DiskManager().local_disks(
            instance, nova34_disks.bdms_of(context, instance))
    assert e.value.kwargs['instance_uuid'] == instance.uuid
    assert e.value.kwargs['disk_name'] == '/dev/vdb'
    assert 'disk.swap' not in libvirt_helpers.records(context, instance)
    assert 'disk.eph0' not in libvirt_helpers.records(context, instance)


def manage(tmp_path, vg, *args):
    """nova-manage in its own process, with this node's volume group; it
    reaches volumes by ``/dev/<vg>/<lv>``, the links upstream's process
    left (see the module's docstring)."""
    cmd = nova34_disks.manage_command(tmp_path, *args)
    conf_file = cmd[cmd.index('--config-file') + 1]
    with open(conf_file) as f:
        text = f.read()
    with open(conf_file, 'w') as f:
        f.write(text.replace('[libvirt]\n', '[libvirt]\nimages_volume_group'
                             ' = %s\n' % vg.name))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)

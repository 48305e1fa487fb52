"""legacy.infer_disks on Flat raw disks laid out as Nova 34 leaves them
(files made here: raw disks need no qemu-img), and what it refuses."""

import json
import os

from oslo_utils import units
from oslo_utils import uuidutils
import pytest

import nova.conf
from nova import exception
from nova import objects
from nova.virt.libvirt.imagebackend import legacy
from tests import fixtures

CONF = nova.conf.CONF


@pytest.fixture
def instances_path(tmp_path):
    conf = fixtures.ConfOverrides()
    conf.config(instances_path=str(tmp_path / 'instances'))
    conf.config(group='libvirt', images_type='flat')
    conf.config(use_cow_images=False)
    yield str(tmp_path / 'instances')
    conf.undo()


def _instance(swap=0):
    return objects.Instance(uuid=uuidutils.generate_uuid(),
                            image_ref=uuidutils.generate_uuid(), root_gb=1,
                            ephemeral_gb=1,
                            flavor=objects.Flavor.from_sizes(1, 1, swap))


def _bdm(instance, role, **kw):
    values = dict(id=kw.pop('id', 1), instance_uuid=instance.uuid,
                  destination_type='local', driver_info=None,
                  device_name=None, volume_size=None, guest_format=None,
                  image_id=None)
    if role == 'root':
        values.update(source_type='image', boot_index=0,
                      image_id=instance.image_ref)
    else:
        values.update(source_type='blank', boot_index=-1)
        if role == 'swap':
            values['guest_format'] = 'swap'
    values.update(kw)
    return objects.BlockDeviceMapping(**values)


def _disk(instances_path, instance, name, size=units.Gi, head=b''):
    inst_dir = os.path.join(instances_path, instance.uuid)
    os.makedirs(inst_dir, exist_ok=True)
    path = os.path.join(inst_dir, name)
    with open(path, 'wb') as f:
        f.write(head)
        f.truncate(size)
    return path


def _disk_info(instances_path, instance, text):
    with open(os.path.join(instances_path, instance.uuid, 'disk.info'),
              'w') as f:
        f.write(text)


def _infer(instance, bdms, **kw):
    return legacy.infer_disks(instance, bdms, **kw)


def test_no_disk_info_and_no_magic_is_raw(instances_path):
    instance = _instance()
    _disk(instances_path, instance, 'disk', head=b'\xeb\x63\x90')
    [result] = _infer(instance, [_bdm(instance, 'root')])
    assert result.record.format == 'raw'
    assert result.record.size == units.Gi
    assert result.record.image_id == instance.image_ref


@pytest.mark.parametrize('text, reason', [
    ('{"/a/%(uuid)s/disk": "vmdk"}', "format is 'vmdk'"),
    ('[1, 2]', 'not an object of path -> format'),
    ('{"/a/%(uuid)s/disk": 7}', 'not an object of path -> format'),
    ('{"/a/%(uuid)s/disk": "raw", "/b/%(uuid)s/disk": "qcow2"}',
     'more than one format'),
    ('x' * (legacy.DISK_INFO_MAX_BYTES + 1), 'larger than'),
])
def test_bad_disk_info_is_refused(instances_path, text, reason):
    instance = _instance()
    _disk(instances_path, instance, 'disk')
    _disk_info(instances_path, instance, text % {'uuid': instance.uuid}
               if '%(uuid)s' in text else text)
    [result] = _infer(instance, [_bdm(instance, 'root')])
    assert result.record is None
    assert reason in result.reason
    assert not result.ambiguous


def test_disk_info_that_is_a_link_is_refused(instances_path, tmp_path):
    instance = _instance()
    _disk(instances_path, instance, 'disk')
    target = tmp_path / 'elsewhere'
    target.write_text(json.dumps({'x': 'raw'}))
    os.symlink(target, os.path.join(instances_path, instance.uuid,
                                    'disk.info'))
    [result] = _infer(instance, [_bdm(instance, 'root')])
    assert 'cannot be opened' in result.reason


def test_disk_info_in_an_instance_directory_that_is_a_link_is_refused(
        instances_path, tmp_path):
    """The instance directory is opened without following a link too: a
    disk.info reached through a planted directory link is never read."""
    instance = _instance()
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir(mode=0o700)
    (elsewhere / 'disk').write_bytes(b'')
    (elsewhere / 'disk.info').write_text(json.dumps(
        {str(elsewhere / 'disk'): 'raw'}))
    os.makedirs(instances_path)
    os.symlink(elsewhere, os.path.join(instances_path, instance.uuid))
    [result] = _infer(instance, [_bdm(instance, 'root')])
    assert result.record is None
    assert 'disk.info cannot be opened' in result.reason, result.reason


def test_a_disk_that_is_a_link_is_refused(instances_path, tmp_path):
    instance = _instance()
    target = tmp_path / 'host-file'
    target.write_bytes(b'QFI\xfb' + b'\0' * 100)
    os.makedirs(os.path.join(instances_path, instance.uuid))
    os.symlink(target, os.path.join(instances_path, instance.uuid, 'disk'))
    [result] = _infer(instance, [_bdm(instance, 'root')])
    assert result.record is None
    assert 'symbolic link' in result.reason


def test_size_other_than_the_flavor_is_refused(instances_path):
    instance = _instance()
    _disk(instances_path, instance, 'disk', size=2 * units.Gi)
    [result] = _infer(instance, [_bdm(instance, 'root')])
    assert result.reason == ('its virtual size as raw is %d bytes, the '
                             'flavor says %d' % (2 * units.Gi, units.Gi))


def test_ephemeral_names_follow_upstream(instances_path):
    instance = _instance(swap=64)
    _disk(instances_path, instance, 'disk')
    _disk(instances_path, instance, 'disk.local')
    _disk(instances_path, instance, 'disk.eph1')
    _disk(instances_path, instance, 'disk.swap', size=64 * units.Mi)
    bdms = [_bdm(instance, 'root', id=1), _bdm(instance, 'eph', id=2),
            _bdm(instance, 'eph', id=3), _bdm(instance, 'swap', id=4)]
    results = _infer(instance, bdms)
    assert [r.disk_name for r in results] == ['disk', 'disk.local',
                                              'disk.eph1', 'disk.swap']
    assert all(r.recorded for r in results)
    assert results[3].record.cache_name == 'swap_64'
    # A flat copy of a template keeps no trace of which one it was.
    assert results[1].record.cache_name is None


def test_two_candidate_names_are_refused(instances_path):
    instance = _instance()
    _disk(instances_path, instance, 'disk.local')
    _disk(instances_path, instance, 'disk.eph0')
    [result] = _infer(instance, [_bdm(instance, 'eph',
                                      device_name='/dev/vdb')])
    assert result.disk_name == '/dev/vdb'
    assert 'disk.eph0 and disk.local both exist' in result.reason


def test_swap_size_comes_from_the_mapping_first():
    instance = _instance(swap=64)
    bdm = _bdm(instance, 'swap', volume_size=32)
    assert legacy.swap_mb(instance, bdm) == 32
    bdm.volume_size = None
    assert legacy.swap_mb(instance, bdm) == 64


def test_stated_format_must_be_raw_or_qcow2(instances_path):
    instance = _instance()
    with pytest.raises(exception.InvalidInput, match="'vmdk'"):
        _infer(instance, [_bdm(instance, 'root')], formats={'disk': 'vmdk'})

"""Records for disks that real Nova 34.0.0 made, inferred lazily and in bulk.

Each case lets upstream's own ``LibvirtDriver._create_image`` make an
instance's root disk, two ephemerals (the default filesystem, vfat, and
ext4) and swap under one layout configuration, gives this project's
database the instance's rows without records, and then touches the disks:
every record must equal what ``qemu-img info -f <format>`` reports.
"""

import hashlib
import io
import os

import pytest

from nova.cmd import manage_libvirt
from nova.virt.libvirt.imagebackend import manager as disk_manager
from tests.functional.virt.libvirt import helpers as libvirt_helpers
from tests.functional.virt.libvirt.imagebackend import nova34_disks

EPHEMERALS = ({'size': 1, 'guest_format': None},
              {'size': 2, 'guest_format': 'ext4'})

#: (layout, image format) -> the root disk's (backend, format,
#: backing_format) Nova 34 made and the record must say.
CASES = {
    ('flat-forceraw', 'raw'): ('flat', 'raw', None),
    ('flat-forceraw', 'qcow2'): ('flat', 'raw', None),
    ('flat-keep', 'qcow2'): ('flat', 'qcow2', None),
    ('qcow2-forceraw', 'raw'): ('qcow2', 'qcow2', 'raw'),
    ('qcow2-forceraw', 'qcow2'): ('qcow2', 'qcow2', 'raw'),
    ('qcow2-keep', 'raw'): ('qcow2', 'qcow2', 'raw'),
    ('qcow2-keep', 'qcow2'): ('qcow2', 'qcow2', 'qcow2'),
}

pytestmark = pytest.mark.usefixtures('upstream')


def _check_instance(context, instance, root):
    records = libvirt_helpers.records(context, instance)
    assert sorted(records) == ['disk', 'disk.eph0', 'disk.eph1',
                               'disk.swap']
    backend, fmt, backing_format = root
    disk = records['disk']
    assert (disk.backend, disk.format, disk.backing_format) == root
    assert disk.image_id == instance.image_ref
    assert disk.size == instance.root_gb * 1024 ** 3
    for name, size in (('disk.eph0', 1), ('disk.eph1', 2)):
        assert records[name].size == size * 1024 ** 3
    assert records['disk.swap'].size == 64 * 1024 ** 2
    for record in records.values():
        assert record.backend == backend
        nova34_disks.assert_record_matches_storage(instance, record)
    if backend == 'qcow2':
        # Each template is named as upstream named it in _base, and each
        # overlay sits on the file Nova 34 made, adopted.
        assert records['disk.swap'].cache_name == 'swap_64'
        assert records['disk.eph0'].cache_name.startswith('ephemeral_1_')
        assert records['disk.eph1'].cache_name.startswith('ephemeral_2_')
        for record in records.values():
            assert record.base_name == (record.cache_name or
                                        _sha1(instance.image_ref))
    else:
        assert records['disk.swap'].cache_name == 'swap_64'
    return records


@pytest.mark.parametrize('case', sorted(CASES), ids='-'.join)
def test_first_touch_records_every_disk(conf, context, nova34_image_files,
                                        case):
    layout, image_format = case
    nova34_disks.configure(conf, layout)
    instance, made = nova34_disks.make_upstream_instance(
        context, layout, nova34_image_files, image_format,
        ephemerals=EPHEMERALS)
    assert sorted(made['disks']) == ['disk', 'disk.eph0', 'disk.eph1',
                                     'disk.swap']
    manager = disk_manager.DiskManager()
    bdms = nova34_disks.bdms_of(context, instance)
    disks = manager.local_disks(instance, bdms)
    assert [d.disk_name for d in disks] == ['disk', 'disk.eph0',
                                            'disk.eph1', 'disk.swap']
    # The caller's mappings agree with the database now.
    assert all(b.driver_info is not None for b in bdms)
    records = _check_instance(context, instance, CASES[case])
    # Recorded once: a second touch infers nothing and writes nothing.
    before = {b.id: b.updated_at for b in nova34_disks.bdms_of(context,
                                                               instance)}
    manager.local_disks(instance, nova34_disks.bdms_of(context, instance))
    assert before == {b.id: b.updated_at
                      for b in nova34_disks.bdms_of(context, instance)}
    # Every disk is what its record says (what a boot checks).
    for disk in disks:
        disk.backend.verify()
    assert _texts(libvirt_helpers.records(context, instance)) == _texts(
        records)


def _sha1(text):
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def _texts(records):
    return {name: r.to_driver_info() for name, r in records.items()}


def test_record_disks_records_a_host_in_bulk(conf, context, nova34_image_files,
                                             tmp_path):
    instances = []
    for layout, image_format in (('flat-forceraw', 'qcow2'),
                                 ('flat-keep', 'qcow2')):
        nova34_disks.configure(conf, layout)
        instance, _ = nova34_disks.make_upstream_instance(
            context, layout, nova34_image_files, image_format,
            ephemerals=EPHEMERALS)
        instances.append((instance, CASES[layout, image_format]))
    # A node's layout options are what they are now: Flat, either way.
    result = nova34_disks.manage(tmp_path, 'libvirt', 'record_disks', '--host',
                                 'legacy-host')
    assert result.returncode == 0, result.stderr
    assert ('record_disks: 2/2 instances, 8 disks recorded, 0 refused' in
            result.stderr)
    assert '| recorded         | 8     |' in result.stdout
    for instance, root in instances:
        _check_instance(context, instance, root)
    # Idempotent: nothing left to record, nothing written again.
    before = {b.id: b.updated_at for i, _ in instances
              for b in nova34_disks.bdms_of(context, i)}
    result = nova34_disks.manage(tmp_path, 'libvirt', 'record_disks', '--host',
                                 'legacy-host')
    assert result.returncode == 0, result.stderr
    assert '| already recorded | 8     |' in result.stdout
    assert before == {b.id: b.updated_at for i, _ in instances
                      for b in nova34_disks.bdms_of(context, i)}


def _two_instances_of_three_disks(conf, context, nova34_image_files):
    nova34_disks.configure(conf, 'qcow2-forceraw')
    return [nova34_disks.make_upstream_instance(
        context, 'qcow2-forceraw', nova34_image_files, 'raw',
        ephemerals=EPHEMERALS[:1])[0] for _ in range(2)]


def test_max_count_stops_and_the_next_run_completes(
        conf, context, nova34_image_files, tmp_path):
    instances = _two_instances_of_three_disks(conf, context,
                                              nova34_image_files)
    # 3 disks each: a budget of 4 records the first instance only (an
    # instance's disks go together).
    result = nova34_disks.manage(tmp_path, 'libvirt', 'record_disks', '--host',
                                 'legacy-host', '--max-count', '4')
    assert result.returncode == 1, result.stderr
    assert 'left for another run' in result.stdout
    counts = sorted(len(libvirt_helpers.records(context, i))
                    for i in instances)
    assert counts == [0, 3]
    result = nova34_disks.manage(tmp_path, 'libvirt', 'record_disks', '--host',
                                 'legacy-host')
    assert result.returncode == 0, result.stderr
    assert '| recorded         | 3     |' in result.stdout
    assert '| already recorded | 3     |' in result.stdout
    for instance in instances:
        _check_instance_disks(context, instance, 3)


def test_an_instance_with_more_disks_than_max_count_is_recorded(
        conf, context, nova34_image_files, tmp_path):
    # 3 disks each, a budget of 2: each run records one instance whole
    # (its disks go together), and a run makes progress whatever N is.
    instances = _two_instances_of_three_disks(conf, context,
                                              nova34_image_files)
    for recorded, status in (([0, 3], 1), ([3, 3], 0)):
        result = nova34_disks.manage(tmp_path, 'libvirt', 'record_disks',
                                     '--host', 'legacy-host',
                                     '--max-count', '2')
        assert result.returncode == status, result.stderr
        assert ('record_disks: 2/2 instances, 3 disks recorded, 0 refused'
                in result.stderr)
        assert sorted(len(libvirt_helpers.records(context, i))
                      for i in instances) == recorded
    for instance in instances:
        _check_instance_disks(context, instance, 3)


def _check_instance_disks(context, instance, count):
    records = libvirt_helpers.records(context, instance)
    assert len(records) == count
    for record in records.values():
        nova34_disks.assert_record_matches_storage(instance, record)


def test_show_disks_before_and_after(conf, context, nova34_image_files):
    nova34_disks.configure(conf, 'qcow2-forceraw')
    instance, _ = nova34_disks.make_upstream_instance(
        context, 'qcow2-forceraw', nova34_image_files, 'qcow2',
        ephemerals=EPHEMERALS[:1])
    bdms = list(nova34_disks.bdms_of(context, instance))
    before = manage_libvirt.describe_disks(instance, bdms)
    assert [d['status'] for d in before] == ['unrecorded'] * 3
    assert [d['disk_name'] for d in before] == ['disk', 'disk.eph0',
                                                'disk.swap']
    for entry in before:
        assert entry['refused'] is None
        assert entry['on_disk']['format'] == 'qcow2'
        assert entry['on_disk']['virtual_size'] == entry['record']['size']
    # show_disks writes nothing: no record, and no base adopted.
    assert libvirt_helpers.records(context, instance) == {}
    assert not [n for n in os.listdir(os.path.join(conf_instances_path(),
                                                   '_base'))
                if n.endswith('.info')]
    out = io.StringIO()
    args = type('Args', (), {'instance': instance.uuid, 'json': False})
    assert manage_libvirt.show_disks(args, out=out) == 0
    assert 'unrecorded' in out.getvalue()
    disk_manager.DiskManager().local_disks(instance, bdms)
    after = manage_libvirt.describe_disks(
        instance, list(nova34_disks.bdms_of(context, instance)))
    assert [d['status'] for d in after] == ['recorded'] * 3
    assert [d['record'] for d in after] == [d['record'] for d in before]
    assert os.path.isdir(os.path.join(conf_instances_path(), instance.uuid))


def conf_instances_path():
    return nova34_disks.CONF.instances_path

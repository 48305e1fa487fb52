"""Spawning an instance whose disks Nova 34.0.0 made (booted again, or
hard rebooted): the disks on storage are adopted (their layout inferred by
legacy.py and recorded), never planned afresh over; a mapping with no disk
on storage is planned and made as new.
"""

import logging
import os

import pytest

from nova import exception
from nova.virt.libvirt.imagebackend import manager as disk_manager
from tests.functional.virt.libvirt import helpers as libvirt_helpers
from tests.functional.virt.libvirt.imagebackend import nova34_disks

pytestmark = pytest.mark.usefixtures('upstream')

MARK = b'written by the guest'
MARK_AT = 32 * 1024 * 1024


def _path(instance, name):
    return os.path.join(nova34_disks.CONF.instances_path, instance.uuid, name)


def _write_mark(path, fmt):
    if fmt == 'raw':
        with open(path, 'r+b') as f:
            f.seek(MARK_AT)
            f.write(MARK)
        return
    nova34_disks.subprocess.run(
        ['qemu-io', '-f', fmt, '-c', 'write -P 0x6e %d 4096' % MARK_AT,
         path], check=True, capture_output=True)


def _read_mark(path, fmt):
    if fmt == 'raw':
        with open(path, 'rb') as f:
            f.seek(MARK_AT)
            return f.read(len(MARK)) == MARK
    return nova34_disks.subprocess.run(
        ['qemu-io', '-f', fmt, '-r', '-c', 'read -P 0x6e %d 4096' % MARK_AT,
         path], capture_output=True, text=True).stdout.count(
             'read 4096/4096') == 1


@pytest.mark.parametrize('layout,image_format,root_format', [
    ('flat-forceraw', 'raw', 'raw'),
    ('qcow2-forceraw', 'qcow2', 'qcow2'),
])
def test_spawn_adopts_disks_on_storage_and_makes_missing_ones(
        conf, context, nova34_image_files, caplog, layout, image_format,
        root_format):
    caplog.set_level(logging.INFO)
    nova34_disks.configure(conf, layout)
    instance, made = nova34_disks.make_upstream_instance(
        context, layout, nova34_image_files, image_format,
        ephemerals=({'size': 1},))
    root = _path(instance, 'disk')
    _write_mark(root, root_format)
    inode = os.stat(root).st_ino
    # Swap was lost (or never made): nothing on storage for its mapping.
    os.unlink(made['disks']['disk.swap'])

    disks = disk_manager.DiskManager().create_local_disks(
        context, instance, None, nova34_disks.bdms_of(context, instance))

    assert [d.disk_name for d in disks] == ['disk', 'disk.eph0',
                                            'disk.swap']
    records = libvirt_helpers.records(context, instance)
    assert sorted(records) == ['disk', 'disk.eph0', 'disk.swap']
    for record in records.values():
        nova34_disks.assert_record_matches_storage(instance, record)
    # The root disk is the one Nova 34 made, guest data and all.
    assert records['disk'].format == root_format
    assert os.stat(root).st_ino == inode
    assert _read_mark(root, root_format)
    # Swap is new, made from the plan.
    assert records['disk.swap'].size == 64 * 1024 * 1024
    assert os.path.exists(made['disks']['disk.swap'])
    assert ('Disks disk, disk.eph0 of instance %s are on storage without '
            'a record' % instance.uuid) in caplog.text
    assert 'Recorded disks disk, disk.eph0, disk.swap' in caplog.text


def test_spawn_refuses_a_disk_on_storage_it_cannot_prove(conf, context,
                                                         nova34_image_files):
    nova34_disks.configure(conf, 'flat-forceraw')
    instance, made = nova34_disks.make_upstream_instance(
        context, 'flat-forceraw', nova34_image_files, 'raw',
        ephemerals=({'size': 1},))
    eph = made['disks']['disk.eph0']
    # Not the flavor's size: its layout cannot be proven.
    os.truncate(eph, 2 * 1024 ** 3)
    before = {name: os.stat(path) for name, path in made['disks'].items()}

    with pytest.raises(exception.DiskLayoutNotInferred) as e:
        disk_manager.DiskManager().create_local_disks(
            context, instance, None, nova34_disks.bdms_of(context, instance))
    assert 'disk.eph0' in str(e.value) and 'flavor' in str(e.value)
    # Nothing recorded, nothing made or changed.
    assert libvirt_helpers.records(context, instance) == {}
    after = {name: os.stat(path) for name, path in made['disks'].items()}
    assert {n: (s.st_ino, s.st_size, s.st_mtime_ns)
            for n, s in before.items()} == {
        n: (s.st_ino, s.st_size, s.st_mtime_ns) for n, s in after.items()}

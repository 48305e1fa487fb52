"""Hostile and broken disks of Nova 34 instances: refused with the reason,
never guessed, and no host file opened."""

import json
import os
import subprocess

import pytest

from nova import exception
from nova.virt.libvirt.imagebackend import manager as disk_manager
from tests.functional.virt.libvirt import helpers as libvirt_helpers
from tests.functional.virt.libvirt.imagebackend import nova34_disks

pytestmark = pytest.mark.usefixtures('upstream')


def _write_guest_qcow2_header(disk_path, backing_file, tmp_path):
    """What a guest can do to its raw disk: write a qcow2 header whose
    backing file is a host file."""
    header = str(tmp_path / 'guest-header.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b',
                    backing_file, '-F', 'raw', header, '1G'], check=True)
    with open(header, 'rb') as src, open(disk_path, 'r+b') as dst:
        dst.write(src.read())


def _root_bdm(context, instance):
    return [b for b in nova34_disks.bdms_of(context, instance)
            if b.boot_index == 0][0]


def _hostile_flat_instance(conf, context, nova34_image_files, tmp_path,
                           secret):
    """A Flat raw root disk by Nova 34 whose guest wrote a qcow2 header
    naming ``secret`` as its backing file.

    :returns: (instance, the disk's path).
    """
    nova34_disks.configure(conf, 'flat-forceraw')
    instance, made = nova34_disks.make_upstream_instance(
        context, 'flat-forceraw', nova34_image_files, 'raw', ephemerals=(),
        swap_mb=0)
    _write_guest_qcow2_header(made['disks']['disk'], secret, tmp_path)
    return instance, made['disks']['disk']


@pytest.fixture
def secret(tmp_path):
    path = str(tmp_path / 'host-secret')
    with open(path, 'w') as f:
        f.write('root:the host secret\n')
    return path


def test_guest_qcow2_header_with_disk_info_is_recorded_raw(
        conf, context, nova34_image_files, tmp_path, secret):
    instance, disk = _hostile_flat_instance(conf, context, nova34_image_files,
                                            tmp_path, secret)
    trace = str(tmp_path / 'strace.log')
    result = nova34_disks.manage(tmp_path, 'libvirt', 'record_disks',
                                 '--instance', instance.uuid, strace_log=trace)
    assert result.returncode == 0, result.stderr
    record = libvirt_helpers.records(context, instance)['disk']
    assert (record.backend, record.format) == ('flat', 'raw')
    nova34_disks.assert_record_matches_storage(instance, record)
    assert nova34_disks.opened(trace, secret) == []
    # The trace did see the process read the instance's files: disk.info
    # (a raw disk's size needs no open).
    assert nova34_disks.opened(trace, os.path.join(os.path.dirname(disk),
                                                   'disk.info'))


def test_guest_qcow2_header_without_disk_info_is_ambiguous(
        conf, context, nova34_image_files, tmp_path, secret):
    instance, disk = _hostile_flat_instance(conf, context, nova34_image_files,
                                            tmp_path, secret)
    os.unlink(os.path.join(os.path.dirname(disk), 'disk.info'))
    traces = [str(tmp_path / ('strace-%d.log' % n)) for n in range(3)]

    # Refused, with why, and nothing recorded.
    result = nova34_disks.manage(tmp_path, 'libvirt', 'record_disks',
                                 '--instance', instance.uuid,
                                 strace_log=traces[0])
    assert result.returncode == 1
    assert '| refused          | 1     |' in result.stdout
    assert 'qcow2 magic' in result.stdout
    assert libvirt_helpers.records(context, instance) == {}
    with pytest.raises(exception.DiskFormatAmbiguous, match='qcow2 magic'):
        disk_manager.DiskManager().get_backend(
            instance, _root_bdm(context, instance))
    assert libvirt_helpers.records(context, instance) == {}

    # show_disks says why too.
    result = nova34_disks.manage(tmp_path, 'libvirt', 'show_disks',
                                 instance.uuid, '--json')
    assert result.returncode == 0, result.stderr
    [entry] = json.loads(result.stdout)['disks']
    assert entry['status'] == 'unrecorded'
    assert 'qcow2 magic' in entry['refused']

    # An operator who says qcow2 is refused: it names a backing file.
    result = nova34_disks.manage(tmp_path, 'libvirt', 'record_disks',
                                 '--instance', instance.uuid, '--disk', 'disk',
                                 '--format', 'qcow2', strace_log=traces[1])
    assert result.returncode == 1
    assert secret in result.stdout
    assert libvirt_helpers.records(context, instance) == {}

    # An operator who says raw is believed.
    result = nova34_disks.manage(tmp_path, 'libvirt', 'record_disks',
                                 '--instance', instance.uuid, '--disk', 'disk',
                                 '--format', 'raw', strace_log=traces[2])
    assert result.returncode == 0, result.stdout
    record = libvirt_helpers.records(context, instance)['disk']
    assert (record.backend, record.format) == ('flat', 'raw')
    # No run opened the host file; the first two read the disk's header
    # (for its magic; with qemu-img -f qcow2).
    for trace in traces:
        assert nova34_disks.opened(trace, secret) == []
    assert nova34_disks.opened(
        traces[0], disk) and nova34_disks.opened(traces[1], disk)

    # --format for a disk recorded already, or a name no unrecorded disk
    # has, is refused: it would not be used.
    for name, words in (('disk', 'recorded already (flat, raw)'),
                        ('no-such-disk', 'is not the name of a disk')):
        result = nova34_disks.manage(tmp_path, 'libvirt', 'record_disks',
                                     '--instance', instance.uuid, '--disk',
                                     name, '--format', 'qcow2')
        assert result.returncode == 2, result.stdout
        assert words in result.stderr.strip().splitlines()[-1]
    assert libvirt_helpers.records(context, instance)[
        'disk'].to_driver_info() == record.to_driver_info()


def test_format_needs_instance_and_disk(conf, context, tmp_path):
    result = nova34_disks.manage(tmp_path, 'libvirt', 'record_disks',
                                 '--format', 'raw')
    assert result.returncode == 2
    assert '--format needs --instance and --disk' in result.stderr


def test_corrupt_disk_info_is_refused(conf, context, nova34_image_files):
    nova34_disks.configure(conf, 'flat-forceraw')
    instance, made = nova34_disks.make_upstream_instance(
        context, 'flat-forceraw', nova34_image_files, 'qcow2',
        ephemerals=({'size': 1},), swap_mb=0)
    with open(os.path.join(os.path.dirname(made['disks']['disk']),
                           'disk.info'), 'w') as f:
        f.write('{"/x/disk": "raw", \n')
    manager = disk_manager.DiskManager()
    with pytest.raises(exception.DiskLayoutNotInferred,
                       match='disk.info is corrupt') as e:
        manager.local_disks(instance, nova34_disks.bdms_of(context, instance))
    assert not isinstance(e.value, exception.DiskFormatAmbiguous)
    assert libvirt_helpers.records(context, instance) == {}


def test_disk_info_that_is_a_link_is_not_followed(conf, context,
                                                  nova34_image_files,
                                                  tmp_path, secret):
    """A disk.info planted as a link to a host file: refused by the
    descriptor that opened it, the host file never opened."""
    nova34_disks.configure(conf, 'flat-forceraw')
    instance, made = nova34_disks.make_upstream_instance(
        context, 'flat-forceraw', nova34_image_files, 'raw', ephemerals=(),
        swap_mb=0)
    disk_info = os.path.join(os.path.dirname(made['disks']['disk']),
                             'disk.info')
    os.unlink(disk_info)
    os.symlink(secret, disk_info)
    trace = str(tmp_path / 'strace.log')
    result = nova34_disks.manage(tmp_path, 'libvirt', 'record_disks',
                                 '--instance', instance.uuid, strace_log=trace)
    assert result.returncode == 1
    assert 'disk.info cannot be opened' in result.stdout
    assert libvirt_helpers.records(context, instance) == {}
    assert nova34_disks.opened(trace, secret) == []
    assert os.path.islink(disk_info)


def test_missing_base_and_absent_disk_are_refused(conf, context,
                                                  nova34_image_files):
    nova34_disks.configure(conf, 'qcow2-forceraw')
    instance, made = nova34_disks.make_upstream_instance(
        context, 'qcow2-forceraw', nova34_image_files, 'raw',
        ephemerals=({'size': 1},), swap_mb=64)
    base_dir = os.path.join(nova34_disks.CONF.instances_path, '_base')
    os.unlink(os.path.join(base_dir, 'swap_64'))
    os.unlink(made['disks']['disk.eph0'])
    manager = disk_manager.DiskManager()
    bdms = list(nova34_disks.bdms_of(context, instance))
    results = {r.disk_name: r for r in manager.record_legacy_disks(
        context, [(instance, bdms)])}
    assert sorted(results) == ['/dev/vdb', 'disk', 'disk.swap']
    assert results['disk'].recorded
    assert results['disk.swap'].reason == 'its base %s is missing' % (
        os.path.join(os.path.abspath(base_dir), 'swap_64'))
    assert results['/dev/vdb'].reason == (
        'no disk disk.eph0 or disk.local on qcow2 storage')
    # What could be proven is recorded, and only that.
    assert sorted(libvirt_helpers.records(context, instance)) == ['disk']
    nova34_disks.assert_record_matches_storage(
        instance, libvirt_helpers.records(context, instance)['disk'])

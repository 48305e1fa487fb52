"""The template functions make what their names say, on real tools."""

import subprocess

from oslo_utils import units
import pytest

from nova import exception
from nova.virt.libvirt import disk_funcs


def _blkid(path, tag):
    return subprocess.run(
        ['blkid', '-p', '-s', tag, '-o', 'value', path],
        capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize('fs_type', disk_funcs.SUPPORTED_FILESYSTEMS)
def test_every_supported_filesystem_is_made(tmp_path, fs_type):
    # xfs refuses filesystems under 300 MiB.
    size = 320 * units.Mi
    target = str(tmp_path / fs_type)
    disk_funcs.make_ephemeral(fs_type, 'ephemeral0')(target, size)
    assert _blkid(target, 'TYPE') == fs_type
    assert _blkid(target, 'LABEL').lower() == 'ephemeral0'
    assert (tmp_path / fs_type).stat().st_size == size


def test_swap_is_made(tmp_path):
    target = str(tmp_path / 'swap')
    disk_funcs.make_swap()(target, 16 * units.Mi)
    assert _blkid(target, 'TYPE') == 'swap'


def test_unknown_filesystem_is_refused_before_anything_is_made(tmp_path):
    target = tmp_path / 'zfs'
    with pytest.raises(exception.InvalidInput, match='zfs'):
        disk_funcs.make_ephemeral('zfs', 'ephemeral0')(str(target),
                                                       units.Mi)
    assert not target.exists()


def test_a_virt_mkfs_command_is_run_with_label_and_target(tmp_path):
    target = str(tmp_path / 'by_command')
    func = disk_funcs.make_ephemeral_by_command(
        'mkfs.ext3 -F -q -L %(fs_label)s %(target)s', 'eph1')
    func(target, 32 * units.Mi)
    assert _blkid(target, 'TYPE') == 'ext3'
    assert _blkid(target, 'LABEL') == 'eph1'


def test_a_bad_virt_mkfs_template_is_refused_before_anything_is_made(
        tmp_path):
    with pytest.raises(exception.InvalidInput, match='device'):
        disk_funcs.make_ephemeral_by_command('mkfs.ext4 %(device)s', 'e')
    assert list(tmp_path.iterdir()) == []

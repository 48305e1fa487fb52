"""snapshot, rescue and the config drive from the main command on the
embedded defaults: no configuration file, only an empty HOME, real
qemu-img, genisoimage, SQLite and libvirt's test driver."""

import json
import os
import subprocess

import pytest

from tests.functional.cmd.runner import CLI
from tests.functional.cmd.runner import make_raw
from tests.functional.cmd.runner import script


class EmbeddedCLI(CLI):
    """nova-libvirt with nothing but a private HOME: no config file."""

    def __init__(self, tmp_path):
        self.home = tmp_path / 'home'
        self.state = self.home / '.local' / 'state' / 'nova-libvirt'
        self.env = dict(os.environ, HOME=str(self.home))

    def command(self, *args, fmt='json'):
        return script() + ['--format', fmt] + list(args)


@pytest.fixture
def cli(tmp_path):
    return EmbeddedCLI(tmp_path)


def same_content(a, a_fmt, b, b_fmt):
    """qemu-img compare, both formats pinned: same guest-visible bytes."""
    return subprocess.run(['qemu-img', 'compare', '-q', '-f', a_fmt, '-F',
                           b_fmt, str(a), str(b)]).returncode == 0


def test_snapshot_then_boot_from_it(cli, tmp_path):
    image = cli.json('image-import', make_raw(tmp_path / 'img.raw'),
                     '--disk-format', 'raw', '--name', 'base')
    vm = cli.json('boot', '--image', image['id'], '--name', 'vm')

    snap = cli.json('snapshot', 'vm', '--name', 'vm-snap')

    # The embedded defaults make qcow2 overlays: the snapshot is qcow2,
    # holding what the guest sees (the overlay and its base, flattened).
    assert snap['name'] == 'vm-snap'
    assert snap['disk_format'] == 'qcow2'
    assert snap['properties']['instance_uuid'] == vm['uuid']
    assert [i['id'] for i in cli.json('image-list')] == sorted(
        [image['id'], snap['id']])
    root = cli.state / 'instances' / vm['uuid'] / 'disk'
    stored = cli.state / 'images' / snap['id'] / 'data'
    assert same_content(stored, 'qcow2', root, 'qcow2')
    # Nothing is left in the snapshots directory.
    assert os.listdir(cli.state / 'instances' / 'snapshots') == []

    copy = cli.json('boot', '--image', snap['id'], '--name', 'copy')
    assert copy['disks'][0]['record']['image_id'] == snap['id']
    # The image is in use: image-delete refuses it until copy is gone.
    assert cli.run('image-delete', snap['id'], check=False).returncode == 1
    cli.run('destroy', 'copy')
    cli.run('destroy', 'vm')
    cli.run('image-delete', snap['id'])


def test_snapshot_errors_are_one_line(cli, tmp_path):
    result = cli.run('snapshot', 'nothing', '--name', 'x', check=False)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    result = cli.run('snapshot', 'nothing', check=False)
    assert result.returncode == 2
    # Failing inside the snapshot: said once, not logged and said again.
    image = cli.json('image-import', make_raw(tmp_path / 'img.raw'),
                     '--disk-format', 'raw')
    cli.json('boot', '--image', image['id'], '--name', 'vm')
    result = cli.run('--libvirt-snapshot_image_format', 'vmdk', 'snapshot',
                     'vm', '--name', 'sv', check=False)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert 'Snapshot sv' in line and 'vmdk' in line
    cli.run('destroy', 'vm')


def records_by_name(shown):
    return {d['disk_name']: d['record'] for d in shown['disks']}


def test_rescue_then_unrescue(cli, tmp_path):
    image = cli.json('image-import', make_raw(tmp_path / 'img.raw'),
                     '--disk-format', 'raw', '--name', 'base')
    rescue_image = cli.json('image-import', make_raw(tmp_path / 'r.raw'),
                            '--disk-format', 'raw', '--name', 'rescue')
    vm = cli.json('boot', '--image', image['id'], '--swap-mb', '64',
                  '--name', 'vm')
    disk_dir = cli.state / 'instances' / vm['uuid']

    rescued = cli.json('rescue', 'vm', '--image', rescue_image['id'])

    assert rescued['vm_state'] == 'rescued'
    assert (disk_dir / 'disk.rescue').is_file()
    assert sorted(os.listdir(disk_dir)) == ['disk', 'disk.rescue',
                                            'disk.swap']
    # show lists the instance's own disks, as recorded, unchanged; the
    # rescue disk is first in the guest (vda), they follow it.
    assert sorted(records_by_name(rescued)) == ['disk', 'disk.swap']
    assert [d['target'] for d in rescued['disks']] == ['vdb', 'vdc']
    # Rescued once only.
    assert cli.run('rescue', 'vm', check=False).returncode == 1

    back = cli.json('unrescue', 'vm')
    assert back['vm_state'] == 'active'
    assert [d['target'] for d in back['disks']] == ['vda', 'vdb']
    assert sorted(os.listdir(disk_dir)) == ['disk', 'disk.swap']
    assert cli.run('unrescue', 'vm', check=False).returncode == 1
    cli.run('destroy', 'vm')
    assert not disk_dir.exists()


def test_boot_with_a_config_drive(cli, tmp_path):
    image = cli.json('image-import', make_raw(tmp_path / 'img.raw'),
                     '--disk-format', 'raw')
    vm = cli.json('boot', '--image', image['id'], '--config-drive')
    drive = cli.state / 'instances' / vm['uuid'] / 'disk.config'
    out = subprocess.run(['isoinfo', '-J', '-i', str(drive), '-x',
                          '/openstack/latest/meta_data.json'],
                         check=True, capture_output=True, text=True).stdout
    assert json.loads(out)['uuid'] == vm['uuid']
    cli.run('destroy', vm['uuid'])
    assert not drive.exists()

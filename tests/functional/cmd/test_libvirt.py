"""nova-libvirt, run as a user runs it: the console script, in a subprocess,
on a private state directory (a config file naming it, or an empty HOME for
the embedded defaults), with real qemu-img, SQLite and libvirt's test
driver."""

import json
import os
import subprocess

import pytest

from tests.functional.cmd.runner import CLI
from tests.functional.cmd.runner import make_qcow2
from tests.functional.cmd.runner import make_raw
from tests.functional.cmd.runner import script as _script

COMMANDS = ('image-import', 'image-list', 'image-delete', 'boot', 'show',
            'list', 'destroy', 'snapshot', 'rescue', 'unrescue',
            'image-cache-cleanup')


@pytest.fixture
def cli(tmp_path):
    return CLI(tmp_path)


def test_help_explains_every_command(cli):
    result = subprocess.run(_script() + ['--help'], capture_output=True,
                            text=True, env=cli.env)
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
    for word in ('--config-file', '--format', 'state_path',
                 'test:///default'):
        assert word in result.stdout
    for command in COMMANDS:
        sub = subprocess.run(_script() + [command, '--help'],
                             capture_output=True, text=True, env=cli.env)
        assert sub.returncode == 0, sub.stderr
        assert sub.stdout.startswith('usage: nova-libvirt %s' % command)
    boot_help = subprocess.run(_script() + ['boot', '--help'],
                               capture_output=True, text=True,
                               env=cli.env).stdout
    for arg in ('--image', '--root-gb', '--ephemeral-gb', '--swap-mb',
                '--name'):
        assert arg in boot_help


def test_import_boot_show_list_destroy(cli, tmp_path):
    image = cli.json('image-import', make_qcow2(tmp_path / 'img.qcow2'),
                     '--disk-format', 'qcow2', '--name', 'cirros')
    assert image['disk_format'] == 'qcow2'
    assert image['name'] == 'cirros'
    assert image['virtual_size'] == 1 << 30
    assert [i['id'] for i in cli.json('image-list')] == [image['id']]
    # Everything landed in the one state directory.
    assert (cli.state / 'nova.sqlite').is_file()
    assert (cli.state / 'images' / image['id']).is_dir()

    booted = cli.json('boot', '--image', image['id'], '--root-gb', '2',
                      '--ephemeral-gb', '1', '--swap-mb', '64',
                      '--name', 'web')
    uuid = booted['uuid']
    assert booted['vm_state'] == 'active'
    assert booted['power_state'] == 'running'
    assert booted['domain_state'] == 'running'
    assert [(d['target'], d['disk_name']) for d in booted['disks']] == [
        ('vda', 'disk'), ('vdb', 'disk.local'), ('vdc', 'disk.swap')]

    shown = cli.json('show', uuid)
    assert shown['name'] == 'web'
    assert shown['power_state'] == 'running'
    # test:///default forgets the domain when boot's process ends.
    assert shown['domain_state'] == 'not defined'
    assert 'note' in shown
    sizes = {'disk': 2 << 30, 'disk.local': 1 << 30, 'disk.swap': 64 << 20}
    for disk in shown['disks']:
        record, on_disk = disk['record'], disk['on_disk']
        # Embedded defaults: qcow2 overlays over raw bases.
        assert (record['backend'], record['format'],
                record['backing_format']) == ('qcow2', 'qcow2', 'raw')
        assert record['size'] == sizes[disk['disk_name']]
        assert on_disk['format'] == record['format']
        assert on_disk['virtual_size'] == record['size']
        assert on_disk['backing_format'] == record['backing_format']
        assert os.path.isfile(disk['path'])
    assert shown['disks'][0]['record']['image_id'] == image['id']
    assert shown['disks'][1]['record']['cache_name'] == 'ephemeral_1_ext4'
    assert cli.json('show', 'web')['uuid'] == uuid

    table = cli.run('show', uuid, fmt='table').stdout
    assert 'disk.local' in table and 'ephemeral_1_ext4' in table

    listed = cli.json('list')
    assert [(i['uuid'], i['vm_state']) for i in listed] == [(uuid, 'active')]
    assert 'web' in cli.run('list', fmt='table').stdout

    assert cli.json('destroy', uuid)['status'] == 'deleted'
    assert not (cli.state / 'instances' / uuid).exists()
    assert cli.json('list') == []
    gone = cli.run('show', uuid, check=False)
    assert gone.returncode == 1
    assert 'could not be found' in gone.stderr


def test_failed_boot_leaves_instance_in_error_and_names_the_disk(
        cli, tmp_path):
    # A 2 GiB image cannot be the root disk of a 1 GB flavor.
    big = make_qcow2(tmp_path / 'big.qcow2', size='2G')
    image = cli.json('image-import', big, '--disk-format', 'qcow2')
    result = cli.run('boot', '--image', image['id'], '--root-gb', '1',
                     check=False)
    assert result.returncode == 1
    assert 'disk disk of instance' in result.stderr
    assert result.stdout == ''
    [instance] = cli.json('list')
    assert instance['vm_state'] == 'error'
    cli.json('destroy', instance['uuid'])
    assert cli.json('list') == []


def test_embedded_defaults_without_any_configuration(tmp_path):
    home = tmp_path / 'home'
    env = dict(os.environ, HOME=str(home))
    result = subprocess.run(_script() + ['--format', 'json', 'list'],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    state = home / '.local' / 'state' / 'nova-libvirt'
    assert (state / 'nova.sqlite').is_file()
    assert oct(state.stat().st_mode & 0o777) == oct(0o700)


def test_bad_arguments_are_usage_errors(cli):
    result = cli.run('boot', '--image', 'x', '--root-gb', '-1', check=False)
    assert result.returncode == 2
    assert '--root-gb' in result.stderr
    result = cli.run('boot', '--image', '../../etc/passwd', check=False)
    assert result.returncode == 1
    assert 'uuid' in result.stderr


def test_image_cache_cleanup_keeps_what_records_name(tmp_path):
    cli = CLI(tmp_path, '[image_cache]\n'
              'remove_unused_original_minimum_age_seconds = 0\n')
    image = cli.json('image-import', make_qcow2(tmp_path / 'img.qcow2'),
                     '--disk-format', 'qcow2')
    instance = cli.json('boot', '--image', image['id'], '--root-gb', '1',
                        '--ephemeral-gb', '1', '--swap-mb', '16')
    base = cli.state / 'instances' / '_base'
    entries = sorted(os.listdir(base))

    # Every entry is named by a record of the live instance: none goes,
    # however old.
    assert cli.json('image-cache-cleanup') == {'count': 0, 'removed': []}
    assert sorted(os.listdir(base)) == entries

    cli.run('destroy', instance['uuid'])
    removed = cli.json('image-cache-cleanup')
    assert removed['count'] == 3
    assert 'ephemeral_1_ext4.raw' in removed['removed']
    assert 'swap_16.raw' in removed['removed']
    assert os.listdir(base) == []


def test_conventions_of_the_openstack_cli(cli, tmp_path):
    version = subprocess.run(_script() + ['--version'], capture_output=True,
                             text=True, env=cli.env)
    assert version.returncode == 0
    assert version.stdout.strip()[0].isdigit()

    image = cli.json('image-import', make_raw(tmp_path / 'img.raw'),
                     '--disk-format', 'raw', '--name', 'evil\x1b[2Jname')
    upper = image['id'].upper()
    # Output options after the sub-command, columns by key or by title.
    listed = json.loads(cli.run('image-list', '-f', 'json', '-c', 'ID',
                                '-c', 'name', fmt='table').stdout)
    assert listed == [{'id': image['id'], 'name': 'evil\x1b[2Jname'}]
    table = cli.run('image-list', fmt='table').stdout
    assert '\x1b' not in table
    assert 'evil\\x1b[2Jname' in table

    # An upper-case uuid is the same image, and the same instance.
    booted = cli.json('boot', '--image', upper, '--name', 'two\nlines')
    assert booted['image'] == image['id']
    # boot reports what stat says of each disk (qemu-img is show's).
    [disk] = booted['disks']
    assert disk['on_disk']['allocated'] > 0
    assert 'format' not in disk['on_disk']
    assert cli.json('show', booted['uuid'].upper())['uuid'] == booted['uuid']
    rows = cli.run('list', '-c', 'Name', fmt='table').stdout
    assert 'two\\nlines' in rows and 'two\nlines' not in rows
    assert 'UUID' not in rows

    # The image is in use: image-delete refuses it, naming the instance.
    refused = cli.run('image-delete', upper, check=False)
    assert refused.returncode == 1
    assert booted['uuid'] in refused.stderr
    assert [i['id'] for i in cli.json('image-list')] == [image['id']]
    cli.json('destroy', booted['uuid'])
    assert cli.json('image-delete', upper) == {'id': image['id'],
                                               'status': 'deleted'}
    assert cli.json('image-list') == []
    assert not (cli.state / 'images' / image['id']).exists()
    gone = cli.run('image-delete', image['id'], check=False)
    assert gone.returncode == 1 and 'image-list' in gone.stderr


def test_a_ploop_image_is_imported_verified_and_booted(cli, tmp_path):
    ploop = tmp_path / 'root.hds'
    subprocess.run(['qemu-img', 'convert', '-q', '-f', 'raw', '-O',
                    'parallels', make_raw(tmp_path / 'img.raw'),
                    str(ploop)], check=True)
    # Declared as what it is not, either way: refused, nothing stored.
    for path, declared in ((ploop, 'raw'), (tmp_path / 'img.raw', 'ploop')):
        refused = cli.run('image-import', str(path), '--disk-format',
                          declared, check=False)
        assert refused.returncode == 1, refused.stdout
        assert cli.json('image-list') == []

    image = cli.json('image-import', str(ploop), '--disk-format', 'ploop')
    assert image['disk_format'] == 'ploop'
    booted = cli.json('boot', '--image', image['id'])
    [disk] = cli.json('show', booted['uuid'])['disks']
    # Embedded defaults: a qcow2 overlay over the image's raw base.
    assert (disk['record']['backing_format'],
            disk['on_disk']['virtual_size']) == ('raw', 16 << 20)
    cli.json('destroy', booted['uuid'])


def test_empty_image_is_refused(cli, tmp_path):
    empty = tmp_path / 'empty.raw'
    empty.write_bytes(b'')
    result = cli.run('image-import', str(empty), '--disk-format', 'raw',
                     check=False)
    assert result.returncode == 1
    assert '%s is empty' % empty in result.stderr
    assert cli.json('image-list') == []


def test_show_does_not_open_a_fifo_at_a_disk_path(cli, tmp_path):
    image = cli.json('image-import', make_raw(tmp_path / 'img.raw'),
                     '--disk-format', 'raw')
    booted = cli.json('boot', '--image', image['id'])
    [disk] = booted['disks']
    os.unlink(disk['path'])
    os.mkfifo(disk['path'])
    # A reader of the FIFO would wait for a writer forever.
    [shown] = cli.json('show', booted['uuid'])['disks']
    assert 'fifo' in shown['on_disk']['error']
    os.unlink(disk['path'])
    cli.json('destroy', booted['uuid'])

"""Faults and mistakes as a user meets them: each ends in one line on
stderr naming what failed and what to do, exit status 1 (2 for a usage
error), no traceback unless --debug, and nothing left half-made.

Real faults only: a read-only bind mount, an exclusive SQLite lock held
by another process, a size-limited tmpfs filled to the last block, a
closed TCP port, real SIGINT and SIGTERM.
"""

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import time

import pytest

from nova.virt.libvirt.imagebackend import cache as image_cache
from nova.virt import staging
from tests.functional.cmd.runner import assert_one_line_error
from tests.functional.cmd.runner import CLI
from tests.functional.cmd.runner import make_raw
from tests.functional.cmd.runner import script


@pytest.fixture
def cli(tmp_path):
    return CLI(tmp_path)


@contextlib.contextmanager
def mounted(*args):
    """``mount args...``; unmounted (lazily, if busy) afterwards."""
    subprocess.run(['mount'] + list(args), check=True)
    try:
        yield
    finally:
        subprocess.run(['umount', '-l', args[-1]], check=True)


@contextlib.contextmanager
def read_only_view(directory, view):
    """``view``: ``directory`` bind-mounted read-only."""
    view.mkdir()
    with mounted('--bind', str(directory), str(view)):
        subprocess.run(['mount', '-o', 'remount,ro,bind', str(view)],
                       check=True)
        yield view


@contextlib.contextmanager
def sqlite_locked(path):
    """Another process's exclusive lock on the SQLite file ``path``."""
    connection = sqlite3.connect(str(path), isolation_level=None)
    connection.execute('BEGIN EXCLUSIVE')
    try:
        yield
    finally:
        connection.rollback()
        connection.close()


def _closed_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _instance_dirs(cli):
    instances = cli.state / 'instances'
    if not instances.exists():
        return []
    return sorted(n for n in os.listdir(instances)
                  if n not in ('_base', 'locks'))


# --- configuration ---------------------------------------------------------

def test_missing_config_file(cli, tmp_path):
    result = subprocess.run(script() + ['--config-file', str(
        tmp_path / 'nope.conf'), 'list'], capture_output=True, text=True,
        env=cli.env)
    assert_one_line_error(result, 'nope.conf', '--config-file')
    for name in ('nova-libvirt', 'nova-manage'):
        result = subprocess.run(
            script(name) + ['--config-file', str(tmp_path / 'nope.conf')] +
            (['list'] if name == 'nova-libvirt' else ['db', 'version']),
            capture_output=True, text=True, env=cli.env)
        assert_one_line_error(result, 'nope.conf')


def test_config_line_without_equals(cli):
    cli.conf.write_text('[DEFAULT]\nstate_path %s\n' % cli.state)
    line = assert_one_line_error(cli.run('list', check=False),
                                 str(cli.conf), '=')
    assert ':2' in line
    result = subprocess.run(
        script('nova-manage') + ['--config-file', str(cli.conf), 'db',
                                 'version'],
        capture_output=True, text=True, env=cli.env)
    assert_one_line_error(result, str(cli.conf))


def test_debug_adds_the_traceback(cli, tmp_path):
    result = cli.run('--debug', '--database-connection', 'nosuch://x/y',
                     'list', check=False)
    assert result.returncode == 1
    assert 'Traceback' in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        'nova-libvirt: [database] connection nosuch://x/y')


def test_unreachable_postgresql(cli):
    url = 'postgresql+psycopg2://nova:secret@127.0.0.1:%d/nova' % (
        _closed_port())
    for name, args in (('nova-libvirt', ['list']),
                       ('nova-manage', ['db', 'sync'])):
        result = subprocess.run(
            script(name) + ['--config-file', str(cli.conf)] +
            (['--database-connection', url] if name == 'nova-libvirt'
             else []) + args, capture_output=True, text=True,
            env=dict(cli.env, OS_DATABASE__CONNECTION=url))
        line = assert_one_line_error(result, 'cannot connect',
                                     '[database] connection')
        assert 'secret' not in line
        assert '127.0.0.1:' in line


def test_unknown_database_driver(cli):
    line = assert_one_line_error(
        cli.run('--database-connection', 'oracle+nosuch://x/y', 'list',
                check=False),
        '[database] connection', 'oracle+nosuch://x/y')
    assert 'postgresql+psycopg2://' in line
    result = subprocess.run(
        script('nova-manage') + ['--config-file', str(cli.conf), 'db',
                                 'sync'], capture_output=True, text=True,
        env=dict(cli.env, OS_DATABASE__CONNECTION='oracle+nosuch://x/y'))
    assert_one_line_error(result, 'oracle+nosuch://x/y')


def test_state_path_is_a_file(cli, tmp_path):
    cli.state.write_text('not a directory\n')
    assert_one_line_error(cli.run('list', check=False),
                          'state_path %s is not a directory' % cli.state)
    result = subprocess.run(
        script('nova-manage') + ['--config-file', str(cli.conf), 'db',
                                 'sync'],
        capture_output=True, text=True, env=cli.env)
    assert_one_line_error(result, 'state_path %s is not a directory' %
                          cli.state)


def test_database_at_an_unknown_revision(cli):
    cli.json('list')
    with sqlite3.connect(str(cli.state / 'nova.sqlite')) as db:
        db.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    assert_one_line_error(cli.run('list', check=False), 'ffffffffffff',
                          'does not know')
    result = subprocess.run(
        script('nova-manage') + ['--config-file', str(cli.conf), 'db',
                                 'sync'],
        capture_output=True, text=True, env=cli.env)
    assert_one_line_error(result, 'ffffffffffff')


# --- usage errors ----------------------------------------------------------

def test_usage_errors_exit_2(cli):
    for args in (['--format', 'yaml', 'list'], ['list', '-f', 'yaml'],
                 ['nosuch'], ['boot'],
                 ['--libvirt-disk_create_concurrency', '0', 'list']):
        result = cli.run(*args, check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert 'Traceback' not in result.stderr


# --- the database refuses the write ---------------------------------------

def test_read_only_database_at_boot_and_destroy(cli, tmp_path):
    image = cli.json('image-import', make_raw(tmp_path / 'img.raw'),
                     '--disk-format', 'raw')
    db_dir = cli.state
    with read_only_view(db_dir, tmp_path / 'ro') as view:
        read_only = ['--database-connection',
                     'sqlite:///%s' % (view / 'nova.sqlite')]
        assert_one_line_error(
            cli.run(*read_only, 'boot', '--image', image['id'],
                    check=False), 'read-only', 'nova.sqlite')
        # Nothing was recorded, so nothing was made.
        assert cli.json('list') == []
        assert _instance_dirs(cli) == []

        booted = cli.json('boot', '--image', image['id'])
        assert_one_line_error(
            cli.run(*read_only, 'destroy', booted['uuid'], check=False),
            'read-only')
    # The instance is still there, and destroy finishes the job.
    assert [i['uuid'] for i in cli.json('list')] == [booted['uuid']]
    cli.json('destroy', booted['uuid'])
    assert cli.json('list') == []
    assert _instance_dirs(cli) == []


def test_locked_database_at_boot_and_destroy(tmp_path):
    # Give up waiting for the lock after a second (and its retries).
    cli = CLI(tmp_path, '[database]\nsqlite_busy_timeout = 1\n')
    image = cli.json('image-import', make_raw(tmp_path / 'img.raw'),
                     '--disk-format', 'raw')
    booted = cli.json('boot', '--image', image['id'])
    with sqlite_locked(cli.state / 'nova.sqlite'):
        assert_one_line_error(
            cli.run('boot', '--image', image['id'], check=False), 'locked')
        assert_one_line_error(
            cli.run('destroy', booted['uuid'], check=False), 'locked')
    assert [i['uuid'] for i in cli.json('list')] == [booted['uuid']]
    assert _instance_dirs(cli) == [booted['uuid']]
    cli.json('destroy', booted['uuid'])
    assert cli.json('list') == []


def test_full_disk_during_the_record_write(tmp_path):
    state = tmp_path / 'small'
    state.mkdir()
    with mounted('-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', str(state)):
        cli = CLI(tmp_path, state=state / 'state')
        image = cli.json('image-import', make_raw(tmp_path / 'img.raw'),
                         '--disk-format', 'raw')
        filler = state / 'filler'
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b'\xff' * 4096)
        finally:
            os.close(fd)
        result = cli.run('boot', '--image', image['id'], check=False)
        assert_one_line_error(result, 'no space left')
        filler.unlink()
        # Whatever got recorded is in ERROR and destroy removes it.
        for instance in cli.json('list'):
            assert instance['vm_state'] == 'error'
            cli.json('destroy', instance['uuid'])
        assert cli.json('list') == []
        assert _instance_dirs(cli) == []


# --- Ctrl-C and SIGTERM ----------------------------------------------------

def _hold_cache_entry(cli, image_id):
    """The image cache entry lock of ``image_id`` (a raw base, as the
    embedded defaults keep it), taken as the cache takes it (a flock in
    lock_path), for a boot to wait on; ``.close()`` releases it."""
    lock_path = cli.state / 'instances' / 'locks'
    os.makedirs(lock_path, mode=0o755, exist_ok=True)
    held = contextlib.ExitStack()
    locks = held.enter_context(staging.open_root(str(lock_path)))
    held.enter_context(locks.lock(
        image_cache._LOCK_PREFIX + image_cache.image_entry_name(image_id,
                                                                'raw')))
    return held


def _wait_for_records(cli):
    """Until a boot has saved its disk records (it then waits on the
    image cache entry's lock, which the test holds)."""
    db = cli.state / 'nova.sqlite'
    while True:
        with contextlib.suppress(sqlite3.OperationalError):
            with contextlib.closing(sqlite3.connect(str(db))) as c:
                if c.execute('SELECT count(*) FROM block_device_mapping '
                             'WHERE driver_info IS NOT NULL').fetchone()[0]:
                    return
        time.sleep(0.05)


@contextlib.contextmanager
def boot_waiting_on_the_cache(cli, tmp_path, *args):
    """A boot (a Popen) that has saved its disk records and waits on the
    image cache entry's lock, which is held until the block ends."""
    image = cli.json('image-import', make_raw(tmp_path / 'img.raw'),
                     '--disk-format', 'raw')
    lock = _hold_cache_entry(cli, image['id'])
    try:
        boot = cli.popen('boot', '--image', image['id'], *args)
        _wait_for_records(cli)
        yield boot
    finally:
        lock.close()


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_interrupted_boot_ends_in_error_with_nothing_left(cli, tmp_path,
                                                          signum):
    with boot_waiting_on_the_cache(cli, tmp_path, '--ephemeral-gb',
                                   '1') as boot:
        boot.send_signal(signum)
        _out, err = boot.communicate(timeout=120)
    assert boot.returncode == 1
    assert 'Traceback' not in err
    assert err.strip().splitlines()[-1] == (
        'nova-libvirt: stopped by %s' % signal.Signals(signum).name)
    [instance] = cli.json('list')
    assert (instance['vm_state'], instance['task_state']) == ('error', None)
    assert _instance_dirs(cli) == []
    cli.json('destroy', instance['uuid'])


def test_killed_boot_is_repaired_by_the_next_command(cli, tmp_path):
    with boot_waiting_on_the_cache(cli, tmp_path) as boot:
        # A running boot's instance is left alone by other commands.
        [instance] = cli.json('list')
        assert instance['vm_state'] == 'building'
        boot.kill()
        boot.wait()
    [instance] = cli.json('list')
    assert (instance['vm_state'], instance['task_state']) == ('error', None)
    cli.json('destroy', instance['uuid'])
    assert _instance_dirs(cli) == []


def test_state_that_cannot_be_saved_is_said_and_repaired(cli, tmp_path):
    with boot_waiting_on_the_cache(cli, tmp_path) as boot:
        # Stopped while another process holds the database: the disks go,
        # but ERROR cannot be written.
        with sqlite_locked(cli.state / 'nova.sqlite'):
            boot.send_signal(signal.SIGINT)
            _out, err = boot.communicate(timeout=120)
    assert boot.returncode == 1
    line = err.strip().splitlines()[-1]
    assert 'could not be saved' in line and 'locked' in line
    assert 'repairs it' in line
    assert _instance_dirs(cli) == []
    [instance] = cli.json('list')
    assert (instance['vm_state'], instance['task_state']) == ('error', None)
    cli.json('destroy', instance['uuid'])


def _wait_for_rescue_record(cli):
    """Until a rescue has saved its disk's record (it then fetches)."""
    db = cli.state / 'nova.sqlite'
    while True:
        with contextlib.suppress(sqlite3.OperationalError):
            with contextlib.closing(sqlite3.connect(str(db))) as c:
                if c.execute("SELECT count(*) FROM block_device_mapping "
                             "WHERE driver_info LIKE '%disk.rescue%'"
                             ).fetchone()[0]:
                    return
        time.sleep(0.05)


def test_a_command_on_a_busy_instance_is_refused(cli, tmp_path):
    # A rescue still fetching its image (the test holds the cache entry)
    # holds the instance: a destroy meanwhile would remove the instance
    # under it, and the rescue would then make a disk nothing records.
    image = cli.json('image-import', make_raw(tmp_path / 'img.raw'),
                     '--disk-format', 'raw')
    cli.json('boot', '--image', image['id'], '--name', 'vm')
    rescue_image = cli.json('image-import', make_raw(tmp_path / 'r.raw'),
                            '--disk-format', 'raw')
    lock = _hold_cache_entry(cli, rescue_image['id'])
    try:
        rescue = cli.popen('rescue', 'vm', '--image', rescue_image['id'])
        _wait_for_rescue_record(cli)
        for command in (('destroy', 'vm'), ('unrescue', 'vm'),
                        ('snapshot', 'vm', '--name', 'snap')):
            assert_one_line_error(cli.run(*command, check=False),
                                  'is busy', command[0])
    finally:
        lock.close()
    _out, err = rescue.communicate(timeout=120)
    assert rescue.returncode == 0, err
    [instance] = cli.json('list')
    assert instance['vm_state'] == 'rescued'
    cli.json('destroy', 'vm')
    assert cli.json('list') == []
    assert _instance_dirs(cli) == []


@pytest.mark.parametrize('args,fmt', [
    (('list', '-c', 'Nmae'), 'table'), (('list', '-c', 'Nmae'), 'json'),
    (('image-list', '-c', 'nosuch'), 'table')])
def test_an_unknown_column_is_a_usage_error(cli, args, fmt):
    line = assert_one_line_error(cli.run(*args, check=False, fmt=fmt),
                                 'no field or column named', args[-1],
                                 status=2)
    assert 'name' in line


def test_nova_manage_says_one_line(cli):
    result = subprocess.run(
        script('nova-manage') + ['--config-file', str(cli.conf), 'libvirt',
                                 'show_disks', 'vm3'],
        capture_output=True, text=True, env=cli.env, timeout=300)
    assert_one_line_error(result, 'uuid', 'vm3')


def test_destroy_of_a_boot_refused_at_planning_names_no_exception_class(
        cli, tmp_path):
    # The boot failed before any record was written: destroy says that
    # the disks have none and were never made, in words only (oslo.log
    # appends the exception being handled to a warning logged inside an
    # except block).
    image = cli.json('image-import', make_raw(tmp_path / 'big.raw',
                                              size=3 << 29),
                     '--disk-format', 'raw')
    failed = cli.run('boot', '--image', image['id'], '--root-gb', '1',
                     '--name', 'vm', check=False)
    assert_one_line_error(failed, 'larger than the flavor')

    result = cli.run('destroy', 'vm')

    assert 'does not exist' in result.stderr
    for word in ('_Refused', 'nova.exception.', 'Traceback'):
        assert word not in result.stderr, result.stderr
    assert cli.json('list') == []


def _set_instance(cli, **values):
    with contextlib.closing(sqlite3.connect(str(cli.state /
                                                'nova.sqlite'))) as c:
        c.execute('UPDATE instances SET %s' % ', '.join(
            '%s = ?' % k for k in values), list(values.values()))
        c.commit()


def test_an_instance_of_another_host_is_left_to_it(cli, tmp_path):
    # A database shared with another compute host: its instances' disks,
    # domains and command locks are there, not here.
    image = cli.json('image-import', make_raw(tmp_path / 'img.raw'),
                     '--disk-format', 'raw')
    cli.json('boot', '--image', image['id'], '--name', 'vm')
    _set_instance(cli, host='elsewhere')
    for command in (('destroy', 'vm'), ('rescue', 'vm'),
                    ('snapshot', 'vm', '--name', 'snap')):
        assert_one_line_error(cli.run(*command, check=False),
                              'on host elsewhere', command[0])
    # Its boot may be running there: list does not "repair" it.
    _set_instance(cli, vm_state='building', task_state='spawning')
    [instance] = cli.json('list')
    assert instance['vm_state'] == 'building'
    _set_instance(cli, host=socket.gethostname(), vm_state='active',
                  task_state=None)
    cli.json('destroy', 'vm')
    assert _instance_dirs(cli) == []

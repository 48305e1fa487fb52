"""nova.cmd.errors: one line and an exit status for whatever ended a
command."""

import errno

from oslo_config import cfg
from oslo_db import exception as db_exc
import sqlalchemy.exc

from nova.cmd import errors
from nova.cmd import signals
from nova import exception


def test_interrupts_are_failures_that_say_so():
    assert errors.describe(KeyboardInterrupt()) == (
        'interrupted (Ctrl-C)', errors.FAILURE)
    assert errors.describe(signals.Interrupted('SIGTERM')) == (
        'stopped by SIGTERM', errors.FAILURE)


def test_usage_error_exits_2():
    assert errors.describe(errors.UsageError('bad -f')) == ('bad -f',
                                                            errors.USAGE)


def test_config_errors_name_the_file():
    message, status = errors.describe(
        cfg.ConfigFilesNotFoundError(['/etc/x.conf']))
    assert status == errors.FAILURE
    assert '/etc/x.conf' in message and '--config-file' in message
    message, _ = errors.describe(
        cfg.ConfigFileParseError('/etc/y.conf', 'line 3: no ='))
    assert message.startswith('configuration file /etc/y.conf: line 3')


def test_database_errors_say_what_to_do():
    locked = db_exc.DBError(Exception('database is locked'))
    assert 'locked by another process' in errors.describe(locked)[0]
    read_only = db_exc.DBError(
        Exception('attempt to write a readonly database'))
    assert 'read-only' in errors.describe(read_only)[0]
    full = db_exc.DBError(Exception('database or disk is full'))
    assert 'no space left' in errors.describe(full)[0]
    driver = sqlalchemy.exc.NoSuchModuleError(
        "Can't load plugin: sqlalchemy.dialects:foo")
    assert 'postgresql+psycopg2://' in errors.describe(driver)[0]


def test_missing_driver_names_the_install_extra():
    try:
        raise sqlalchemy.exc.ArgumentError('x') from ModuleNotFoundError(
            "No module named 'psycopg2'", name='psycopg2')
    except sqlalchemy.exc.ArgumentError as e:
        # The URL names a dialect; it is the DB-API module that is missing.
        message = errors.describe(db_exc.DBError(e.__cause__))[0]
    assert 'nova-libvirt-disks[postgresql]' in message


def test_passwords_are_hidden():
    assert errors.masked_url('postgresql://u:secret@h/db') == (
        'postgresql://u:***@h/db')


def test_nova_exceptions_keep_their_message_and_add_a_hint():
    message, status = errors.describe(
        exception.InstanceNotFound(instance_id='web'))
    assert status == errors.FAILURE
    assert 'web' in message and 'nova-libvirt list' in message


def test_os_errors():
    full = OSError(errno.ENOSPC, 'No space left on device', '/srv/x')
    assert errors.describe(full)[0].startswith(
        'no space left on device writing /srv/x')
    state = FileExistsError(errno.EEXIST, 'File exists', '/srv/state')
    assert 'state_path /srv/state is not a directory' in errors.describe(
        state, state_path='/srv/state')[0]


def test_anything_else_points_at_debug():
    message, status = errors.describe(ZeroDivisionError('boom'))
    assert status == errors.FAILURE
    assert 'ZeroDivisionError: boom' in message and '--debug' in message

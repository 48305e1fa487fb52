"""One error path for the console scripts: an exception in, one line out.

``describe(exc)`` turns whatever ended a command into ``(message, status)``:
a single line that names what failed (the file, option, URL, instance or
disk) and what to do about it, and the exit status (1 for a failure, 2 for
a usage error). Tracebacks are for ``--debug`` only; the caller prints
them.

Library exceptions are recognised only when their module is already
imported (``_loaded``): a command that failed before it reached the
database never pays for importing SQLAlchemy to describe its error.
"""

import errno
import os
import sys

from nova.cmd.signals import Interrupted

#: Exit status of a failure, and of a command line that cannot be obeyed.
FAILURE = 1
USAGE = 2

_DRIVER_EXTRAS = {'postgresql': 'postgresql', 'psycopg': 'postgresql',
                  'psycopg2': 'postgresql', 'mysql': 'mysql',
                  'pymysql': 'mysql', 'mariadb': 'mysql'}

#: What DB-API drivers say when the server is not there (lower case).
_UNREACHABLE = ('could not connect', "can't connect", 'connection refused',
                'connection to server', 'name or service not known',
                'timed out', 'no route to host')


class UsageError(Exception):
    """A command line that parses but cannot be obeyed (exit 2)."""


def _loaded(module, name):
    """The class ``module.name`` if that module is imported, else None."""
    mod = sys.modules.get(module)
    return getattr(mod, name, None) if mod is not None else None


def _isinstance(exc, module, name):
    cls = _loaded(module, name)
    return cls is not None and isinstance(exc, cls)


def _chain(exc, implicit=True):
    """``exc`` and the exceptions it wraps (oslo.db keeps the DB-API's
    error in ``inner_exception``; Python in ``__cause__``, and in
    ``__context__`` when ``implicit``)."""
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = (getattr(exc, 'inner_exception', None) or exc.__cause__ or
               (exc.__context__ if implicit else None))
    return seen


def masked_url(url):
    """A database URL with its password hidden, for messages."""
    make_url = _loaded('sqlalchemy.engine', 'make_url')
    if make_url is not None:
        try:
            return make_url(url).render_as_string(hide_password=True)
        except Exception:  # noqa: S110 - an unparsable URL is shown whole
            pass
    return url


def _database_url():
    try:
        from nova import conf
        return masked_url(conf.CONF.database.connection)
    except Exception:
        return '[database] connection'


def _sqlite_path():
    """The file of [database] connection when it is SQLite, else None."""
    try:
        from nova import conf
        url = conf.CONF.database.connection
    except Exception:
        return None
    prefix = 'sqlite:///'
    return url[len(prefix):] if url.startswith(prefix) else None


def _sqlite_read_only():
    """True when [database] connection is a SQLite file that exists but
    cannot be written (in WAL mode SQLite cannot even open such a file,
    and says only "unable to open database file")."""
    path = _sqlite_path()
    if path is None:
        return False
    directory = os.path.dirname(path) or '.'
    return os.path.isfile(path) and not (
        os.access(path, os.W_OK) and os.access(directory, os.W_OK))


def _sqlite_fs_full():
    """True when [database] connection is a SQLite file on a filesystem
    with no block left (in WAL mode SQLite reports a full disk as a
    "disk I/O error")."""
    path = _sqlite_path()
    if path is None:
        return False
    try:
        st = os.statvfs(os.path.dirname(path) or '.')
    except OSError:
        return False
    return st.f_bavail == 0


def _first_line(exc):
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _describe_config(exc):
    if _isinstance(exc, 'oslo_config.cfg', 'ConfigFilesNotFoundError'):
        return ('cannot read configuration file %s: no such file; check '
                'the --config-file path' % ', '.join(exc.config_files))
    if _isinstance(exc, 'oslo_config.cfg',
                   'ConfigFilesPermissionDeniedError'):
        return ('cannot read configuration file %s: permission denied' %
                ', '.join(exc.config_files))
    if _isinstance(exc, 'oslo_config.cfg', 'ConfigFileParseError'):
        return ('configuration file %s: %s; every option line is '
                '"name = value" under a [section]' % (exc.config_file,
                                                      exc.msg))
    if _isinstance(exc, 'oslo_config.cfg', 'ConfigDirNotFoundError'):
        return ('configuration directory %s does not exist; check the '
                '--config-dir path' % exc.config_dir)
    if (_isinstance(exc, 'oslo_config.cfg', 'ConfigFileValueError') or
            _isinstance(exc, 'oslo_config.cfg', 'ConfigSourceValueError')):
        return ('bad configuration value: %s; fix it in the configuration '
                'file or on the command line' % _first_line(exc))
    return None


def _describe_database(exc):
    chain = _chain(exc)
    text = ' '.join(str(e) for e in chain).lower()
    url = _database_url()
    for e in chain:
        if (_isinstance(e, 'sqlalchemy.exc', 'NoSuchModuleError') or
                _isinstance(e, 'sqlalchemy.exc', 'ArgumentError')):
            return ('[database] connection %s: %s; use sqlite:///PATH, '
                    'mysql+pymysql://... or postgresql+psycopg2://...' %
                    (url, _first_line(e)))
        if isinstance(e, ImportError) and e.name:
            extra = _DRIVER_EXTRAS.get(e.name.split('.')[0])
            if extra:
                return ('the database driver for %s is not installed (no '
                        'module %s); install it: pip install '
                        '"nova-libvirt-disks[%s]"' % (url, e.name, extra))
        if _isinstance(e, 'oslo_db.exception', 'DBConnectionError'):
            inner = getattr(e, 'inner_exception', None) or e
            return ('cannot connect to the database %s: %s; check [database]'
                    ' connection and that the server runs and accepts us' %
                    (url, _first_line(inner).split(' (Background')[0]))
    if not any(_isinstance(e, 'oslo_db.exception', 'DBError') or
               _isinstance(e, 'sqlalchemy.exc', 'SQLAlchemyError')
               for e in chain):
        return None
    if any(word in text for word in _UNREACHABLE):
        return ('cannot connect to the database %s: %s; check [database] '
                'connection and that the server runs and accepts us' % (
                    url, _first_line(chain[-1]).split(' (Background')[0]))
    if ('readonly database' in text or 'read-only' in text or
            ('unable to open database file' in text and _sqlite_read_only())):
        return ('the database %s is read-only; make the file and its '
                'directory writable, or point [database] connection at a '
                'writable database' % url)
    if 'database is locked' in text:
        return ('the database %s is locked by another process; run the '
                'command again when that process has finished' % url)
    if ('disk is full' in text or 'no space left' in text or
            ('disk i/o error' in text and _sqlite_fs_full())):
        return ('no space left for the database %s; free space on its '
                'filesystem and run the command again' % url)
    if 'unable to open database file' in text:
        return ('cannot open the database %s; check that its directory '
                'exists and is writable' % url)
    return 'database %s: %s' % (url, _first_line(chain[-1]))


def _describe_migration(exc):
    if not type(exc).__module__.startswith('alembic'):
        return None
    return ('the database %s is at a revision this version does not know '
            '(%s); it was made by a newer release or is not this '
            'project\'s database: upgrade, or point [database] connection '
            'at the right database' % (_database_url(), _first_line(exc)))


def _describe_os_error(exc, state_path=None):
    name = exc.filename or ''
    if state_path and name == state_path and exc.errno in (
            errno.EEXIST, errno.ENOTDIR):
        return ('state_path %s is not a directory; point [DEFAULT] '
                'state_path at a directory, or move that file away' % name)
    if exc.errno == errno.ENOTDIR:
        return ('%s: a part of this path is a file, not a directory' %
                name)
    if exc.errno == errno.ENOSPC:
        return ('no space left on device%s; free space there and run the '
                'command again' % (' writing %s' % name if name else ''))
    if exc.errno == errno.EROFS:
        return ('%s is on a read-only filesystem; use a writable '
                'state_path' % (name or 'a file'))
    if exc.errno in (errno.EACCES, errno.EPERM):
        return '%s: permission denied' % (name or _first_line(exc))
    return '%s%s' % ('%s: ' % name if name else '',
                     exc.strerror or _first_line(exc))


_NOVA_HINTS = {
    'InstanceNotFound': 'see "nova-libvirt list"',
    'ImageNotFound': 'see "nova-libvirt image-list"',
    'DBNotAtRevision': 'run "nova-manage db sync"',
    'DBUnversioned': 'point [database] connection at a database made by '
                     '"nova-manage db sync"',
}


def describe(exc, state_path=None):
    """``(message, status)`` for ``exc``, which ended a command.

    :param exc: any exception (also KeyboardInterrupt).
    :param state_path: the configured state_path, if known, to name it
        when it is not a directory.
    """
    if isinstance(exc, Interrupted):
        return ('stopped by %s' % exc.signal_name, FAILURE)
    if isinstance(exc, KeyboardInterrupt):
        return ('interrupted (Ctrl-C)', FAILURE)
    if isinstance(exc, UsageError):
        return (str(exc), USAGE)
    for describer in (_describe_config, _describe_database,
                      _describe_migration):
        message = describer(exc)
        if message:
            return (message, FAILURE)
    if _isinstance(exc, 'oslo_config.cfg', 'Error'):
        return (_first_line(exc), USAGE)
    if _isinstance(exc, 'nova.exception', 'NovaException'):
        hint = _NOVA_HINTS.get(type(exc).__name__)
        # A wrapped database error inside ours still says what to do.
        for inner in _chain(exc, implicit=False)[1:]:
            message = _describe_database(inner)
            if message:
                return ('%s (%s)' % (str(exc).rstrip('.'), message),
                        FAILURE)
        text = str(exc)
        return (('%s; %s' % (text.rstrip('.'), hint)) if hint else text,
                FAILURE)
    if isinstance(exc, OSError):
        return (_describe_os_error(exc, state_path), FAILURE)
    return ('unexpected error: %s: %s; run again with --debug for the '
            'traceback' % (type(exc).__name__, _first_line(exc)), FAILURE)

"""Schema migrations: bring a database to a revision, or report its revision.

``db_sync()`` is what ``nova-manage db sync`` runs: an alembic upgrade of the
database that ``[database]/connection`` names (or of a given engine) to the
newest revision or to a given one. An empty database is created from
scratch; a database already at the target is left alone.

The history is Nova's main database history: the first revision here is
Nova 34.0.0's head, ``ab450ba04102`` (on an empty database it creates the
tables this project shares with Nova 34), and the revisions of this project
follow it. A database made by Nova 34.0.0 is therefore upgraded by this
project's revisions alone. A database at a revision outside this history
(an older or newer Nova, another project) is refused, naming the revision.

``db_ensure_current()`` runs before every nova-libvirt command. A database
already at the head is the common case: it is recognised with two small
queries (is there a version table, what does it hold) and the head read
from the revision files, without importing alembic (a third of a command's
start-up). Alembic is imported only to create or upgrade a database or to
explain a refusal.
"""

import ast
import contextlib
import os

from oslo_db import exception as db_exc
from oslo_log import log as logging
import sqlalchemy as sa

import nova.conf
from nova.db import api as db_api
from nova import exception

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              'migrations')
_VERSION_TABLE = 'alembic_version'
# Nova 34.0.0's main database head, the base of this history.
NOVA_34_HEAD = 'ab450ba04102'


class DBUnknownRevision(exception.NovaException):
    """The database is at a revision that is not in this history."""

    msg_fmt = ("The database is at revision %(revision)s, which this code "
               "does not know (it knows Nova 34.0.0's %(base)s and this "
               "project's revisions after it up to %(head)s): it was made by "
               "another release of Nova or of this project. Upgrade it with "
               "that release's nova-manage first, or point "
               "[database]/connection at another database.")


def _alembic_config(connection=None):
    from alembic import config as alembic_config
    config = alembic_config.Config(os.path.join(MIGRATIONS_DIR,
                                                'alembic.ini'))
    config.set_main_option('script_location', MIGRATIONS_DIR)
    if connection is not None:
        config.attributes['connection'] = connection
    return config


def get_script_directory():
    """Return alembic's view of the revisions in nova/db/migrations."""
    from alembic import script as alembic_script
    return alembic_script.ScriptDirectory.from_config(_alembic_config())


def _sqlite_file(url):
    """The file of a SQLite URL, or None (another backend, in memory)."""
    url = sa.engine.make_url(url)
    if url.get_backend_name() != 'sqlite':
        return None
    path = url.database
    if path and path != ':memory:' and not path.startswith('file:'):
        return os.path.abspath(path)
    return None


def _make_sqlite_directory(url):
    """A new host's SQLite file lives in a state_path that may not exist."""
    path = _sqlite_file(url)
    if path:
        os.makedirs(os.path.dirname(path), exist_ok=True)


def _check_versioned(connection):
    """Refuse a database that has tables but no alembic_version table."""
    tables = set(sa.inspect(connection).get_table_names())
    if tables and _VERSION_TABLE not in tables:
        raise exception.DBUnversioned(tables=', '.join(sorted(tables)))


class DBConnectionFailed(exception.NovaException):
    """The configured database could not be reached or opened."""

    msg_fmt = ("Cannot reach the database %(url)s ([database]/connection): "
               "%(reason)s")


class DBDriverUnavailable(exception.NovaException):
    """No SQLAlchemy dialect or DB-API driver for the configured URL."""

    msg_fmt = ("No database driver for %(url)s ([database]/connection): "
               "%(reason)s. Use sqlite:///PATH, postgresql+psycopg2://... "
               "or mysql+pymysql://..., and install that driver.")


def _safe_url(url):
    """The URL, its password hidden, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return '(malformed URL)'


def _one_line(error):
    text = str(getattr(error, 'inner_exception', None) or error)
    return ' '.join(text.split())


@contextlib.contextmanager
def _reaching(url):
    """Turn failures to reach or open the database into typed errors.

    :raises: DBDriverUnavailable, DBConnectionFailed.
    """
    try:
        yield
    except (sa.exc.NoSuchModuleError, ImportError) as e:
        raise DBDriverUnavailable(url=_safe_url(url), reason=_one_line(e))
    except sa.exc.ArgumentError as e:
        raise DBDriverUnavailable(url=_safe_url(url), reason=_one_line(e))
    except (db_exc.DBConnectionError, db_exc.DBNonExistentDatabase,
            sa.exc.OperationalError, sa.exc.InterfaceError) as e:
        raise DBConnectionFailed(url=_safe_url(url), reason=_one_line(e))


def _configured_engine():
    """The SQL API's engine for ``[database]/connection``.

    :raises: as _reaching().
    """
    url = CONF.database.connection
    _make_sqlite_directory(url)
    with _reaching(url):
        return db_api.get_engine()


def _check_known(script, revision):
    """Refuse a database revision outside this history.

    :raises: DBUnknownRevision.
    """
    if revision is None:
        return
    # Exactly, not as a prefix: the stored id is always a whole one.
    if revision not in {rev.revision for rev in script.walk_revisions()}:
        raise DBUnknownRevision(revision=revision, base=NOVA_34_HEAD,
                                head=script.get_current_head())


def db_sync(version=None, engine=None):
    """Upgrade the database to ``version``.

    :param version: an alembic revision id (or a unique prefix of one), or
        None for the newest (``head``).
    :param engine: the engine to migrate; None for the one configured by
        ``[database]/connection``.
    :raises: DBDriverUnavailable or DBConnectionFailed when the configured
        database cannot be used; DBUnversioned for a database with tables
        but no version;
        DBInvalidRevision for an unknown target revision or one older
        than the database's (there are no downgrades); DBUnknownRevision
        when the database is at a revision this history does not have.
    """
    from alembic import command as alembic_command
    if engine is None:
        engine = _configured_engine()
    script = get_script_directory()
    target = _resolve(script, version or 'head')
    # One transaction for the whole upgrade where the backend has
    # transactional DDL (PostgreSQL, SQLite): it either all lands or none.
    with _reaching(engine.url), engine.begin() as connection:
        _check_versioned(connection)
        before = _current_revision(connection)
        _check_known(script, before)
        if before is not None and before != target and target in {
                rev.revision for rev in script.iterate_revisions(before,
                                                                 'base')}:
            raise exception.DBInvalidRevision(
                revision=target,
                reason='the database is at the newer %s and there are no '
                       'downgrades' % before)
        alembic_command.upgrade(_alembic_config(connection), target)
        after = _current_revision(connection)
    if before != after:
        LOG.info('Database upgraded from %(before)s to %(after)s',
                 {'before': before or 'empty', 'after': after})
    else:
        LOG.debug('Database already at %(rev)s', {'rev': after})


def _resolve(script, version):
    """Return the full revision id that ``version`` names."""
    from alembic import script as alembic_script
    from alembic.util import exc as alembic_exc
    try:
        revision = script.get_revision(version)
    except (alembic_exc.CommandError,
            alembic_script.revision.RevisionError) as e:
        raise exception.DBInvalidRevision(revision=version, reason=str(e))
    if revision is None:
        raise exception.DBInvalidRevision(revision=version,
                                          reason='no such revision')
    return revision.revision


def _current_revision(connection):
    from alembic import migration as alembic_migration
    return alembic_migration.MigrationContext.configure(
        connection).get_current_revision()


def _assigned_literals(path, names):
    """The literal values that module-level assignments in the Python file
    ``path`` give to ``names`` (plain or annotated assignments)."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in names:
            values[target.id] = ast.literal_eval(value)
    return values


def versions_head(directory=None):
    """The head revision of nova/db/migrations/versions (or of the revision
    files in ``directory``), read from the files' ``revision`` and
    ``down_revision`` alone (alembic is not imported); None unless they
    name exactly one head.

    The same answer as alembic's ``ScriptDirectory.get_current_head()``
    (a test holds them equal); None sends the caller to alembic, which
    knows every other shape of history.
    """
    directory = directory or os.path.join(MIGRATIONS_DIR, 'versions')
    revisions = set()
    parents = set()
    for name in os.listdir(directory):
        if not name.endswith('.py') or name.startswith('__'):
            continue
        try:
            found = _assigned_literals(os.path.join(directory, name),
                                       ('revision', 'down_revision'))
        except (SyntaxError, ValueError):
            return None
        if not isinstance(found.get('revision'), str):
            return None
        revisions.add(found['revision'])
        down = found.get('down_revision')
        parents.update((down,) if isinstance(down, str) else down or ())
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _stored_revision(engine):
    """The revision in the database's alembic_version table, read with
    plain SQLAlchemy; None when there is no such table or it does not
    hold exactly one revision.

    :raises: as _reaching().
    """
    version = sa.table(_VERSION_TABLE, sa.column('version_num'))
    with _reaching(engine.url), engine.connect() as connection:
        if not sa.inspect(connection).has_table(_VERSION_TABLE):
            return None
        stored = connection.execute(sa.select(version.c.version_num)).all()
    return stored[0][0] if len(stored) == 1 else None


def _at_head():
    """True when the configured database exists and is at this history's
    head, found without alembic. False means "ask alembic": a new file,
    an empty or unversioned database, another revision, or a history
    whose head the revision files do not tell alone.

    :raises: as _reaching().
    """
    path = _sqlite_file(CONF.database.connection)
    if path and not os.path.exists(path):
        return False  # a new host: db_sync() creates the file
    head = versions_head()
    if head is None:
        return False
    return _stored_revision(_configured_engine()) == head


def db_ensure_current():
    """Make the configured database usable by this code, or refuse.

    A database at the head is left alone, found so without alembic. A
    SQLite file (the embedded default: private to this host) is
    upgraded; a new, empty server database is created; a server database
    at another revision is left alone, because other services share it
    and ``nova-manage db sync`` is the operator's step.

    :raises: DBNotAtRevision, and as db_sync().
    """
    if _at_head():
        LOG.debug('Database already at the head revision')
        return
    if _sqlite_file(CONF.database.connection):
        db_sync()
        return
    script = get_script_directory()
    head = script.get_current_head()
    current = db_version()
    _check_known(script, current)
    if current is None:
        db_sync()
    elif current != head:
        raise exception.DBNotAtRevision(actual=current, expected=head)


def db_version(engine=None):
    """Return the database's alembic revision id, or None when it is empty.

    :param engine: as for db_sync().
    :raises: DBUnversioned for a database with tables but no version;
        DBDriverUnavailable, DBConnectionFailed as db_sync().
    """
    if engine is None:
        path = _sqlite_file(CONF.database.connection)
        if path and not os.path.exists(path):
            # Asking must not create the file (or fail on its directory).
            return None
    engine = engine or _configured_engine()
    with _reaching(engine.url), engine.connect() as connection:
        _check_versioned(connection)
        return _current_revision(connection)

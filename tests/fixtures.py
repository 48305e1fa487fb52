"""Shared test fixtures: configuration and databases.

``ConfFixture`` gives a test its own view of ``nova.conf.CONF``.
``Database`` points the SQL API at a fresh database (a new SQLite file unless
told otherwise) and migrates it. ``ServerDatabase`` creates a throwaway
database on the PostgreSQL or MariaDB server that
``tools/services/{postgresql,mariadb}.sh start`` printed the admin URL of::

    db = self.useFixture(fixtures.ServerDatabase('postgresql'))
    self.useFixture(fixtures.Database(connection=db.url))

Tests call ``server_admin_url()`` first and skip when it is None.
"""

import os
import uuid

import fixtures
from oslo_config import fixture as config_fixture
import sqlalchemy as sa

import nova.conf
from nova.db import api as db_api
from nova.db import migration

CONF = nova.conf.CONF

# backend name -> the environment variable holding its admin URL.
SERVER_URL_ENV = {
    'postgresql': 'NOVA_TEST_POSTGRESQL_URL',
    'mysql': 'NOVA_TEST_MYSQL_URL',
}
BACKENDS = ('sqlite',) + tuple(SERVER_URL_ENV)


def server_admin_url(backend):
    """Return the admin URL of ``backend``'s test server, or None.

    :param backend: ``postgresql`` or ``mysql``.
    """
    return os.environ.get(SERVER_URL_ENV[backend]) or None


def not_configured(backend):
    """The skip reason for a missing server."""
    return '%s not configured: start tools/services/%s.sh and export %s' % (
        backend, 'mariadb' if backend == 'mysql' else backend,
        SERVER_URL_ENV[backend])


class ConfOverrides:
    """``config(group=None, **values)`` sets overrides on CONF; ``undo()``
    clears exactly those, and touches nothing else of CONF (oslo's config
    fixture resets all of it on cleanup).
    """

    def __init__(self):
        self._set = []

    def config(self, group=None, **values):
        for name, value in values.items():
            CONF.set_override(name, value, group=group)
            self._set.append((name, group))

    def private_paths(self, directory, make=True):
        """Point ``state_path`` at ``directory``, ``instances_path`` at
        ``directory/instances`` and the lock path at
        ``directory/instances/locks``: a test's own service directories.

        :param make: make ``directory/instances`` here; False leaves
            every directory to the test (or to the service).
        """
        instances = os.path.join(str(directory), 'instances')
        if make:
            os.makedirs(instances)
        self.config(state_path=str(directory), instances_path=instances)
        self.config(group='oslo_concurrency',
                    lock_path=os.path.join(instances, 'locks'))

    def undo(self):
        while self._set:
            name, group = self._set.pop()
            CONF.clear_override(name, group=group)


class ConfFixture(config_fixture.Config):
    """``nova.conf.CONF`` with overrides undone after the test.

    ``state_path`` points into a temporary directory, so that nothing a test
    does lands in the user's state directory.
    """

    def __init__(self):
        super().__init__(CONF)

    def setUp(self):
        super().setUp()
        self.config(state_path=self.useFixture(fixtures.TempDir()).path)


class ServerDatabase(fixtures.Fixture):
    """A database of its own on a test server, dropped afterwards.

    :param backend: ``postgresql`` or ``mysql``; its admin URL must be set
        (see ``server_admin_url``).
    Attribute ``url``: the new database's URL (a string, password in it).
    """

    def __init__(self, backend):
        super().__init__()
        self.backend = backend

    def _setUp(self):
        admin_url = sa.engine.make_url(server_admin_url(self.backend))
        name = 'nova_test_%s' % uuid.uuid4().hex[:12]
        admin = sa.create_engine(admin_url, isolation_level='AUTOCOMMIT',
                                 poolclass=sa.pool.NullPool)
        self.addCleanup(admin.dispose)
        with admin.connect() as connection:
            connection.execute(sa.text('CREATE DATABASE %s' % name))
        self.addCleanup(self._drop, admin, name)
        self.url = admin_url.set(database=name).render_as_string(
            hide_password=False)

    def _drop(self, admin, name):
        # Engines of the test are disposed first (fixtures clean up in
        # reverse). A plain DROP makes an autovacuum worker leave the
        # database; WITH (FORCE) would fail on it instead, since a
        # non-superuser may only terminate its own role's sessions (seen
        # once in CI). FORCE is kept for a session of ours still closing.
        with admin.connect() as connection:
            try:
                connection.execute(sa.text('DROP DATABASE %s' % name))
                return
            except sa.exc.OperationalError:
                if self.backend != 'postgresql':
                    raise
            connection.execute(sa.text('DROP DATABASE %s WITH (FORCE)' %
                                       name))


class Database(fixtures.Fixture):
    """Point ``nova.db.api`` at a fresh database and migrate it.

    :param connection: a database URL; None for a new SQLite file in a
        temporary directory.
    :param version: the revision to migrate to; None for the newest.
    Attributes ``url`` and ``engine``: the database and the SQL API's engine
    for it (for tests that need to look underneath the API).
    """

    def __init__(self, connection=None, version=None):
        super().__init__()
        self.url = connection
        self.version = version

    def _setUp(self):
        conf = self.useFixture(ConfFixture())
        if self.url is None:
            path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                'nova.sqlite')
            self.url = 'sqlite:///%s' % path
        conf.config(group='database', connection=self.url)
        # A transaction context of this test's own, swapped in for the
        # module's: engines made for one test never serve another.
        context_manager = db_api.create_context_manager(self.url)
        self.addCleanup(
            db_api.main_context_manager.patch_factory(context_manager))
        self.engine = context_manager.writer.get_engine()
        self.addCleanup(self.engine.dispose)
        migration.db_sync(self.version, engine=self.engine)

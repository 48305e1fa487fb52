"""The alembic migrations, on SQLite, PostgreSQL and MariaDB.

Every revision is walked one at a time, from an empty database to head, with
``_pre_upgrade_<rev>`` (rows written before it) and ``_check_<rev>`` (the
schema and the rows after it). The models are compared with the migrated
schema by oslo.db's ModelsMigrationsSync.
"""

import os
import shutil
import subprocess
import sys
import unittest

from oslo_db.sqlalchemy import test_migrations
from oslo_utils import uuidutils
import pytest
import sqlalchemy as sa

from nova.db import api as db_api
from nova.db import migration
from nova.db import models
from nova import exception
from tests import fixtures

INITIAL = 'ab450ba04102'
DRIVER_INFO = 'ddd52e84a43c'
BDM_TABLES = ('block_device_mapping', 'shadow_block_device_mapping')
# Nova 34's tables that the models map in part, or not at all.
PARTLY_MAPPED_TABLES = ('instances', 'instance_extra')
UNMAPPED_TABLES = ('shadow_instances', 'shadow_instance_extra')


def _revisions():
    """Revision ids from the first to head."""
    script = migration.get_script_directory()
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def _engine(url):
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    return engine


def _columns(engine, table):
    return {c['name']: c for c in sa.inspect(engine).get_columns(table)}


def _indexed_columns(engine, table):
    inspector = sa.inspect(engine)
    names = set()
    for index in inspector.get_indexes(table):
        names.update(index['column_names'])
    for constraint in inspector.get_unique_constraints(table):
        names.update(constraint['column_names'])
    return names


class WalkMigrations(object):
    """One method pair per revision; test_walk finds them by name."""

    def _check_ab450ba04102(self, engine, data):
        inspector = sa.inspect(engine)
        assert set(inspector.get_table_names()) == {
            'alembic_version', *BDM_TABLES, *PARTLY_MAPPED_TABLES,
            *UNMAPPED_TABLES}
        # Swap is the flavor's (instance_extra.flavor), as in Nova 34.
        assert 'swap' not in _columns(engine, 'instances')
        assert 'flavor' in _columns(engine, 'instance_extra')
        for table in UNMAPPED_TABLES:
            assert not inspector.get_indexes(table)
            assert not inspector.get_foreign_keys(table)
        for table in BDM_TABLES:
            assert 'driver_info' not in _columns(engine, table)
            assert 'encryption_options' in _columns(engine, table)
        indexes = {i['name'] for i in
                   inspector.get_indexes('block_device_mapping')}
        assert {'snapshot_id', 'volume_id',
                'block_device_mapping_instance_uuid_idx',
                'block_device_mapping_instance_uuid_device_name_idx',
                'block_device_mapping_instance_uuid_volume_id_idx'} <= indexes
        # Archived rows must not need indexes, constraints or instances.
        assert not inspector.get_indexes('shadow_block_device_mapping')
        assert not inspector.get_foreign_keys('shadow_block_device_mapping')
        assert not _columns(engine, 'instances')['uuid']['nullable']

    def _pre_upgrade_ddd52e84a43c(self, engine):
        instance_uuid = uuidutils.generate_uuid()
        meta = sa.MetaData()
        instances = sa.Table('instances', meta, autoload_with=engine)
        bdms = sa.Table('block_device_mapping', meta, autoload_with=engine)
        shadow = sa.Table('shadow_block_device_mapping', meta,
                          autoload_with=engine)
        rows = [dict(uuid=uuidutils.generate_uuid(),
                     instance_uuid=instance_uuid, source_type=source,
                     destination_type='local', boot_index=boot, deleted=0)
                for source, boot in (('image', 0), ('blank', -1))]
        with engine.begin() as connection:
            connection.execute(instances.insert().values(
                uuid=instance_uuid, host='compute1', root_gb=1, deleted=0))
            connection.execute(bdms.insert(), rows)
            connection.execute(shadow.insert().values(
                id=1000, uuid=uuidutils.generate_uuid(),
                instance_uuid=uuidutils.generate_uuid(), deleted=1000))
        return {'instance_uuid': instance_uuid,
                'bdm_uuids': sorted(row['uuid'] for row in rows)}

    def _check_ddd52e84a43c(self, engine, data):
        for table in BDM_TABLES:
            column = _columns(engine, table)['driver_info']
            assert column['nullable']
            assert isinstance(column['type'], sa.Text)
            assert 'driver_info' not in _indexed_columns(engine, table)
        meta = sa.MetaData()
        bdms = sa.Table('block_device_mapping', meta, autoload_with=engine)
        shadow = sa.Table('shadow_block_device_mapping', meta,
                          autoload_with=engine)
        with engine.begin() as connection:
            rows = connection.execute(
                sa.select(bdms.c.uuid, bdms.c.driver_info, bdms.c.boot_index)
                .where(bdms.c.instance_uuid == data['instance_uuid'])
            ).all()
            assert sorted(row.uuid for row in rows) == data['bdm_uuids']
            assert all(row.driver_info is None for row in rows)
            assert connection.execute(
                sa.select(sa.func.count()).select_from(shadow)).scalar() == 1
            # A record larger than VARCHAR limits fits.
            record = '{"x": "%s"}' % ('y' * 20000)
            connection.execute(bdms.update()
                               .where(bdms.c.uuid == data['bdm_uuids'][0])
                               .values(driver_info=record))
            assert connection.execute(
                sa.select(bdms.c.driver_info)
                .where(bdms.c.uuid == data['bdm_uuids'][0])).scalar() == record


class TestWalkMigrations(WalkMigrations):

    def test_every_revision_has_a_check(self):
        for revision in _revisions():
            assert hasattr(self, '_check_%s' % revision), revision

    def test_walk(self, db_url):
        engine = _engine(db_url)
        try:
            assert migration.db_version(engine) is None
            for revision in _revisions():
                pre = getattr(self, '_pre_upgrade_%s' % revision, None)
                data = pre(engine) if pre else None
                migration.db_sync(revision, engine=engine)
                assert migration.db_version(engine) == revision
                getattr(self, '_check_%s' % revision)(engine, data)
        finally:
            engine.dispose()


def _schema(engine):
    inspector = sa.inspect(engine)
    schema = {}
    for table in sorted(inspector.get_table_names()):
        schema[table] = (
            sorted((c['name'], str(c['type']), c['nullable'])
                   for c in inspector.get_columns(table)),
            sorted((i['name'], tuple(i['column_names']))
                   for i in inspector.get_indexes(table)),
            sorted((u['name'], tuple(u['column_names']))
                   for u in inspector.get_unique_constraints(table)),
        )
    return schema


_WRITES = ('CREATE', 'ALTER', 'DROP', 'INSERT', 'UPDATE', 'DELETE')


def test_second_db_sync_changes_nothing(db_url):
    engine = _engine(db_url)
    try:
        migration.db_sync(engine=engine)
        before = _schema(engine)
        statements = []

        def record(conn, cursor, statement, *args):
            statements.append(statement.lstrip().upper())

        sa.event.listen(engine, 'before_cursor_execute', record)
        migration.db_sync(engine=engine)
        sa.event.remove(engine, 'before_cursor_execute', record)
        assert not [s for s in statements if s.startswith(_WRITES)]
        assert _schema(engine) == before
        assert migration.db_version(engine) == _revisions()[-1]
    finally:
        engine.dispose()


def test_unversioned_database_is_refused(db_url):
    engine = _engine(db_url)
    try:
        models.BASE.metadata.create_all(engine)
        with pytest.raises(exception.DBUnversioned):
            migration.db_sync(engine=engine)
        with pytest.raises(exception.DBUnversioned):
            migration.db_version(engine)
    finally:
        models.BASE.metadata.drop_all(engine)
        engine.dispose()


def test_no_downgrade_and_no_unknown_revision(tmp_path):
    engine = _engine('sqlite:///%s' % (tmp_path / 'nova.sqlite'))
    migration.db_sync(engine=engine)
    with pytest.raises(exception.DBInvalidRevision):
        migration.db_sync(INITIAL, engine=engine)
    with pytest.raises(exception.DBInvalidRevision):
        migration.db_sync('0123456789ab', engine=engine)
    assert migration.db_version(engine) == DRIVER_INFO
    engine.dispose()


def test_unknown_database_revision_is_refused(db_url):
    """A database at a revision outside this history (another Nova release,
    or this project's pre-release history) is named, not guessed at."""
    engine = _engine(db_url)
    try:
        migration.db_sync(engine=engine)
        with engine.begin() as connection:
            connection.execute(sa.text(
                "UPDATE alembic_version SET version_num = '0123456789ab'"))
        before = _schema(engine)
        with pytest.raises(migration.DBUnknownRevision) as e:
            migration.db_sync(engine=engine)
        assert '0123456789ab' in str(e.value)
        assert '\n' not in str(e.value)
        assert _schema(engine) == before
    finally:
        engine.dispose()


@pytest.mark.parametrize('url, error', [
    ('nosuchdb://nova:secret@127.0.0.1/nova', 'DBDriverUnavailable'),
    # Port 9 (discard): nothing listens there on a test machine.
    ('postgresql+psycopg2://nova:secret@127.0.0.1:9/nova',
     'DBConnectionFailed'),
    ('mysql+pymysql://nova:secret@127.0.0.1:9/nova', 'DBConnectionFailed'),
])
def test_unusable_database_is_a_typed_error(tmp_path, url, error):
    overrides = fixtures.ConfOverrides()
    overrides.config(state_path=str(tmp_path))
    overrides.config(group='database', connection=url, max_retries=1,
                     retry_interval=0)
    restore = db_api.main_context_manager.patch_factory(
        db_api.create_context_manager())
    try:
        for call in (migration.db_sync, migration.db_version):
            with pytest.raises(getattr(migration, error)) as e:
                call()
            message = str(e.value)
            assert '\n' not in message and 'secret' not in message
            assert '127.0.0.1' in message
    finally:
        restore()
        overrides.undo()


class _ModelsMigrationsSync(test_migrations.ModelsMigrationsSync):
    """oslo.db's comparison of models and migrated schema, per backend."""

    BACKEND = None

    def setUp(self):
        super().setUp()
        if self.BACKEND == 'sqlite':
            path = self.enterContext(fixtures.fixtures.TempDir()).path
            url = 'sqlite:///%s' % os.path.join(path, 'nova.sqlite')
        else:
            if not fixtures.server_admin_url(self.BACKEND):
                self.skipTest(fixtures.not_configured(self.BACKEND))
            url = self.enterContext(
                fixtures.ServerDatabase(self.BACKEND)).url
        self.engine = _engine(url)
        self.addCleanup(self.engine.dispose)

    def get_engine(self):
        return self.engine

    def get_metadata(self):
        return models.BASE.metadata

    def db_sync(self, engine):
        migration.db_sync(engine=engine)

    def include_object(self, object_, name, type_, reflected, compare_to):
        # alembic's own bookkeeping is not a model.
        if type_ == 'table' and name == 'alembic_version':
            return False
        # The models map only what this project uses of Nova 34's instance
        # tables; the rest (columns, and the shadow tables of instances)
        # is there for upstream, checked against Nova 34 by reflection in
        # tests/functional/upstream.
        if reflected and compare_to is None:
            if type_ == 'table':
                return name not in UNMAPPED_TABLES
            if type_ == 'column':
                return object_.table.name not in PARTLY_MAPPED_TABLES
            if type_ == 'index':
                return object_.table.name not in PARTLY_MAPPED_TABLES
        return True


class TestModelsSyncSQLite(_ModelsMigrationsSync, unittest.TestCase):
    BACKEND = 'sqlite'


class TestModelsSyncPostgreSQL(_ModelsMigrationsSync, unittest.TestCase):
    BACKEND = 'postgresql'


class TestModelsSyncMySQL(_ModelsMigrationsSync, unittest.TestCase):
    BACKEND = 'mysql'


def _nova_manage(config_file, *args):
    script = shutil.which('nova-manage',
                          path=os.path.dirname(sys.executable))
    if script is None:
        pytest.fail('nova-manage is not installed next to %s: run '
                    '`pip install -e .`' % sys.executable)
    return subprocess.run([script, '--config-file', str(config_file), *args],
                          capture_output=True, text=True, timeout=120)


def test_nova_manage_db_sync_and_version(tmp_path):
    database = tmp_path / 'state' / 'nova.sqlite'
    config_file = tmp_path / 'nova.conf'
    config_file.write_text('[DEFAULT]\nstate_path = %s\n'
                           '[database]\nconnection = sqlite:///%s\n'
                           % (tmp_path / 'state', database))

    def version():
        result = _nova_manage(config_file, 'db', 'version')
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    # A new host has no database: version says so and creates nothing.
    assert version() == 'None'
    assert not (tmp_path / 'state').exists()
    # db sync makes the state directory of a new host.
    assert _nova_manage(config_file, 'db', 'sync', INITIAL).returncode == 0
    assert version() == INITIAL
    for _ in range(2):
        result = _nova_manage(config_file, 'db', 'sync')
        assert result.returncode == 0, result.stderr
        assert version() == DRIVER_INFO

    result = _nova_manage(config_file, 'db', 'sync', 'ffffffffffff')
    assert result.returncode == 1
    assert 'ffffffffffff' in result.stderr
    result = _nova_manage(config_file, 'db', 'sync', INITIAL)
    assert result.returncode == 1
    assert 'no downgrades' in result.stderr
    assert _nova_manage(config_file, 'db').returncode == 2
    assert version() == DRIVER_INFO

    # A database at a revision this code does not know: one line naming it.
    engine = _engine('sqlite:///%s' % database)
    with engine.begin() as connection:
        connection.execute(sa.text(
            "UPDATE alembic_version SET version_num = '0123456789ab'"))
    engine.dispose()
    result = _nova_manage(config_file, 'db', 'sync')
    assert result.returncode == 1
    assert '0123456789ab' in result.stderr
    assert 'Traceback' not in result.stderr


def test_nova_manage_names_an_unusable_database(tmp_path):
    config_file = tmp_path / 'nova.conf'
    for url, words in (
            ('nosuchdb://nova:secret@127.0.0.1/nova',
             "can't load plugin: sqlalchemy.dialects:nosuchdb"),
            ('postgresql+psycopg2://nova:secret@127.0.0.1:9/nova',
             'cannot connect to the database')):
        config_file.write_text(
            '[DEFAULT]\nstate_path = %s\n[database]\nconnection = %s\n'
            'max_retries = 1\nretry_interval = 0\n' % (tmp_path, url))
        result = _nova_manage(config_file, 'db', 'sync')
        assert result.returncode == 1
        assert words in result.stderr.lower()
        assert 'secret' not in result.stderr
        assert 'Traceback' not in result.stderr


@pytest.mark.parametrize('url', ['postgresql://nova@db/nova',
                                 'mysql+pymysql://nova@db/nova'])
def test_offline_sql_adds_both_columns(url, capsys):
    # ``alembic upgrade --sql`` for a DBA to review and run: no database
    # is reached (the host in the URL does not exist), nothing inspected.
    from alembic import command
    config = migration._alembic_config()
    config.set_main_option('sqlalchemy.url', url)

    command.upgrade(config, 'ab450ba04102:head', sql=True)

    sql = capsys.readouterr().out
    for table in ('block_device_mapping', 'shadow_block_device_mapping'):
        assert 'ALTER TABLE %s ADD COLUMN driver_info TEXT' % table in sql
    assert "version_num='ddd52e84a43c'" in sql.replace(' ', '')

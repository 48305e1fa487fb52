"""The database check every nova-libvirt command makes first, on SQLite,
PostgreSQL and MariaDB: a database at the head is used as it is (without
alembic, see tests/unit/cmd/test_startup.py); an old SQLite file is
upgraded by the first command; an empty server database is created; a
server database at another revision is refused and left as it was."""

import subprocess

import pytest
import sqlalchemy as sa

from nova.db import migration
from tests.functional.cmd.runner import CLI
from tests.functional.cmd.runner import script
from tests import fixtures

INITIAL = 'ab450ba04102'  # Nova 34.0.0's head, the first revision here


@pytest.fixture(params=fixtures.BACKENDS)
def db_url(request, tmp_path):
    if request.param == 'sqlite':
        yield 'sqlite:///%s' % (tmp_path / 'state' / 'nova.sqlite')
        return
    if not fixtures.server_admin_url(request.param):
        pytest.skip(fixtures.not_configured(request.param))
    with fixtures.ServerDatabase(request.param) as server_db:
        yield server_db.url


def _engine(url):
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def _version(url):
    engine = _engine(url)
    try:
        return migration.db_version(engine=engine)
    finally:
        engine.dispose()


def _migrate_to(url, version):
    engine = _engine(url)
    try:
        migration.db_sync(version, engine=engine)
    finally:
        engine.dispose()


def _cli(tmp_path, url):
    (tmp_path / 'state').mkdir(exist_ok=True)
    return CLI(tmp_path, extra_conf='[database]\nconnection = %s\n' % url)


def test_an_old_database(tmp_path, db_url):
    cli = _cli(tmp_path, db_url)
    head = migration.versions_head()
    _migrate_to(db_url, INITIAL)
    result = cli.run('list', check=False)
    if db_url.startswith('sqlite'):
        # The embedded database is this host's alone: the first command
        # upgrades it, and the next ones find it at the head.
        assert result.returncode == 0, result.stderr
        assert _version(db_url) == head
        assert cli.json('list') == []
        return
    # A server database is shared: nova-manage db sync is the operator's.
    assert result.returncode == 1
    assert INITIAL in result.stderr and 'nova-manage db sync' in (
        result.stderr)
    assert len(result.stderr.splitlines()) == 1
    assert _version(db_url) == INITIAL
    subprocess.run(script('nova-manage') + ['--config-file', str(cli.conf),
                                            'db', 'sync'],
                   check=True, capture_output=True, env=cli.env)
    assert cli.json('list') == []


def test_an_empty_database_is_created(tmp_path, db_url):
    cli = _cli(tmp_path, db_url)
    assert cli.json('list') == []
    assert _version(db_url) == migration.versions_head()
    assert cli.json('list') == []

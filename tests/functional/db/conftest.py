"""pytest fixtures for the database tests: one fresh database per test.

``db_url`` runs a test once per backend (SQLite, PostgreSQL, MariaDB) with
an empty database of its own; server backends skip, with the reason, when
their admin URL is not in the environment. ``database`` is the same, migrated
to the newest revision and behind ``nova.db.api``.
"""

import pytest

from nova import context
from tests import fixtures


@pytest.fixture(params=fixtures.BACKENDS)
def db_url(request, tmp_path):
    backend = request.param
    if backend == 'sqlite':
        yield 'sqlite:///%s' % (tmp_path / 'nova.sqlite')
        return
    if not fixtures.server_admin_url(backend):
        pytest.skip(fixtures.not_configured(backend))
    with fixtures.ServerDatabase(backend) as server_db:
        yield server_db.url


@pytest.fixture
def database(db_url):
    with fixtures.Database(connection=db_url) as db:
        yield db


@pytest.fixture
def ctx(database):
    return context.get_admin_context()

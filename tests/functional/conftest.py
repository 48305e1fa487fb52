"""Fixtures shared by the functional tests of every package.

``db`` is a fresh SQLite database, migrated by ``db_sync``, under a private
``state_path``; ``conf`` undoes a test's configuration overrides;
``context`` is an admin RequestContext. A package's conftest overrides one
of these where its tests need more (for example private service paths).
"""

import pytest

from nova import context as nova_context
from tests import fixtures as nova_fixtures


@pytest.fixture
def db():
    """A fresh migrated SQLite database; ``db.engine`` is the SQL API's
    engine for it."""
    fixture = nova_fixtures.Database()
    fixture.setUp()
    yield fixture
    fixture.cleanUp()


@pytest.fixture
def conf(db):
    """CONF overrides for one test, undone afterwards."""
    overrides = nova_fixtures.ConfOverrides()
    yield overrides
    overrides.undo()


@pytest.fixture
def context(db):
    return nova_context.get_admin_context()

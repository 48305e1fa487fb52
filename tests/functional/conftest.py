"""Fixtures shared by the functional tests of every package.

``db`` is a fresh SQLite database, migrated by ``db_sync``, under a private
``state_path``; ``conf`` undoes a test's configuration overrides;
``context`` is an admin RequestContext. A package's conftest overrides one
of these where its tests need more (for example private service paths).

``lvm_vg`` is the LVM volume group of this test session (a group of its
own, see lvm_harness.py), with LVM and ``storage.lvm.device_path`` pointed
at it.
"""

import types

import pytest

from nova import context as nova_context
from nova.virt.libvirt.storage import lvm
from tests import fixtures as nova_fixtures
from tests.functional import lvm_harness


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


@pytest.fixture
def src_dir(tmp_path):
    """Where test images are built before they enter an image store."""
    path = tmp_path / 'src'
    path.mkdir()
    return str(path)


@pytest.fixture(scope='session')
def lvm_session_vg(tmp_path_factory):
    """This session's own volume group (lvm_harness.session_group), made
    the first time a test asks for LVM and removed at the end of the
    session; skips (outside CI) without tools/services/lvm.sh."""
    if not lvm_harness.available():
        pytest.skip('no test volume group: run under tools/with-services.sh '
                    'with the lvm service')
    with lvm_harness.session_group(
            directory=str(tmp_path_factory.mktemp('lvm'))) as private:
        yield private[lvm_harness.ENV_VG]


@pytest.fixture
def lvm_vg(monkeypatch, lvm_session_vg):
    """The session's volume group, with LVM and ``storage.lvm.device_path``
    pointed at it.

    Yields vg (its name) and aliases (LoopAliases). Afterwards every
    volume the test made and left is removed and every loop device over
    the session's PV detached: only this session uses that group, so
    nothing of another test run is touched.
    """
    aliases = lvm_harness.install(monkeypatch.setenv)
    before = set(lvm.volumes(lvm_session_vg))
    try:
        yield types.SimpleNamespace(vg=lvm_session_vg, aliases=aliases)
    finally:
        lvm_harness.uninstall()
        aliases.detach_all()
        lvm_harness.remove_volumes(
            lvm_session_vg, set(lvm.volumes(lvm_session_vg)) - before)

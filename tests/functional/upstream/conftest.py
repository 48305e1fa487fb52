"""Fixtures of the tests against the real Nova 34.0.0.

``nova34`` is a database of its own (once per backend: SQLite, PostgreSQL,
MariaDB, as ``db_url`` of tests/functional/db) that upstream Nova 34.0.0's
own ``nova-manage api_db sync`` and ``db sync`` created, and the means to
run upstream's code on it: ``nova34.manage(...)`` and
``nova34.worker(action, ...)`` (see nova34_worker.py), each in a process
of its own with the Python of the venv that tools/upstream/venv.sh makes
(``NOVA_TEST_UPSTREAM_PYTHON``; tools/with-services.sh exports it).
"""

import json
import os
import subprocess

import pytest

from tests.functional.db.conftest import db_url  # noqa: F401

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      'nova34_worker.py')
TIMEOUT = 600


class Nova34:
    """Upstream Nova 34.0.0 pointed at one database.

    :param python: the upstream venv's python.
    :param url: the main database's URL (the API database is a SQLite
        file beside the config: nothing here uses it but db sync).
    :param workdir: a directory outside this project's tree: upstream runs
        there, so that this project's ``nova`` cannot shadow upstream's.
    """

    def __init__(self, python, url, workdir):
        self.python = python
        self.url = url
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.config_file = os.path.join(self.workdir, 'nova.conf')
        with open(self.config_file, 'w') as f:
            f.write('[database]\nconnection = %s\n'
                    '[api_database]\nconnection = sqlite:///%s\n' % (
                        url, os.path.join(self.workdir, 'nova_api.sqlite')))

    def _run(self, argv, stdin=None):
        env = dict(os.environ, OS_NOVA_DISABLE_EVENTLET_PATCHING='1')
        env.pop('PYTHONPATH', None)
        result = subprocess.run(argv, cwd=self.workdir, env=env, input=stdin,
                                capture_output=True, text=True,
                                timeout=TIMEOUT)
        if result.returncode != 0:
            raise AssertionError('Nova 34 %s failed (%d): %s' % (
                ' '.join(argv[1:4]), result.returncode, result.stderr[-3000:]))
        return result.stdout

    def manage(self, *args):
        """Run upstream's ``nova-manage --config-file ... ARGS``."""
        script = os.path.join(os.path.dirname(self.python), 'nova-manage')
        return self._run([script, '--config-file', self.config_file, *args])

    def worker(self, action, *args, stdin=None):
        """Run an action of nova34_worker.py; its JSON output, loaded."""
        out = self._run([self.python, '-P', WORKER, '--config-file',
                         self.config_file, action, *args], stdin=stdin)
        return json.loads(out)


@pytest.fixture(scope='session')
def upstream_python():
    python = os.environ.get('NOVA_TEST_UPSTREAM_PYTHON')
    if not python:
        pytest.skip('Nova 34.0.0 not configured: run tools/upstream/venv.sh '
                    'and export NOVA_TEST_UPSTREAM_PYTHON (or run the tests '
                    'under tools/with-services.sh)')
    return python


@pytest.fixture
def nova34(db_url, upstream_python, tmp_path_factory):  # noqa: F811
    """A database as Nova 34.0.0's own db sync made it; see the module."""
    nova = Nova34(upstream_python, db_url,
                  tmp_path_factory.mktemp('nova34', numbered=True))
    nova.manage('api_db', 'sync')
    nova.manage('db', 'sync')
    return nova

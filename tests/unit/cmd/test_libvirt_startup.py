"""--help and usage errors import neither the database nor the objects
layer (fast start; see bench/bench_startup.py for the times)."""

import json
import subprocess
import sys

HEAVY = ('nova.db', 'nova.objects', 'nova.virt', 'oslo_versionedobjects',
         'oslo_messaging', 'sqlalchemy', 'alembic', 'libvirt')

_PROBE = """
import contextlib, io, json, sys
from nova.cmd import libvirt
with contextlib.redirect_stdout(io.StringIO()), \\
        contextlib.redirect_stderr(io.StringIO()):
    status = libvirt.main(sys.argv[1:])
print(json.dumps([status, sorted(sys.modules)]))
"""


def _modules_after(*args):
    result = subprocess.run([sys.executable, '-c', _PROBE] + list(args),
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_help_and_usage_errors_import_nothing_heavy():
    for args, expected in ((['--help'], 0), (['boot', '--help'], 0),
                           (['nosuch'], 2), (['-f', 'yaml', 'list'], 2),
                           (['--version'], 0)):
        status, modules = _modules_after(*args)
        assert status == expected, args
        heavy = [m for m in modules if m.split('.')[0] in HEAVY or
                 m.startswith(HEAVY)]
        assert heavy == [], (args, heavy)

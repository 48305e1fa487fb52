"""What nova-libvirt imports before it answers (fast start; see
bench/bench_startup.py for the times).

--help and usage errors import neither the database nor the objects layer.
``list`` and ``image-list`` on a database at the head import the
database layer only: not alembic (the head is recognised without it), not
the objects layer (oslo.versionedobjects imports oslo.messaging,
oslo.service and eventlet) and not the driver. Each probe runs in a fresh
interpreter.
"""

import json
import subprocess
import sys

import pytest

from nova.db import migration

HEAVY = ('nova.db', 'nova.objects', 'nova.virt', 'oslo_versionedobjects',
         'oslo_messaging', 'sqlalchemy', 'alembic', 'libvirt')

#: Never imported by ``list`` on a database at the head.
NOT_FOR_LIST = ('alembic', 'mako', 'pygments', 'oslo_versionedobjects',
                'oslo_messaging', 'oslo_service', 'eventlet', 'dns',
                'nova.objects', 'nova.virt.libvirt.driver',
                'nova.virt.libvirt.imagebackend', 'nova.cmd.instances')

_PROBE = """
import contextlib, io, json, sys
from nova.cmd import libvirt
out = io.StringIO()
with contextlib.redirect_stdout(out), \\
        contextlib.redirect_stderr(io.StringIO()):
    status = libvirt.main(sys.argv[1:])
print(json.dumps([status, sorted(sys.modules), out.getvalue()]))
"""

# An instance as a boot records it before its disks exist (no qemu-img,
# no hypervisor): through the objects layer, as boot does.
_CREATE = """
import socket
import sys
from nova import conf, context, objects
conf.CONF(['--config-file', sys.argv[1]], project='nova')
objects.register_all()
objects.Instance(
    context.get_admin_context(), uuid=sys.argv[2], display_name='probe',
    host=socket.gethostname(), node=socket.gethostname(), image_ref='img',
    root_gb=1, ephemeral_gb=2,
    flavor=objects.Flavor.from_sizes(1, 2, 64), vm_state=sys.argv[3],
    task_state=None, power_state=1).create()
"""

UUID = '0e0d7ba1-5b4e-4c6f-9a57-2f64b4a1c0de'


def _modules_after(*args):
    result = subprocess.run([sys.executable, '-c', _PROBE] + list(args),
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def _among(modules, names):
    return [m for m in modules if m.split('.')[0] in names or
            m.startswith(tuple(n + '.' for n in names)) or m in names]


def test_help_and_usage_errors_import_nothing_heavy():
    for args, expected in ((['--help'], 0), (['boot', '--help'], 0),
                           (['nosuch'], 2), (['-f', 'yaml', 'list'], 2),
                           (['--version'], 0)):
        status, modules, _out = _modules_after(*args)
        assert status == expected, args
        heavy = [m for m in modules if m.split('.')[0] in HEAVY or
                 m.startswith(HEAVY)]
        assert heavy == [], (args, heavy)


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / 'nova.conf'
    path.write_text('[DEFAULT]\nstate_path = %s\n' % (tmp_path / 'state'))
    return str(path)


def _create_instance(conf, vm_state):
    subprocess.run([sys.executable, '-c', _CREATE, conf, UUID, vm_state],
                   check=True, capture_output=True, text=True)


def test_list_at_head_imports_neither_alembic_nor_the_objects_layer(conf):
    # The first command creates the database (alembic is imported then).
    status, modules, out = _modules_after('--config-file', conf, '-f',
                                          'json', 'list')
    assert (status, json.loads(out)) == (0, [])
    assert 'alembic' in modules
    _create_instance(conf, 'active')

    status, modules, out = _modules_after('--config-file', conf, '-f',
                                          'json', 'list')
    assert status == 0
    assert _among(modules, NOT_FOR_LIST) == []
    [listed] = json.loads(out)
    assert (listed['uuid'], listed['swap_mb'], listed['ephemeral_gb'],
            listed['power_state'], listed['domain_state']) == (
        UUID, 64, 2, 'running', 'not defined')


def test_image_list_at_head_imports_neither(conf):
    _modules_after('--config-file', conf, 'list')
    status, modules, out = _modules_after('--config-file', conf, '-f',
                                          'json', 'image-list')
    assert (status, json.loads(out)) == (0, [])
    assert _among(modules, NOT_FOR_LIST) == []


def test_list_prints_what_the_objects_layer_prints(conf):
    _modules_after('--config-file', conf, 'list')
    _create_instance(conf, 'active')
    for fmt in ('json', 'table'):
        _status, _modules, fast = _modules_after('--config-file', conf,
                                                 '-f', fmt, 'list')
        # The same command through the objects layer (instances.cmd_list,
        # the path for instances that need a repair).
        result = subprocess.run([sys.executable, '-c', (
            'import sys\nfrom nova.cmd import libvirt\n'
            'libvirt._ACTIONS["list"] = "nova.cmd.instances:cmd_list"\n'
            'sys.exit(libvirt.main(sys.argv[1:]))'),
            '--config-file', conf, '-f', fmt, 'list'],
            capture_output=True, text=True, check=True)
        assert fast == result.stdout, fmt


def test_list_repairs_an_instance_a_boot_left_building(conf):
    # Its boot is gone (its lock is free): list takes the objects layer's
    # path, which saves the state the boot could not.
    _modules_after('--config-file', conf, 'list')
    _create_instance(conf, 'building')
    status, modules, out = _modules_after('--config-file', conf, '-f',
                                          'json', 'list')
    assert status == 0
    assert 'nova.objects.instance' in modules
    [listed] = json.loads(out)
    assert (listed['uuid'], listed['vm_state']) == (UUID, 'error')
    status, modules, out = _modules_after('--config-file', conf, '-f',
                                          'json', 'list')
    assert json.loads(out)[0]['vm_state'] == 'error'
    assert _among(modules, NOT_FOR_LIST) == []


def test_versions_head_is_alembics_head():
    # The cheap check's head is the one alembic would upgrade to.
    assert migration.versions_head() == (
        migration.get_script_directory().get_current_head())


def _revision_file(directory, name, text):
    (directory / ('%s.py' % name)).write_text(text)


def test_versions_head_names_one_head_or_none(tmp_path):
    _revision_file(tmp_path, '__init__', '')
    _revision_file(tmp_path, 'a_first', "revision = 'a'\n"
                   "down_revision = None\n")
    assert migration.versions_head(str(tmp_path)) == 'a'
    # Alembic's newer template annotates them.
    _revision_file(tmp_path, 'b_second', "revision: str = 'b'\n"
                   "down_revision: str | None = 'a'\n")
    assert migration.versions_head(str(tmp_path)) == 'b'
    # Two heads: alembic has to decide (it refuses to pick one).
    _revision_file(tmp_path, 'c_branch', "revision = 'c'\n"
                   "down_revision = 'a'\n")
    assert migration.versions_head(str(tmp_path)) is None
    _revision_file(tmp_path, 'd_merge', "revision = 'd'\n"
                   "down_revision = ('b', 'c')\n")
    assert migration.versions_head(str(tmp_path)) == 'd'
    # A file it cannot read alone: alembic decides.
    for unreadable in ("revision = 'e' + ''\n", "revision = 'e'\ndef (\n"):
        _revision_file(tmp_path, 'e_unreadable', unreadable)
        assert migration.versions_head(str(tmp_path)) is None

"""The project's layout rules, checked on the code itself (its syntax tree,
so docstrings and help texts that name an option do not count):

* layout configuration is read in imagebackend/policy.py alone (and in
  imagebackend/legacy.py, the inference for old disks, when it lands);
* ``driver_info`` is assigned in imagebackend/manager.py alone (and
  legacy.py, and the objects that define it);
* the image cache's directory (``[image_cache] subdirectory_name``) is
  known to imagebackend/cache.py alone;
* SQL (SQLAlchemy, alembic) is imported under nova/db/ alone.
"""

import ast
import os

import pytest

import nova

NOVA_DIR = os.path.dirname(os.path.abspath(nova.__file__))

LAYOUT_OPTIONS = {'images_type', 'use_cow_images', 'force_raw_images',
                  'images_volume_group', 'images_rbd_pool',
                  'preallocate_images', 'sparse_logical_volumes'}
SQL_MODULES = ('sqlalchemy', 'alembic')
LAYOUT_READERS = {'virt/libvirt/imagebackend/policy.py',
                  'virt/libvirt/imagebackend/legacy.py'}
DRIVER_INFO_WRITERS = {'virt/libvirt/imagebackend/manager.py',
                       'virt/libvirt/imagebackend/legacy.py'}


def _modules():
    for root, _dirs, files in os.walk(NOVA_DIR):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, NOVA_DIR)
                with open(path) as f:
                    yield rel, ast.parse(f.read(), filename=path)


def _conf_reads(tree):
    """Attribute reads like CONF.use_cow_images or CONF.libvirt.images_type
    (and getattr(CONF..., 'images_type'))."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in LAYOUT_OPTIONS:
            yield node.lineno, node.attr
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == 'getattr' and len(node.args) >= 2 and
              isinstance(node.args[1], ast.Constant) and
              node.args[1].value in LAYOUT_OPTIONS):
            yield node.lineno, node.args[1].value


def _driver_info_writes(tree):
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and \
                    target.attr == 'driver_info':
                yield node.lineno
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == 'setattr' and len(node.args) >= 2 and
                isinstance(node.args[1], ast.Constant) and
                node.args[1].value == 'driver_info'):
            yield node.lineno


def _attribute_reads(tree, name):
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == name]


def _sql_imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or '']
        else:
            continue
        for name in names:
            if name.split('.')[0] in SQL_MODULES:
                yield node.lineno, name


MODULES = dict(_modules())


@pytest.mark.parametrize('rel', sorted(MODULES))
def test_layout_config_is_read_by_policy_alone(rel):
    if rel in LAYOUT_READERS or rel.startswith('conf' + os.sep):
        return
    reads = list(_conf_reads(MODULES[rel]))
    assert reads == [], '%s reads layout configuration: %s' % (rel, reads)


@pytest.mark.parametrize('rel', sorted(MODULES))
def test_driver_info_is_written_by_the_disk_manager_alone(rel):
    if rel in DRIVER_INFO_WRITERS or rel.startswith('objects' + os.sep):
        return
    writes = list(_driver_info_writes(MODULES[rel]))
    assert writes == [], '%s assigns driver_info at lines %s' % (rel, writes)


@pytest.mark.parametrize('rel', sorted(MODULES))
def test_the_image_cache_directory_is_known_to_cache_alone(rel):
    if rel == 'virt/libvirt/imagebackend/cache.py' or rel.startswith(
            'conf' + os.sep):
        return
    reads = _attribute_reads(MODULES[rel], 'subdirectory_name')
    assert reads == [], '%s finds _base itself at lines %s' % (rel, reads)


@pytest.mark.parametrize('rel', sorted(MODULES))
def test_sql_lives_under_db_alone(rel):
    if rel.startswith('db' + os.sep):
        return
    imports = list(_sql_imports(MODULES[rel]))
    assert imports == [], '%s imports %s' % (rel, imports)


def test_the_rules_see_what_they_look_for():
    policy = MODULES['virt/libvirt/imagebackend/policy.py']
    assert {attr for _, attr in _conf_reads(policy)} == LAYOUT_OPTIONS
    manager = MODULES['virt/libvirt/imagebackend/manager.py']
    assert list(_driver_info_writes(manager))
    cache = MODULES['virt/libvirt/imagebackend/cache.py']
    assert _attribute_reads(cache, 'subdirectory_name')
    assert list(_sql_imports(MODULES['db/api.py']))

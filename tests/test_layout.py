"""The test tree mirrors the code (doc/testing.rst, "Where a test lives").

* Every directory under tests/ is a package: helpers are imported by their
  full name, never found through pytest's sys.path insertion.
* ``tests/{unit,functional}/<path>/test_<x>.py`` tests ``nova/<path>/<x>.py``
  or the package ``nova/<path>/<x>/``; ``test_<x>_<aspect>.py`` is one
  aspect of the same module, kept side by side with its other files.
* A package listed in TOPICAL holds tests that no module of nova/ owns;
  each entry says why.

This module is not under tests/unit: it tests the tree of tests, not a
module of nova/.
"""

import os

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
NOVA = os.path.join(ROOT, 'nova')
LEVELS = ('unit', 'functional')

#: Packages of topical tests (paths relative to tests/), with the reason.
TOPICAL = {
    os.path.join('functional', 'upstream'):
        'an existing Nova 34.0.0 deployment, made by the real nova==34.0.0, '
        'upgraded by this project: a flow across the database, the '
        'migrations and the objects that no one module owns',
}


def _directories():
    for path, dirs, _files in os.walk(TESTS):
        dirs[:] = [d for d in dirs if d != '__pycache__']
        yield path


def _test_modules():
    """(level, path under the level, module name) of every test_*.py."""
    for level in LEVELS:
        top = os.path.join(TESTS, level)
        for path, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if d != '__pycache__']
            for name in sorted(files):
                if name.startswith('test_') and name.endswith('.py'):
                    yield level, os.path.relpath(path, top), name[:-3]


def _owner(package, module):
    """The part of nova/ that ``test_<module>.py`` in tests/<level>/<package>
    tests, or None: ``module`` itself or its longest prefix that ends at an
    underscore (``cache_concurrency`` -> ``cache``)."""
    directory = os.path.normpath(os.path.join(NOVA, package))
    name = module[len('test_'):]
    parts = name.split('_')
    for n in range(len(parts), 0, -1):
        candidate = '_'.join(parts[:n])
        for path in (os.path.join(directory, candidate + '.py'),
                     os.path.join(directory, candidate, '__init__.py')):
            if os.path.isfile(path):
                return os.path.relpath(path, ROOT)
    return None


def test_every_test_directory_is_a_package():
    missing = [os.path.relpath(d, ROOT) for d in _directories()
               if not os.path.isfile(os.path.join(d, '__init__.py'))]
    assert missing == []


def test_every_test_module_names_the_module_it_tests():
    strays = []
    for level, package, module in _test_modules():
        if os.path.join(level, package) in TOPICAL:
            continue
        if _owner(package, module) is None:
            strays.append(os.path.join('tests', level, package,
                                       module + '.py'))
    assert strays == [], (
        'test modules that mirror no module of nova/ (name them '
        'test_<module>[_<aspect>].py beside nova/<path>/<module>.py, or '
        'list their package in TOPICAL with the reason): %s' % strays)


def test_topical_packages_exist_and_own_no_module_of_nova():
    for package in TOPICAL:
        assert os.path.isfile(os.path.join(TESTS, package, '__init__.py'))
        level, path = package.split(os.sep, 1)
        assert level in LEVELS, package
        assert not os.path.exists(os.path.join(NOVA, path)), package


@pytest.mark.parametrize('package, module, owner', [
    ('virt/libvirt/imagebackend', 'test_cache',
     'nova/virt/libvirt/imagebackend/cache.py'),
    ('virt/libvirt/imagebackend', 'test_cache_concurrency',
     'nova/virt/libvirt/imagebackend/cache.py'),
    ('virt', 'test_format_ploop', 'nova/virt/format_ploop.py'),
    ('', 'test_objects', 'nova/objects/__init__.py'),
    ('virt/libvirt', 'test_nosuch', None),
    ('virt/libvirt', 'test_driverx', None),
])
def test_owner(package, module, owner):
    assert _owner(package, module) == owner

"""Local disks of libvirt instances, one backend per layout.

The contract names are importable from here (``Flat``, ``Qcow2``, ``Lvm``,
``Ploop``, ``Image``, ``DiskManager``, ``BACKENDS``, ``backend_for``,
``ImageCache``, ``CacheEntry``, ``get_cache``). They are resolved on first
use, so that importing one module of the package (``specs``, which the
record's object reads) does not import the whole package, and no module of
it ever needs to import the package itself.

Where each lives: ``base.py`` (the contract), ``file.py`` and ``block.py``
(the mid-levels), one module per backend, ``specs.py`` (one spec per
backend), ``backends.py`` (the registry), ``cache.py``, ``policy.py``,
``manager.py``.
"""

import importlib

#: Contract name -> the module of this package that defines it.
_EXPORTS = {
    'BACKENDS': 'backends',
    'backend_for': 'backends',
    'Flat': 'flat',
    'Qcow2': 'qcow2',
    'Lvm': 'lvm',
    'Ploop': 'ploop',
    'Image': 'base',
    'DiskManager': 'manager',
    'CacheEntry': 'cache',
    'ImageCache': 'cache',
    'get_cache': 'cache',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError('module %r has no attribute %r' % (
            __name__, name)) from None
    value = getattr(importlib.import_module('%s.%s' % (__name__, module)),
                    name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))

"""Local disks of libvirt instances, one backend per layout.

``backend_for(instance, record)`` returns the backend object that serves a
disk's persisted record (``LibvirtDiskMetadata``); ``BACKENDS`` maps each
recorded backend name to its class. A new backend is one module and one
entry in the table.
"""

from nova import exception
from nova.virt.libvirt.imagebackend.base import Image
from nova.virt.libvirt.imagebackend.cache import CacheEntry
from nova.virt.libvirt.imagebackend.cache import get_cache
from nova.virt.libvirt.imagebackend.cache import ImageCache
from nova.virt.libvirt.imagebackend.flat import Flat
from nova.virt.libvirt.imagebackend.manager import DiskManager  # noqa
from nova.virt.libvirt.imagebackend.qcow2 import Qcow2

__all__ = ['BACKENDS', 'CacheEntry', 'DiskManager', 'Flat', 'Image',
           'ImageCache', 'Qcow2', 'backend_for', 'get_cache']

#: record.backend -> the class that serves it.
BACKENDS = {
    Flat.backend_name: Flat,
    Qcow2.backend_name: Qcow2,
}


def backend_for(instance, record, cache=None):
    """Return the backend object for one disk, built from its record alone.

    :param instance: anything with a ``uuid``.
    :param record: the disk's LibvirtDiskMetadata.
    :param cache: an ImageCache (default: the process-wide one).
    :raises: BackendUnavailable if this host has no such backend.
    """
    try:
        cls = BACKENDS[record.backend]
    except KeyError:
        raise exception.BackendUnavailable(
            instance_uuid=getattr(instance, 'uuid', None),
            disk_name=record.disk_name, backend=record.backend,
            reason='no backend of that name here (have: %s)' %
                   ', '.join(sorted(BACKENDS)))
    return cls(instance, record, cache=cache)

"""The registry: which class serves each recorded backend.

``BACKENDS`` maps ``record.backend`` to its class; ``backend_for`` builds
the backend object of one disk from its record alone. A new backend is one
entry here (plus its module and its spec in ``specs.py``).
"""

from nova import exception
from nova.virt.libvirt.imagebackend import flat
from nova.virt.libvirt.imagebackend import lvm
from nova.virt.libvirt.imagebackend import ploop
from nova.virt.libvirt.imagebackend import qcow2

#: record.backend -> the class that serves it.
BACKENDS = {cls.spec.name: cls for cls in (
    flat.Flat,
    qcow2.Qcow2,
    lvm.Lvm,
    ploop.Ploop,
)}


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

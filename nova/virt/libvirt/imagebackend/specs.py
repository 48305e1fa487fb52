"""One spec per backend: the facts every layer reads about it.

A spec is data only (no I/O, no imports beyond field names), so that the
record (``nova.objects.libvirt_disk``), the planner (``policy.py``) and the
backends themselves read the same facts from one place:

* the formats a backend can hold, and the one a new disk gets;
* whether a disk is an overlay over its cached base (``backing_format``);
* the location fields its record needs, and the option that names its
  container (a volume group, a pool);
* whether its disks can be preallocated, and how libvirt reaches them.

Adding a backend is one spec here, one module and one entry in
``backends.BACKENDS``.
"""

import dataclasses

from nova.objects import fields

#: How qemu-img names each recorded format (pinned with ``-f``).
QEMU_FORMATS = {
    fields.DiskFormat.RAW: 'raw',
    fields.DiskFormat.QCOW2: 'qcow2',
    fields.DiskFormat.PLOOP: 'parallels',
}


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    """What one backend is, as data.

    ``name``: the record's ``backend`` (``lvm``).
    ``formats``: the formats a record of this backend may say (``('raw',)``).
    ``disk_format``: the format of every new disk, or None when a disk
    takes the format its cached base was kept in (Flat: a copy of it).
    ``overlay``: the disk sits on its cached base, whose format the record
    must keep as ``backing_format`` (Qcow2).
    ``records_base``: the record keeps the format of the cached base the
    disk is built from as ``backing_format`` (optional, raw when absent),
    though the disk does not sit on it (Lvm: ``qemu-img convert -f
    <backing_format>`` into the volume). Implied by ``overlay``.
    ``container``: (record field, ``[libvirt]`` option) naming where the
    backend's volumes live (``('volume_group', 'images_volume_group')``),
    or None for disks under ``instances_path``.
    ``location``: the record fields a disk of this backend needs.
    ``preallocatable``: ``preallocate_images = space`` applies.
    ``source_type``: libvirt's ``<disk type=...>`` (file, block, network).
    """

    name: str
    formats: tuple
    disk_format: str = None
    overlay: bool = False
    records_base: bool = False
    container: tuple = None
    preallocatable: bool = False
    source_type: str = 'file'

    @property
    def location(self):
        if self.container is None:
            return ()
        return (self.container[0], 'volume_name')

    def new_disk_format(self, base_format):
        """The format of a new disk whose cached base is ``base_format``
        (the image as kept in the cache, or a raw template)."""
        return self.disk_format or base_format

    def new_backing_format(self, base_format):
        """The record's ``backing_format`` for such a disk (or None)."""
        if self.overlay:
            return base_format
        if self.records_base and base_format != fields.DiskFormat.RAW:
            # Absent means raw: a record says only what it must.
            return base_format
        return None

    @property
    def keeps_base_format(self):
        return self.overlay or self.records_base


FLAT = BackendSpec(
    name=fields.DiskBackend.FLAT,
    formats=(fields.DiskFormat.RAW, fields.DiskFormat.QCOW2),
    preallocatable=True)

QCOW2 = BackendSpec(
    name=fields.DiskBackend.QCOW2,
    formats=(fields.DiskFormat.QCOW2,),
    disk_format=fields.DiskFormat.QCOW2,
    overlay=True,
    preallocatable=True)

LVM = BackendSpec(
    name=fields.DiskBackend.LVM,
    formats=(fields.DiskFormat.RAW,),
    disk_format=fields.DiskFormat.RAW,
    records_base=True,
    container=('volume_group', 'images_volume_group'),
    source_type='block')

RBD = BackendSpec(
    name=fields.DiskBackend.RBD,
    formats=(fields.DiskFormat.RAW,),
    disk_format=fields.DiskFormat.RAW,
    container=('rbd_pool', 'images_rbd_pool'),
    source_type='network')

PLOOP = BackendSpec(
    name=fields.DiskBackend.PLOOP,
    formats=(fields.DiskFormat.PLOOP,),
    disk_format=fields.DiskFormat.PLOOP)

#: record.backend -> its spec; every backend name a record may hold.
SPECS = {spec.name: spec for spec in (FLAT, QCOW2, LVM, RBD, PLOOP)}

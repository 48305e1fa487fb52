"""Flat: a standalone file in the recorded format (raw or qcow2).

The disk is a copy of the cached base (or template), made sparse (a
reflink where the filesystem can, else only the data extents), then grown
to the recorded size:

* raw: the base was kept raw, the copy is raw, growing is a truncate (no
  process: the record says the file is raw, so nothing needs to read it);
* qcow2: the base was kept qcow2 (force_raw_images off, qcow2 image), the
  copy is a standalone qcow2, growing is ``qemu-img resize -f qcow2``.

This matches upstream Nova's Flat layout per case (a ``cp`` of the base,
extended), minus the zeros upstream writes out.
"""

import os

from oslo_log import log as logging

from nova import exception
from nova.objects import fields
from nova.virt.libvirt.imagebackend import file
from nova.virt.libvirt.imagebackend import specs
from nova.virt import qemu_img
from nova.virt import sparse
from nova.virt import staging

LOG = logging.getLogger(__name__)


class Flat(file.FileImage):
    """A standalone file disk (see the module docstring)."""

    spec = specs.FLAT

    def _image_cache_format(self):
        # A flat disk is a copy of its base, so the base is kept in the
        # disk's own format (the policy recorded force_raw_images there).
        return self.record.format

    def _create_from_entry(self, part, entry, size):
        # The checked base's descriptor into the part's: neither name is
        # used again once opened (a reflink where the filesystem can).
        src = self._open_source(entry)
        try:
            sparse.copy_fd(src, part.fd)
        finally:
            os.close(src)
        if size > entry.virtual_size:
            self._grow(part, size)

    def _create_from_template(self, part, entry, size):
        if self.record.format == fields.DiskFormat.RAW:
            self._create_from_entry(part, entry, size)
            return
        # A qcow2 flat disk from a (raw) template: both formats pinned,
        # both files given to qemu-img as their descriptors.
        src = self._open_source(entry)
        try:
            qemu_img.convert(staging.fd_path(src), 'raw', part.path,
                             self.qemu_format)
        finally:
            os.close(src)

    def _expected_layout(self):
        # A flat qcow2 disk is standalone: nothing under it, no data-file.
        if self.record.format == fields.DiskFormat.RAW:
            return None
        return {'backing_file': None, 'backing_format': None}

    def _grow(self, target, size):
        """Grow the open disk ``target`` (a staging.Part or an OpenDisk).

        raw: ``ftruncate`` of its descriptor, after checking its size on
        that same descriptor (truncate would silently cut the guest's data
        off); qcow2: ``qemu-img resize`` of the descriptor (see
        ``_grow_qcow2``).
        """
        if self.record.format != fields.DiskFormat.RAW:
            self._grow_qcow2(target, size)
            return
        current = os.fstat(target.fd).st_size
        if current > size:
            raise exception.DiskShrinkNotSupported(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                current=current, requested=size)
        if current < size:
            os.ftruncate(target.fd, size)

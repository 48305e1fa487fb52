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
import stat

from oslo_log import log as logging

from nova import exception
from nova.objects import fields
from nova.virt.libvirt.imagebackend import file
from nova.virt.libvirt.imagebackend import specs
from nova.virt import qemu_img
from nova.virt import sparse

LOG = logging.getLogger(__name__)


class Flat(file.FileImage):
    """A standalone file disk (see the module docstring)."""

    spec = specs.FLAT

    def _image_cache_format(self):
        # A flat disk is a copy of its base, so the base is kept in the
        # disk's own format (the policy recorded force_raw_images there).
        return self.record.format

    def _create_from_entry(self, path, entry, size):
        with self._exclusive(path):
            sparse.sparse_copy(entry.path, path, mode=file.DISK_MODE)
        if size > entry.virtual_size:
            self._grow(path, size)

    def _create_from_template(self, path, entry, size):
        if self.record.format == fields.DiskFormat.RAW:
            self._create_from_entry(path, entry, size)
            return
        # A qcow2 flat disk from a (raw) template: both formats pinned.
        self._reserve(path)
        qemu_img.convert(entry.path, 'raw', path, self.qemu_format)

    def _expected_layout(self):
        # A flat qcow2 disk is standalone: nothing under it, no data-file.
        if self.record.format == fields.DiskFormat.RAW:
            return None
        return {'backing_file': None, 'backing_format': None}

    def _grow(self, path, size):
        if self.record.format != fields.DiskFormat.RAW:
            qemu_img.resize(path, self.qemu_format, size)
            return
        # One descriptor for the check and the truncate, opened without
        # following a link planted at the disk's name (ELOOP), nor blocking
        # on a FIFO: the size checked is the size of the file that grows.
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC |
                     os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise exception.DiskResizeFailed(
                    instance_uuid=self.instance_uuid,
                    disk_name=self.disk_name, reason='not a regular file')
            if st.st_size > size:
                # truncate would silently cut the guest's data off.
                raise exception.DiskShrinkNotSupported(
                    instance_uuid=self.instance_uuid,
                    disk_name=self.disk_name, current=st.st_size,
                    requested=size)
            if st.st_size < size:
                os.ftruncate(fd, size)
        finally:
            os.close(fd)

"""Ploop: a ploop disk directory per disk.

The disk is the directory ``$instances_path/<uuid>/<disk_name>/`` holding
``root.hds`` (a ploop1 delta, which qemu-img reads and writes as format
``parallels``) and ``DiskDescriptor.xml``:

* made with ``ploop init -t none`` (no filesystem: nothing is mounted)
  at the recorded size, then filled from the cached base (raw, or the
  template) with ``qemu-img convert -n -f raw -O parallels``;
* grown with ``ploop grow`` on the descriptor, offline;
* built in a private part directory and renamed into place, as every file
  disk (``file.FileImage``).

Everything here works without the ploop kernel module; what needs it
(mounting, resizing a filesystem inside) is refused with
``PloopOperationUnsupported``.
"""

import os
import shutil
import stat

from oslo_log import log as logging

from nova import exception
from nova import utils
from nova.objects import fields
from nova.virt.libvirt.imagebackend import file
from nova.virt.libvirt.imagebackend import specs
from nova.virt.libvirt.storage import ploop
from nova.virt import qemu_img

LOG = logging.getLogger(__name__)

# The disk directory is private to the service, as a disk file is.
DIR_MODE = 0o700


class Ploop(file.FileImage):
    """A ploop disk directory (see the module docstring)."""

    spec = specs.PLOOP

    @property
    def image_path(self):
        return os.path.join(self.path, ploop.IMAGE_NAME)

    def _image_cache_format(self):
        # qemu-img writes ploop from any format it reads; a raw base needs
        # no second copy of the image's format logic.
        return fields.DiskFormat.RAW

    def _expected_layout(self):
        # A ploop delta made here stands alone.
        return {'backing_file': None, 'backing_format': None}

    def _create_from_entry(self, directory, entry, size):
        if entry.format != fields.DiskFormat.RAW:
            raise exception.CacheEntryInvalid(
                name=entry.name, reason='holds %s, a ploop disk is made '
                'from raw' % entry.format)
        with self._exclusive(directory):
            os.mkdir(directory, DIR_MODE)
        ploop.init(directory, size)
        qemu_img.convert(entry.path, fields.DiskFormat.RAW,
                         os.path.join(directory, ploop.IMAGE_NAME),
                         self.qemu_format, target_exists=True)

    _create_from_template = _create_from_entry

    def _grow(self, directory, size):
        current = ploop.size(directory)
        if size < current:
            raise exception.DiskShrinkNotSupported(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                current=current, requested=size)
        if size > current:
            try:
                ploop.grow(directory, size)
            except exception.ProcessFailed as e:
                if 'kernel module' in str(e):
                    raise exception.PloopOperationUnsupported(
                        instance_uuid=self.instance_uuid,
                        disk_name=self.disk_name,
                        operation='growing it') from e
                raise

    def _finish(self, directory, size):
        # Preallocation of a ploop delta is ploop's own business
        # (specs.PLOOP is not preallocatable).
        pass

    def _publish(self, part, path, instance_dir):
        """Rename the finished part directory to the disk's name.

        A directory cannot be linked; ``rename`` would replace an empty
        directory at the name, so the name is checked just before (one
        instance's operations are serialised, see ``_remove_stale_parts``)
        and the rename itself refuses a non-empty one.
        """
        for name in (ploop.IMAGE_NAME, ploop.DESCRIPTOR_NAME):
            fd = os.open(os.path.join(part, name),
                         os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if os.path.lexists(path):
            raise exception.DiskAlreadyExists(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                location=path)
        try:
            os.rename(part, path)
        except OSError as e:
            raise exception.DiskAlreadyExists(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                location=path) from e
        utils.fsync_dir(instance_dir)

    def _discard(self, path):
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            # rmtree removes links inside, never what they point at.
            shutil.rmtree(path)
        else:
            os.unlink(path)

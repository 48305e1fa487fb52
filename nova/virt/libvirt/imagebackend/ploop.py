"""Ploop: a ploop disk directory per disk.

The disk is the directory ``$instances_path/<uuid>/<disk_name>/`` holding
``root.hds`` (a ploop1 delta, which qemu-img reads and writes as format
``parallels``) and ``DiskDescriptor.xml``:

* made with ``ploop init -t none`` (no filesystem: nothing is mounted)
  at the recorded size, then filled from the cached base (raw, or the
  template) with ``qemu-img convert -n -f raw -O parallels``. An image
  declared ``ploop`` reaches the cache raw too (the verified fetch checks
  it with ``nova.virt.format_ploop`` and converts it): the delta is always
  one the tools wrote, never the image's own file (upstream copies the
  image to ``root.hds`` and runs ``ploop restore-descriptor``);
* sized in whole clusters (1 MiB: a record's size rounded up, as an Lvm
  volume is in whole extents);
* grown with ``ploop grow`` on the descriptor, offline;
* its ``DiskDescriptor.xml`` must list its own ``root.hds`` alone,
  checked whenever the disk is opened or grown (ploop works on the files a
  descriptor names: an absolute path, or ``../``, would reach another
  disk); anything else is ``DiskLayoutMismatch``;
* built in a private part directory (``staging.PartDirectory``, 0700) and
  renamed into place without replacing, as every file disk is built in a
  part (``file.FileImage``); reached, like every file disk, through
  descriptors: the disk directory is opened ``O_NOFOLLOW`` in the instance
  directory, and tools get ``/proc/<pid>/fd/<n>/<file>`` paths.

Everything here works without the ploop kernel module; what needs it
(mounting, resizing a filesystem inside) is refused with
``PloopOperationUnsupported``.
"""

import contextlib
import os
import shutil
import stat

from oslo_log import log as logging

from nova import exception
from nova.objects import fields
from nova.virt.libvirt.imagebackend import file
from nova.virt.libvirt.imagebackend import specs
from nova.virt.libvirt.storage import ploop
from nova.virt import qemu_img
from nova.virt import staging

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

    def _create_from_entry(self, part, entry, size):
        if entry.format != fields.DiskFormat.RAW:
            raise exception.CacheEntryInvalid(
                name=entry.name, reason='holds %s, a ploop disk is made '
                'from raw' % entry.format)
        # ploop resolves the path it is given and then works by name
        # (it writes DiskDescriptor.xml next to the image, takes a .lck
        # file there): the names it resolves are the part's own, inside
        # its private 0700 directory, in an instance directory and an
        # instances_path that only this service may write (StrictModes).
        ploop.init(part.path, size)
        src = self._open_source(entry)
        try:
            with file.opened(part.inside, ploop.IMAGE_NAME,
                             os.O_RDWR) as image:
                qemu_img.convert(staging.fd_path(src),
                                 fields.DiskFormat.RAW,
                                 staging.fd_path(image), self.qemu_format,
                                 target_exists=True)
        finally:
            os.close(src)

    _create_from_template = _create_from_entry

    def _grow(self, target, size):
        # target.path is the disk directory's descriptor (see above for
        # what ploop then does by name, all inside the service's own
        # directories); ploop grows the image its descriptor names, which
        # _resize_target has just proven to be target.image.
        # resize() refused a size below the record's; a disk is whole
        # clusters, so one already as large as ``size`` is left alone, and
        # one larger (its record lags behind) is never cut.
        try:
            current = ploop.image_size(target.image)
        except ValueError as e:
            raise exception.DiskLayoutMismatch(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                expected='a ploop delta', found=str(e))
        if ploop.whole_clusters(size) < current:
            raise exception.DiskShrinkNotSupported(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                current=current, requested=size)
        if size > current:
            try:
                ploop.grow(target.path, size)
            except exception.ProcessFailed as e:
                if 'kernel module' in str(e):
                    raise exception.PloopOperationUnsupported(
                        instance_uuid=self.instance_uuid,
                        disk_name=self.disk_name,
                        operation='growing it') from e
                raise

    def _finish(self, target, size):
        # Preallocation of a ploop delta is ploop's own business
        # (specs.PLOOP is not preallocatable).
        pass

    def _new_part(self, d):
        return staging.PartDirectory(d, self.disk_name, mode=DIR_MODE)

    def _remove_stale_parts(self, d):
        staging.remove_stale_parts(d, self.disk_name, directories=True)

    @contextlib.contextmanager
    def _open_image(self, d, flags=os.O_RDONLY):
        # The disk's directory, never through a link, then its image.
        with d.subdir(self.disk_name) as disk_dir, \
                self._image_in(disk_dir, flags) as fd:
            yield fd

    @contextlib.contextmanager
    def _image_in(self, disk_dir, flags=os.O_RDONLY):
        """The descriptor of ``root.hds`` in the open disk directory,
        once its DiskDescriptor.xml is checked (``_check_descriptor``)."""
        self._check_descriptor(disk_dir.fd)
        with file.opened(disk_dir, ploop.IMAGE_NAME, flags) as fd:
            yield fd

    def _check_descriptor(self, dir_fd):
        """Refuse a disk directory whose DiskDescriptor.xml lists anything
        but its own ``root.hds``: ploop works on the files a descriptor
        names (an absolute path, or ``../``, reaches out of the directory).

        :raises: DiskLayoutMismatch; FileNotFoundError (no descriptor).
        """
        fd = os.open(ploop.DESCRIPTOR_NAME, os.O_RDONLY | os.O_NOFOLLOW |
                     os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                found = 'a %s that is not a regular file' % (
                    ploop.DESCRIPTOR_NAME)
            else:
                data = os.pread(fd, ploop.MAX_DESCRIPTOR + 1, 0)
                try:
                    files = ploop.descriptor_images(data)
                except ValueError as e:
                    found = 'a %s %s' % (ploop.DESCRIPTOR_NAME, e)
                else:
                    if files == [ploop.IMAGE_NAME]:
                        return
                    found = 'a %s listing %s' % (ploop.DESCRIPTOR_NAME,
                                                 files)
        finally:
            os.close(fd)
        raise exception.DiskLayoutMismatch(
            instance_uuid=self.instance_uuid, disk_name=self.disk_name,
            expected='a %s listing %s alone' % (ploop.DESCRIPTOR_NAME,
                                                ploop.IMAGE_NAME),
            found=found)

    @contextlib.contextmanager
    def _resize_target(self):
        """Yield the disk's directory (never through a link) as a
        ``file.OpenDisk`` whose ``image`` is the descriptor of its
        ``root.hds``, proven as ``verify`` says through those descriptors
        (DiskDescriptor.xml lists root.hds alone; root.hds is a ploop
        delta with nothing under it) right before ploop works there."""
        with self._existing() as d, contextlib.ExitStack() as stack:
            disk_dir = self._enter_safely(stack, d.subdir(self.disk_name))
            with self._proven(self._image_in(disk_dir)) as image:
                yield file.OpenDisk(disk_dir.fd, image=image)

    def _remove_entry(self, d, name):
        try:
            st = d.lstat(name)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            # Through the descriptor of the directory, never following a
            # link inside (or a link swapped in at its name meanwhile).
            shutil.rmtree(name, dir_fd=d.fd)
        else:
            d.unlink(name)
        return True

"""Qcow2: a qcow2 overlay over a cached base.

The disk is ``qemu-img create -f qcow2 -b <base> -F <backing_format>`` of
the recorded size, over the cached base of the image (raw when
force_raw_images was on when the disk was planned, the qcow2 image itself
otherwise: the record's ``backing_format`` says which) or over a raw
template. With a warm cache that one command is the whole cost of the
disk: the base's format and size come from the cache's sidecar and the
disk's from the record, so nothing is probed.

This matches upstream Nova's Qcow2 layout per case. An overlay upstream
Nova made sits on a file of upstream's own name in ``_base``; once its
record is inferred, the record names that (adopted) entry in ``base_name``
and everything here uses it instead of the derived name. No new disk is
ever made over an adopted entry: new disks get this cache's own entries.
"""

import contextlib

from oslo_log import log as logging

from nova import exception
from nova.objects import fields
from nova.virt.libvirt import config
from nova.virt.libvirt.imagebackend import file
from nova.virt.libvirt.imagebackend import specs
from nova.virt import qemu_img
from nova.virt import staging

LOG = logging.getLogger(__name__)


class Qcow2(file.FileImage):
    """A qcow2 overlay disk (see the module docstring)."""

    spec = specs.QCOW2

    def _image_cache_format(self):
        # Asked before anything is fetched for a new disk.
        self._refuse_adopted_base()
        return self.record.backing_format

    def _refuse_adopted_base(self):
        if self.record.base_name:
            # The record names an upstream file: only a disk upstream made
            # sits on it, and that disk exists already.
            raise exception.InvalidInput(
                reason='disk %s of instance %s is recorded over the '
                       'adopted cache entry %s; no disk is created over '
                       'one' % (self.disk_name, self.instance_uuid,
                                self.record.base_name))

    def _check_template_record(self):
        self._refuse_adopted_base()
        if self.record.backing_format != fields.DiskFormat.RAW:
            raise exception.InvalidInput(
                reason='disk %s of instance %s: templates are raw, the '
                       'record says backing format %s' % (
                           self.disk_name, self.instance_uuid,
                           self.record.backing_format))

    def _create_from_entry(self, part, entry, size):
        if entry.format != self.record.backing_format:
            raise exception.CacheEntryInvalid(
                name=entry.name, reason='holds %s, the disk is recorded '
                'over %s' % (entry.format, self.record.backing_format))
        # The overlay names its base by path (that is what qemu opens);
        # the part is written through its descriptor.
        qemu_img.create(part.path, self.qemu_format, size,
                        backing_file=entry.path,
                        backing_fmt=self.record.backing_format)

    _create_from_template = _create_from_entry

    def _grow(self, target, size):
        self._grow_qcow2(target, size)

    @contextlib.contextmanager
    def snapshot_source(self):
        """The overlay and its base, each checked and read through its own
        descriptor: qemu-img is given both (``qemu_img.image_spec``) and
        never opens the base by the name in the overlay's header, which a
        neighbour sharing ``_base`` could have swapped for another file or
        a FIFO since the check (see ``Image.snapshot_source``).

        :raises: also CacheEntryInvalid if the base fails the cache's
            check (``ImageCache.opened_base``).
        """
        base_path = self._base_path()
        with contextlib.ExitStack() as stack:
            fd = stack.enter_context(self._verified_image())
            backing = None
            if base_path is not None:
                _entry, base_fd = stack.enter_context(self.cache.opened_base(
                    base_path, self.record.backing_format))
                backing = (staging.fd_path(base_fd),
                           self.record.backing_format)
            yield qemu_img.image_spec(staging.fd_path(fd), self.qemu_format,
                                      backing=backing), self.qemu_format

    def _base_path(self):
        """The cache file under this disk, from the record (no I/O)."""
        if self.record.base_name:
            return self.cache.path_of(self.record.base_name)
        if self.record.image_id:
            return self.cache.image_path(self.record.image_id,
                                         self.record.backing_format)
        if self.record.cache_name:
            return self.cache.template_path(self.record.cache_name)
        return None

    def _expected_layout(self):
        # Exactly the cached base the record names, in its recorded format.
        base_path = self._base_path()
        return {'backing_file': base_path,
                'backing_format': (self.record.backing_format
                                   if base_path else None)}

    def _backing_store(self):
        base_path = self._base_path()
        if base_path is None:
            return []
        return [config.BackingStore(base_path, self.record.backing_format)]

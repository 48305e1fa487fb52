"""Image: the contract of a local-disk backend, and what every kind shares.

A backend object is built from an instance (anything with a ``uuid``) and
the disk's persisted record (``LibvirtDiskMetadata``), and never from node
configuration: the record says the backend, the format, the size, the
location and the source of the disk. This base owns only what does not
depend on where the disk is kept:

* checking the record against the class's spec (``specs.py``) and the
  arguments of a create against the record (a disk made from another
  image, or with another size, than was recorded is refused);
* ``create_from_image`` / ``create_from_func`` as template methods: fetch
  the base or make the template through the image cache, refuse an image
  larger than the recorded size before any disk byte is written, then
  build the disk in a staging place (``_staged``) that is published
  complete under the disk's name, or removed;
* ``resize`` (grow only, the recorded format pinned);
* turning unexpected failures into ``DiskCreateFailed`` /
  ``DiskResizeFailed`` naming the instance and the disk;
* the common part of the guest's ``<disk>`` element.

Where the disk lives is a mid-level's business, as in Nova's libvirt
volume drivers: ``file.FileImage`` (a file under ``instances_path``:
Flat, Qcow2, Ploop) and ``block.BlockImage`` (a block device: Lvm); a
network backend (Rbd) sits beside them with no local path at all. A
backend module then supplies only what makes it different.
"""

import abc
import contextlib
import dataclasses
import os
import stat

from oslo_log import log as logging

from nova import exception
from nova import utils
from nova.virt.libvirt import config
from nova.virt.libvirt.imagebackend import cache as image_cache
from nova.virt.libvirt.imagebackend import specs
from nova.virt import staging

LOG = logging.getLogger(__name__)

# Kept for callers that name qemu-img formats through this module.
QEMU_FORMATS = specs.QEMU_FORMATS

# Errors that already say precisely what was wrong with the request, and
# that callers handle by type: they pass through the create unchanged.
_PASS_THROUGH = (
    exception.ImageUnacceptable,
    exception.ImageNotFound,
    exception.FlavorDiskSmallerThanImage,
    exception.DiskAlreadyExists,
    exception.DiskCreateFailed,
    exception.UnsafePath,
    exception.UnsafeDirectory,
)


class Image(metaclass=abc.ABCMeta):
    """One local disk of an instance, laid out as its record says.

    :param instance: anything with a ``uuid`` (validated: a canonical
        UUID, so that it is one safe name component).
    :param record: a ``LibvirtDiskMetadata`` whose ``backend`` is this
        class's ``spec.name``; it is validated here.
    :param cache: the ``ImageCache`` to build from (default: the process'
        ``cache.get_cache()``).
    """

    #: This backend's specs.BackendSpec.
    spec = None

    def __init__(self, instance, record, cache=None):
        self.instance_uuid = utils.validate_uuid(
            getattr(instance, 'uuid', None))
        record.validate()
        if record.disk_name.startswith('.'):
            # Hidden names are the backends' bookkeeping (the parts disks
            # are built under): never a disk's.
            raise exception.DiskMetadataInvalid(
                reason='disk name %r of instance %s starts with a dot' % (
                    record.disk_name, self.instance_uuid))
        if record.backend != self.spec.name:
            raise exception.InvalidInput(
                reason='disk %s of instance %s is recorded on backend %s, '
                       'not %s' % (record.disk_name, self.instance_uuid,
                                   record.backend, self.spec.name))
        self.record = record
        self._cache = cache

    def __repr__(self):
        return '<%s %s/%s %s %d bytes from %s>' % (
            type(self).__name__, self.instance_uuid, self.record.disk_name,
            self.record.format, self.record.size, self.record.source)

    @property
    def backend_name(self):
        """The ``record.backend`` value this class serves."""
        return self.spec.name

    @property
    def cache(self):
        return self._cache or image_cache.get_cache()

    @property
    def disk_name(self):
        return self.record.disk_name

    @property
    def qemu_format(self):
        """The recorded format, as qemu-img names it (pinned with -f)."""
        return specs.QEMU_FORMATS[self.record.format]

    # --- the contract --------------------------------------------------------

    def create_from_image(self, context, image_id, size=None):
        """Create the disk from image ``image_id``.

        :param image_id: must be ``record.image_id``.
        :param size: bytes; None means ``record.size``; anything else must
            equal ``record.size``.
        :raises: InvalidInput (arguments disagree with the record),
            DiskAlreadyExists, ImageTooLarge / FlavorDiskSmallerThanImage
            (before any disk byte is written), other ImageUnacceptable and
            ImageNotFound from the fetch, DiskCreateFailed for the rest. On
            any failure nothing this call made is left behind.
        """
        size = self._check_image_args(image_id, size)
        self._refuse_existing()
        with self._create_errors('image %s' % image_id):
            entry = self.cache.ensure_image(
                context, image_id, self._image_cache_format(),
                max_virtual_size=size)
            if entry.virtual_size > size:
                raise exception.FlavorDiskSmallerThanImage(
                    flavor_size=size, image_size=entry.virtual_size)
            with self._staged(size) as target:
                self._create_from_entry(target, entry, size)
                self._finish(target, size)
        LOG.info('Created %(disk)r', {'disk': self})

    def create_from_func(self, context, func, cache_name, size):
        """Create the disk from the template ``cache_name`` made by ``func``.

        :param func: ``func(target, size)`` fills ``target`` (a raw file
            of ``size`` bytes), e.g. mkfs or mkswap; run once per template.
        :param cache_name: must be ``record.cache_name``.
        :param size: bytes; must be ``record.size``.
        :raises: as ``create_from_image``.
        """
        self._check_func_args(func, cache_name, size)
        self._refuse_existing()
        with self._create_errors('template %s' % cache_name):
            entry = self._template(func, cache_name, size)
            with self._staged(size) as target:
                if entry is None:
                    self._run_func(target, func, size)
                else:
                    self._create_from_template(target, entry, size)
                self._finish(target, size)
        LOG.info('Created %(disk)r', {'disk': self})

    def check_available(self):
        """Refuse, before anything is recorded or made, a disk this host
        cannot serve.

        File backends need nothing but ``instances_path``. A backend on
        host resources (a volume group, a Ceph pool) checks here that they
        are there.

        :raises: BackendUnavailable naming the instance, disk and backend.
        """

    @classmethod
    def check_all_available(cls, disks):
        """``check_available()`` for several disks of this class at once.

        A backend on a shared resource checks the disks together (their
        sizes add up) and with one look at it; by default each is checked
        on its own.

        :param disks: backends of this class.
        :raises: BackendUnavailable for the first disk that cannot be
            served.
        """
        for disk in disks:
            disk.check_available()

    @classmethod
    def which_exist(cls, disks):
        """The disks among ``disks`` (backends of this class) that are
        there, looked up together where the backend can (one listing of a
        volume group, say, instead of one per disk).

        :returns: a list, in the order given.
        """
        return [disk for disk in disks if disk.exists()]

    @abc.abstractmethod
    def exists(self):
        """True if the disk is there (complete: see ``_staged``)."""

    @abc.abstractmethod
    def remove(self):
        """Remove the disk, and what a killed create of it left behind;
        removing a missing disk is not an error."""

    def resize(self, size):
        """Grow the disk to ``size`` bytes, with its recorded format pinned.

        Does not write the record: the DiskManager does.

        :raises: DiskShrinkNotSupported (smaller than recorded or than the
            disk), DiskNotFound, DiskLayoutMismatch (see ``verify``; the
            disk is not touched), BackendUnavailable (as ``exists``),
            DiskResizeFailed.
        """
        size = int(size)
        if size < self.record.size:
            raise exception.DiskShrinkNotSupported(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                current=self.record.size, requested=size)
        try:
            # Growing opens the disk with its recorded format: the target
            # comes proven as the record says (DiskLayoutMismatch, nothing
            # done, otherwise), and its lookup is the only one (a missing
            # disk is DiskNotFound there, not after a lookup of its own).
            with self._resize_target() as target:
                self._grow(target, size)
                self._finish(target, size)
        except (exception.DiskShrinkNotSupported, exception.DiskResizeFailed,
                exception.DiskLayoutMismatch, exception.DiskNotFound,
                exception.BackendUnavailable):
            raise
        except (exception.NovaException, OSError) as e:
            raise exception.DiskResizeFailed(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                reason=str(e)) from e
        LOG.info('Resized %(disk)r to %(size)d bytes',
                 {'disk': self, 'size': size})

    def libvirt_info(self, target_dev, target_bus='virtio', cache_mode='none',
                     discard=None):
        """The guest's ``<disk>`` element, from the record alone.

        :param target_dev: e.g. 'vda'; ``target_bus``: e.g. 'virtio';
            ``cache_mode``: libvirt's cache attribute; ``discard``: 'unmap',
            'ignore' or None.
        :returns: config.LibvirtConfigGuestDisk of the spec's source type,
            driver type = record.format, the layers under the disk in
            ``backing_store``.
        """
        return config.LibvirtConfigGuestDisk(
            source_type=self.spec.source_type,
            target_dev=target_dev,
            target_bus=target_bus,
            driver_format=self.record.format,
            driver_cache=cache_mode,
            driver_discard=discard,
            backing_store=self._backing_store(),
            **self._libvirt_source())

    def verify(self):
        """Prove the disk is laid out as its record says, before anything
        opens it with the recorded format (a resize, a guest defined and
        started from the records).

        Nothing to prove for a disk whose format has no metadata (raw);
        the file mid-level checks the rest.

        :raises: DiskNotFound; DiskLayoutMismatch.
        """

    # --- what a mid-level supplies -------------------------------------------

    @abc.abstractmethod
    def _staged(self, size):
        """Context manager: yield a private target to build the disk in
        (a ``staging.Part``, a block device), then publish it under the
        disk's name; on failure remove it. Before building, what a killed
        create of this disk left is removed."""

    @property
    def location(self):
        """Where the disk is, for messages (a path, ``vg/lv``)."""
        return self._location()

    @abc.abstractmethod
    def _location(self):
        """Where the disk is, for messages (a path, ``vg/lv``)."""

    @abc.abstractmethod
    def _libvirt_source(self):
        """The source attributes of the ``<disk>`` element, e.g.
        {'source_path': '/dev/vg/lv'}."""

    @abc.abstractmethod
    def _resize_target(self):
        """Context manager: yield what ``_grow`` and ``_finish`` act on
        for an existing disk (an open file, a volume), held for both, and
        proven as ``verify`` says through what it yields.

        :raises: DiskNotFound; DiskLayoutMismatch.
        """

    def _finish(self, target, size):
        """Last step of a create or a resize at ``target`` (none by
        default; files may preallocate)."""

    # --- what each backend supplies ------------------------------------------

    @abc.abstractmethod
    def _image_cache_format(self):
        """The cache format ('raw' or 'qcow2') this disk is built from."""

    @abc.abstractmethod
    def _create_from_entry(self, target, entry, size):
        """Turn the image's cache entry into the disk at ``target``.

        ``target`` is what ``_staged`` yielded. ``entry`` is a
        cache.CacheEntry no larger than ``size``.
        """

    @abc.abstractmethod
    def _create_from_template(self, target, entry, size):
        """Turn a raw template (of ``size`` bytes) into the disk."""

    @abc.abstractmethod
    def _grow(self, target, size):
        """Grow the disk at ``target`` to ``size`` bytes (never shrink)."""

    def _template(self, func, cache_name, size):
        """The cache entry of the template a disk is built from, made by
        ``func`` once for every disk of its name; or None for a backend
        that runs ``func`` on each new disk's own target instead."""
        return self.cache.ensure_template(cache_name, func, size)

    def _run_func(self, target, func, size):
        """Run ``func`` on the new disk's own ``target``, for a backend
        with no template (see ``_template``)."""
        func(target, size)

    def _backing_store(self):
        """The layers under the disk, top first (none by default)."""
        return []

    def _check_template_record(self):
        """Refuse a record this backend cannot build from a template."""

    # --- shared steps --------------------------------------------------------

    def _check_image_args(self, image_id, size):
        if image_id != self.record.image_id:
            raise exception.InvalidInput(
                reason='disk %s of instance %s is recorded from image %s, '
                       'asked to create it from image %s' % (
                           self.disk_name, self.instance_uuid,
                           self.record.image_id, image_id))
        if size is None:
            size = self.record.size
        self._check_size(size)
        return size

    def _check_func_args(self, func, cache_name, size):
        if not callable(func):
            raise exception.InvalidInput(
                reason='disk %s of instance %s: %r is not callable' % (
                    self.disk_name, self.instance_uuid, func))
        if cache_name is None or cache_name != self.record.cache_name:
            raise exception.InvalidInput(
                reason='disk %s of instance %s is recorded from template '
                       '%s, asked to create it from template %s' % (
                           self.disk_name, self.instance_uuid,
                           self.record.cache_name, cache_name))
        self._check_size(size)
        self._check_template_record()

    def _check_size(self, size):
        if size != self.record.size or not size:
            raise exception.InvalidInput(
                reason='disk %s of instance %s is recorded with %d bytes, '
                       'asked for %r' % (self.disk_name, self.instance_uuid,
                                         self.record.size, size))

    def _refuse_existing(self):
        if self.exists():
            raise exception.DiskAlreadyExists(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                location=self._location())

    @contextlib.contextmanager
    def _create_errors(self, source):
        """Name the instance and disk in any unexpected create failure."""
        try:
            yield
        except _PASS_THROUGH:
            raise
        except Exception as e:
            LOG.error('Creating disk %(disk)s of instance %(uuid)s from '
                      '%(source)s failed: %(error)s',
                      {'disk': self.disk_name, 'uuid': self.instance_uuid,
                       'source': source, 'error': e})
            raise exception.DiskCreateFailed(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                reason='from %s: %s' % (source, e)) from e

    # --- snapshots (nova.virt.libvirt.snapshot) ------------------------------

    @contextlib.contextmanager
    def snapshot_source(self):
        """What a snapshot copies, and how to read it: the recorded format
        pinned, never probed. A context manager: the source stays what it
        names until the block ends (a file disk: a descriptor of the very
        file ``verify`` checked, never its name again).

        :returns: (path, qemu_format): a path qemu-img reads (a file's
            ``staging.fd_path``, a block device), and its format as
            qemu-img names it ('raw', 'qcow2', 'parallels').
        :raises: DiskNotFound, DiskLayoutMismatch (as ``verify``);
            SnapshotFailed for a backend with no local source to copy.
        """
        raise exception.SnapshotFailed(
            name='of disk %s' % self.disk_name,
            instance_uuid=self.instance_uuid,
            reason='backend %s has no local source to copy' %
                   self.backend_name)

    def _open_source(self, entry):
        """A descriptor to read ``entry`` from: a checked cache entry
        (``ImageCache.open_entry``) or a file ``import_file`` opened.
        Copies and tools read that descriptor (``staging.fd_path``), never
        the entry's name. Close it.
        """
        if isinstance(entry, OpenedFile):
            return os.dup(entry.fd)
        return self.cache.open_entry(entry)

    # --- disks imported from a file (the config drive) -----------------------

    def import_file(self, path):
        """Create the disk from the raw file at ``path`` (upstream's
        ``import_file``, for the config drive).

        The file's bytes are copied as raw into the disk (its recorded
        format and size); the rest of the disk reads as zeros. An overlay
        backend (Qcow2) would keep the file as its base and is refused.

        :raises: InvalidInput (the record is not of a disk imported from a
            file, the backend is an overlay, the file is not a regular
            file or is larger than the record), DiskAlreadyExists,
            DiskCreateFailed; on any failure nothing this call made is
            left behind.
        """
        size = self.record.size
        if self.record.source_kind != 'file' or self.spec.overlay:
            raise exception.InvalidInput(
                reason='disk %s of instance %s (%s, from %s) is not made '
                       'from a file' % (self.disk_name, self.instance_uuid,
                                        self.backend_name,
                                        self.record.source))
        # Opened once; the copy reads this descriptor, never the name again.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK |
                     os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > size:
                raise exception.InvalidInput(
                    reason='%s is not a regular file of at most %d bytes' % (
                        path, size))
            self._refuse_existing()
            with self._create_errors('file %s' % path):
                source = OpenedFile(fd=fd, format='raw',
                                    virtual_size=st.st_size,
                                    name=os.path.basename(path))
                with self._staged(size) as target:
                    self._create_from_entry(target, source, size)
                    self._finish(target, size)
        finally:
            os.close(fd)
        LOG.info('Created %(disk)r from %(path)s',
                 {'disk': self, 'path': path})


@dataclasses.dataclass(frozen=True)
class OpenedFile:
    """A file that ``import_file`` opened and checked, read like a cache
    entry (``format``, ``virtual_size``, ``name``) through its descriptor
    ``fd`` (see ``Image._open_source``)."""

    fd: int
    format: str
    virtual_size: int
    name: str

    @property
    def path(self):
        return staging.fd_path(self.fd)

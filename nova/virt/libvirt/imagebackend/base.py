"""Image: the contract of a local-disk backend, and the steps they share.

A backend object is built from an instance (anything with a ``uuid``) and
the disk's persisted record (``LibvirtDiskMetadata``), and never from node
configuration: the record says the backend, the format, the size and the
source of the disk. The base class owns everything that does not depend on
the backend:

* resolving the disk's path (``$instances_path/<uuid>/<disk_name>``, proven
  to stay under ``instances_path``) and creating the instance directory;
* checking the arguments of a create against the record (a disk made from
  another image, or with another size, than was recorded is refused);
* fetching the base or making the template through the image cache, and
  refusing an image larger than the recorded size before any disk byte is
  written;
* building each disk under a private temporary name and publishing it
  complete, atomically, at its final name; removing whatever a failed
  create made, and the leftovers of a killed one (``_new_disk``);
* turning unexpected failures into ``DiskCreateFailed`` /
  ``DiskResizeFailed`` naming the instance and the disk;
* the common part of the guest's ``<disk>`` element.

A subclass (``flat.py``, ``qcow2.py``) implements only what differs: which
cache format it builds from, how it turns a cache entry into its disk, how
it grows, and what lies under the disk (``<backingStore>``).
"""

import abc
import contextlib
import os
import re
import secrets
import stat

from oslo_log import log as logging

import nova.conf
from nova import exception
from nova import utils
from nova.virt.libvirt import config
from nova.virt.libvirt.imagebackend import cache as image_cache
from nova.virt import qemu_img

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

# How qemu-img names each recorded format.
QEMU_FORMATS = {'raw': 'raw', 'qcow2': 'qcow2', 'ploop': 'parallels'}

# New disk files hold guest data: private to the service (libvirt relabels
# them for qemu).
DISK_MODE = 0o600

#: A disk is built as '.<disk_name>.<16 hex>.part' in the instance
#: directory, then published at its name (see Image._new_disk).
PART_SUFFIX = '.part'
_PART_TOKEN_BYTES = 8

# Errors that already say precisely what was wrong with the request, and
# that callers handle by type: they pass through the create unchanged.
_PASS_THROUGH = (
    exception.ImageUnacceptable,
    exception.ImageNotFound,
    exception.FlavorDiskSmallerThanImage,
    exception.DiskAlreadyExists,
    exception.DiskCreateFailed,
)

#: What a verified disk's metadata is compared on, in messages' order.
_LAYOUT_KEYS = ('format', 'backing_file', 'backing_format', 'data_file')


class Image(metaclass=abc.ABCMeta):
    """One local disk of an instance, laid out as its record says.

    :param instance: anything with a ``uuid`` (validated: a canonical
        UUID, so that it is one safe path component).
    :param record: a ``LibvirtDiskMetadata`` whose ``backend`` is this
        class's ``backend_name``; it is validated here.
    :param cache: the ``ImageCache`` to build from (default: the process'
        ``cache.get_cache()``).
    """

    #: The ``record.backend`` value this class serves.
    backend_name = None
    #: The libvirt ``<disk type=...>`` of this backend's disks.
    source_type = 'file'

    def __init__(self, instance, record, cache=None):
        self.instance_uuid = utils.validate_uuid(
            getattr(instance, 'uuid', None))
        record.validate()
        if record.disk_name.startswith('.'):
            # Hidden names are the instance directory's bookkeeping (the
            # parts disks are built under): never a disk's.
            raise exception.DiskMetadataInvalid(
                reason='disk name %r of instance %s starts with a dot' % (
                    record.disk_name, self.instance_uuid))
        if record.backend != self.backend_name:
            raise exception.InvalidInput(
                reason='disk %s of instance %s is recorded on backend %s, '
                       'not %s' % (record.disk_name, self.instance_uuid,
                                   record.backend, self.backend_name))
        self.record = record
        self._cache = cache

    def __repr__(self):
        return '<%s %s/%s %s %d bytes from %s>' % (
            type(self).__name__, self.instance_uuid, self.record.disk_name,
            self.record.format, self.record.size, self.record.source)

    # --- where the disk is ---------------------------------------------------

    @property
    def cache(self):
        return self._cache or image_cache.get_cache()

    @property
    def disk_name(self):
        return self.record.disk_name

    @property
    def instance_dir(self):
        """``$instances_path/<uuid>``, proven to stay under instances_path."""
        return utils.safe_join(CONF.instances_path, self.instance_uuid)

    @property
    def path(self):
        """``$instances_path/<uuid>/<disk_name>``, proven to stay under it."""
        return utils.safe_join(CONF.instances_path, self.instance_uuid,
                               self.record.disk_name)

    @property
    def qemu_format(self):
        """The recorded format, as qemu-img names it (pinned with -f)."""
        return QEMU_FORMATS[self.record.format]

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
            with self._new_disk() as path:
                self._create_from_entry(path, entry, size)
                self._preallocate(path, size)
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
            entry = self.cache.ensure_template(cache_name, func, size)
            with self._new_disk() as path:
                self._create_from_template(path, entry, size)
                self._preallocate(path, size)
        LOG.info('Created %(disk)r', {'disk': self})

    def check_available(self):
        """Refuse, before anything is recorded or made, a disk this host
        cannot serve.

        File backends need nothing but ``instances_path``. A backend on
        host resources (a volume group, a Ceph pool) checks here that they
        are there.

        :raises: BackendUnavailable naming the instance, disk and backend.
        """

    def exists(self):
        """True if the disk's file is there."""
        return os.path.lexists(self.path)

    def remove(self):
        """Remove the disk, and what a killed create of it left behind;
        removing a missing disk is not an error."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
            LOG.info('Removed %(disk)r', {'disk': self})
        self._remove_stale_parts()

    def resize(self, size):
        """Grow the disk to ``size`` bytes, with its recorded format pinned.

        Does not write the record: the DiskManager does.

        :raises: DiskShrinkNotSupported (smaller than recorded or than the
            disk), DiskNotFound, DiskLayoutMismatch (see ``verify``; the
            disk is not touched), DiskResizeFailed.
        """
        size = int(size)
        if size < self.record.size:
            raise exception.DiskShrinkNotSupported(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                current=self.record.size, requested=size)
        if not self.exists():
            raise exception.DiskNotFound(instance_uuid=self.instance_uuid,
                                         disk_name=self.disk_name)
        # Growing opens the disk with its recorded format: first prove the
        # file is what the record says (DiskLayoutMismatch otherwise).
        self.verify()
        try:
            self._grow(self.path, size)
            self._preallocate(self.path, size)
        except (exception.DiskShrinkNotSupported, exception.DiskResizeFailed):
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
        :returns: config.LibvirtConfigGuestDisk, driver type = record.format
            and the layers under the disk in ``backing_store``.
        """
        return config.LibvirtConfigGuestDisk(
            source_type=self.source_type,
            source_path=self.path,
            target_dev=target_dev,
            target_bus=target_bus,
            driver_format=self.record.format,
            driver_cache=cache_mode,
            driver_discard=discard,
            backing_store=self._backing_store())

    def inspect(self):
        """What is on disk, read with the recorded format pinned.

        :returns: {'format': 'qcow2', 'virtual_size': 2147483648,
            'allocated': 200704, 'backing_file': '/.../_base/3f78...',
            'backing_format': 'raw', 'data_file': None} (the backing keys
            are None without a backing file, 'data_file' without an
            external data file).
        :raises: DiskNotFound, ProcessFailed.
        """
        if not self.exists():
            raise exception.DiskNotFound(instance_uuid=self.instance_uuid,
                                         disk_name=self.disk_name)
        info = qemu_img.info(self.path, self.qemu_format)
        return {
            'format': info.get('format'),
            'virtual_size': info.get('virtual-size'),
            'allocated': info.get('actual-size'),
            'backing_file': info.get('backing-filename'),
            'backing_format': info.get('backing-filename-format'),
            'data_file': _data_file(info),
        }

    def verify(self):
        """Prove the disk is laid out as its record says, before anything
        opens it with the recorded format (a resize, a guest defined and
        started from the records).

        A record can say qcow2 of a file that is not what this code made: a
        raw file whose guest wrote a qcow2 header naming a host file as
        its backing file or data-file, or a qcow2 file whose chain is not
        the record's. ``qemu-img info -f <recorded format>`` (which opens
        neither the backing file nor the data-file) must report the
        recorded format, no data-file, and exactly the recorded backing
        file and backing format. A disk whose format has no metadata (raw)
        has nothing to check. Not needed right after this process made the
        disk: what it made is what the record says.

        :raises: DiskNotFound; DiskLayoutMismatch naming the instance, the
            disk, what was expected and what was found (nothing else was
            done).
        """
        expected = self._expected_layout()
        if expected is None:
            return
        expected = dict(expected, format=self.qemu_format, data_file=None)
        path = self.path
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise exception.DiskNotFound(instance_uuid=self.instance_uuid,
                                         disk_name=self.disk_name)
        if not stat.S_ISREG(st.st_mode):
            # Never let qemu-img follow a link or block on a FIFO.
            raise self._mismatch(expected, 'not a regular file')
        try:
            info = qemu_img.info(path, self.qemu_format)
        except exception.ProcessFailed as e:
            raise self._mismatch(expected, 'not readable as %s (%s)' % (
                self.qemu_format, e))
        found = {
            'format': info.get('format'),
            'backing_file': info.get('backing-filename'),
            'backing_format': info.get('backing-filename-format'),
            'data_file': _data_file(info),
        }
        if found != expected:
            LOG.error('Disk %(disk)s of instance %(uuid)s is not what its '
                      'record says: expected %(expected)s, found %(found)s',
                      {'disk': self.disk_name, 'uuid': self.instance_uuid,
                       'expected': expected, 'found': found})
            raise self._mismatch(expected, _describe_layout(found))

    def _mismatch(self, expected, found):
        return exception.DiskLayoutMismatch(
            instance_uuid=self.instance_uuid, disk_name=self.disk_name,
            expected=_describe_layout(expected), found=found)

    # --- what each backend supplies ------------------------------------------

    @abc.abstractmethod
    def _image_cache_format(self):
        """The cache format ('raw' or 'qcow2') this disk is built from."""

    @abc.abstractmethod
    def _create_from_entry(self, path, entry, size):
        """Turn the image's cache entry into the disk at ``path``.

        ``path`` (a private part, published under the disk's name once
        this returns: see ``_new_disk``) does not exist yet: create it
        exclusively (``_reserve`` or ``sparse_copy``). ``entry`` is a
        cache.CacheEntry no larger than ``size``.
        """

    @abc.abstractmethod
    def _create_from_template(self, path, entry, size):
        """Turn a raw template (of ``size`` bytes) into the disk."""

    @abc.abstractmethod
    def _grow(self, path, size):
        """Grow the disk at ``path`` to ``size`` bytes (never shrink)."""

    def _backing_store(self):
        """The layers under the disk, top first (none by default)."""
        return []

    def _expected_layout(self):
        """What ``verify`` must find in the disk's metadata, from the record:
        {'backing_file': path or None, 'backing_format': fmt or None}; or
        None for a format without metadata (raw), which has nothing to
        check."""
        return None

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
                location=self.path)

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

    @contextlib.contextmanager
    def _new_disk(self):
        """Yield a private path to build the disk at; publish it after.

        The path is ``.<disk_name>.<random>.part`` in the instance
        directory. The block must create it exclusively (O_EXCL,
        O_NOFOLLOW, mode 0600: ``_reserve()`` or ``sparse_copy``) and
        finish the disk there (copy or create, grow, preallocate). Then it
        is fsynced and published with ``link(part, disk)``, which never
        replaces anything (a file or link that appeared at the disk's name
        meanwhile raises DiskAlreadyExists and stays), the part's name is
        unlinked and the directory fsynced. So the disk's name only ever
        names a complete disk, even if the process dies half way: the
        DiskManager keeps an existing recorded disk on a retry, and must
        never keep half of one. (A qcow2 overlay names its base by
        absolute path, so it does not care what it is called.)

        Before building, the parts a killed create of this disk left are
        removed. On failure the part goes, and the instance directory too
        if this call created it and it is empty.
        """
        instance_dir = self.instance_dir
        made_dir = not os.path.isdir(instance_dir)
        utils.ensure_tree(instance_dir)
        part = None
        try:
            self._remove_stale_parts()
            part = os.path.join(instance_dir, '.%s.%s%s' % (
                self.disk_name, secrets.token_hex(_PART_TOKEN_BYTES),
                PART_SUFFIX))
            yield part
            self._publish(part, self.path, instance_dir)
        except BaseException as e:
            # A part name that was taken (DiskAlreadyExists naming it) is
            # not ours to remove; any other part at our name is.
            if part is not None and not (
                    isinstance(e, exception.DiskAlreadyExists) and
                    e.kwargs.get('location') == part):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(part)
            if made_dir:
                with contextlib.suppress(OSError):
                    os.rmdir(instance_dir)
            raise

    def _publish(self, part, path, instance_dir):
        """Give the finished disk at ``part`` its name ``path``, durably,
        without ever replacing what is at ``path``."""
        fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC |
                     os.O_NONBLOCK)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(part, path, follow_symlinks=False)
        except FileExistsError:
            raise exception.DiskAlreadyExists(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                location=path)
        try:
            os.unlink(part)
            utils.fsync_dir(instance_dir)
        except BaseException:
            # The name is ours (link never replaces): take it back rather
            # than leave a disk whose publication may not be durable.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            raise

    def _remove_stale_parts(self):
        """Remove this disk's ``.<disk_name>.<random>.part`` files.

        Only a create that was killed leaves one: operations on one
        instance are serialised per instance (the compute manager holds
        the instance's lock around build, resize and delete), so no live
        create of this disk can own a part while this runs. Parts of the
        instance's other disks are not matched (the random part is exactly
        16 hex digits, which no '.'-separated rest of a name is).
        """
        pattern = re.compile(r'^\.%s\.[0-9a-f]{%d}%s$' % (
            re.escape(self.disk_name), 2 * _PART_TOKEN_BYTES,
            re.escape(PART_SUFFIX)))
        instance_dir = self.instance_dir
        try:
            names = os.listdir(instance_dir)
        except FileNotFoundError:
            return
        for name in names:
            if not pattern.match(name):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(instance_dir, name))
                LOG.warning('Removed %(part)s, left by a create of disk '
                            '%(disk)s of instance %(uuid)s that did not '
                            'finish', {'part': name, 'disk': self.disk_name,
                                       'uuid': self.instance_uuid})

    @contextlib.contextmanager
    def _exclusive(self, path):
        """Turn an exclusive create's FileExistsError into our error."""
        try:
            yield
        except FileExistsError:
            raise exception.DiskAlreadyExists(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                location=path)

    def _reserve(self, path):
        """Create ``path`` empty, exclusively, for a tool to fill."""
        with self._exclusive(path):
            utils.open_exclusive(path, DISK_MODE).close()

    def _preallocate(self, path, size):
        """Allocate ``size`` bytes up front if the record says so.

        For a qcow2 file this reserves host space that qcow2 then fills
        with clusters, so the guest cannot run out of host storage.
        """
        if not self.record.preallocated:
            return
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)


def _data_file(info):
    """The external data-file ``qemu-img info`` reports, or None."""
    return (info.get('format-specific') or {}).get('data', {}).get(
        'data-file')


def _describe_layout(layout):
    """'format qcow2, backing file /x (raw), no data-file' for messages."""
    parts = ['format %s' % layout.get('format')]
    if layout.get('backing_file'):
        parts.append('backing file %s (%s)' % (layout['backing_file'],
                                               layout.get('backing_format')))
    else:
        parts.append('no backing file')
        if layout.get('backing_format'):
            parts.append('backing format %s' % layout['backing_format'])
    if layout.get('data_file'):
        parts.append('data-file %s' % layout['data_file'])
    else:
        parts.append('no data-file')
    return ', '.join(parts)

"""The image cache: base images and templates under ``$instances_path/_base``.

This module is the only code that touches the cache directory. An entry is
one file of disk data plus a sidecar that says what the data is::

    _base/3f786850e387550fdab836ed7e6dc881de23001b          raw base of an
    _base/3f786850e387550fdab836ed7e6dc881de23001b.info     image (sha1 of
                                                            its id)
    _base/3f786850e387550fdab836ed7e6dc881de23001b.qcow2    the same image
    _base/3f786850e387550fdab836ed7e6dc881de23001b.qcow2.info  kept qcow2
    _base/ephemeral_1_ext4, _base/ephemeral_1_ext4.info     a template
    _base/swap_512, _base/swap_512.info

The sidecar (JSON: format, virtual_size, source) is written atomically after
the data, when the entry is created, and is the only source of the entry's
format and size from then on: nothing here ever asks qemu-img what a cached
file is. An entry is valid only when both files exist; a data file without
its sidecar is the leftover of a crash and is rebuilt.

Each entry has its own external lock (threads and processes), and every
creation re-checks the entry inside that lock, so any number of concurrent
requests for one image make one fetch. Before each use a base is re-checked
with oslo.utils' format inspector for its recorded format (the header only,
no process), so a cache file altered behind our back is refused rather than
handed to qemu.

The sidecar's mtime is the entry's "last used" time: ``cleanup()`` removes
entries that no persisted disk record names and that were not used for
``[image_cache] remove_unused_original_minimum_age_seconds``.
"""

import contextlib
import dataclasses
import hashlib
import os
import re
import stat
import threading
import time

from oslo_concurrency import lockutils
from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils.imageutils import format_inspector

import nova.conf
from nova import exception
from nova import utils
from nova.virt import images

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: Formats an entry can hold. Templates are always raw.
FORMATS = ('raw', 'qcow2')

SIDECAR_SUFFIX = '.info'
PART_SUFFIX = '.part'
QCOW2_SUFFIX = '.qcow2'
SIDECAR_VERSION = 1

_LOCK_PREFIX = 'nova-image-cache-'
# Base names are derived, never given: keep template names out of their
# namespace so a template can never shadow (or be cleaned as) a base.
_BASE_NAME_RE = re.compile(r'^[0-9a-f]{40}(\.qcow2)?$')
# Cached files are read by qemu (possibly another user) as backing files.
_ENTRY_MODE = 0o644


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """One usable cache entry.

    ``path``: absolute path of the data file; ``format``: 'raw' or 'qcow2'
    (as recorded when the entry was made); ``virtual_size``: bytes;
    ``name``: the file name inside the cache directory.
    """

    path: str
    format: str
    virtual_size: int
    name: str


def image_entry_name(image_id, fmt):
    """Return the cache name of ``image_id`` kept in ``fmt``.

    ``sha1(image_id)`` for a raw base, with ``.qcow2`` appended when the
    image is kept as qcow2, so both forms of one image can coexist.
    """
    if not isinstance(image_id, str) or not image_id:
        raise exception.InvalidInput(
            reason='image id %r is not a non-empty string' % (image_id,))
    _check_format(fmt)
    name = hashlib.sha1(image_id.encode('utf-8'),
                        usedforsecurity=False).hexdigest()
    return name + QCOW2_SUFFIX if fmt == 'qcow2' else name


def entry_name_for_record(record):
    """Return the cache entry names a disk record depends on.

    A disk made from an image names the base in the format it was made
    from: ``backing_format`` for a qcow2 overlay, the disk's own format for
    a flat copy. Disks in other formats (e.g. ploop) were made from a raw
    or a qcow2 base, so both are kept. A disk made by a function names its
    template.

    :returns: a set of names (empty for a blank disk).
    """
    if record.image_id:
        fmt = record.backing_format or record.format
        fmts = (fmt,) if fmt in FORMATS else FORMATS
        return {image_entry_name(record.image_id, f) for f in fmts}
    if record.cache_name:
        return {record.cache_name}
    return set()


def _check_format(fmt):
    if fmt not in FORMATS:
        raise exception.InvalidInput(
            reason='image cache format %r is not one of %s' % (fmt, FORMATS))
    return fmt


def _check_template_name(name):
    """Template names come from policy.py; still, keep them plain."""
    if (not isinstance(name, str) or _BASE_NAME_RE.match(name)
            or name.endswith((SIDECAR_SUFFIX, PART_SUFFIX))):
        raise exception.InvalidName(
            kind='template', name=name,
            reason='reserved for base images or cache bookkeeping')
    return name


def _is_entry_name(name):
    """True if ``name`` could be a cache entry's: one plain, visible path
    component without a bookkeeping suffix."""
    return (isinstance(name, str) and bool(name) and
            not name.startswith('.') and '/' not in name and
            '\0' not in name and
            not name.endswith((SIDECAR_SUFFIX, PART_SUFFIX)))


def _fsync_file(path):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quiet(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class ImageCache:
    """Base images and templates shared by the instances of this host.

    :param base_dir: the cache directory (default: ``$instances_path/
        $[image_cache]subdirectory_name``, read at each call so that a
        process-wide cache follows configuration changes).
    :param lock_path: where the per-entry lock files live (default:
        ``[oslo_concurrency] lock_path``, i.e. ``$instances_path/locks``).
    :param image_api: the image service used to fetch (default:
        ``nova.image.API()``, made on first use).
    """

    def __init__(self, base_dir=None, lock_path=None, image_api=None):
        self._base_dir = base_dir
        self._lock_path = lock_path
        self._image_api = image_api

    # --- names and paths (no I/O) -----------------------------------------

    @property
    def base_dir(self):
        if self._base_dir:
            return os.path.abspath(self._base_dir)
        return os.path.join(os.path.abspath(CONF.instances_path),
                            CONF.image_cache.subdirectory_name)

    @property
    def lock_path(self):
        if self._lock_path:
            return os.path.abspath(self._lock_path)
        return os.path.abspath(CONF.oslo_concurrency.lock_path or
                               os.path.join(CONF.instances_path, 'locks'))

    @property
    def image_api(self):
        if self._image_api is None:
            from nova import image  # imported late: it may not be needed
            self._image_api = image.API()
        return self._image_api

    def path_of(self, name):
        """Absolute path of the data file of entry ``name``."""
        return utils.safe_join(self.base_dir, name)

    def image_path(self, image_id, fmt):
        """Where the base of ``image_id`` kept in ``fmt`` is (or will be)."""
        return self.path_of(image_entry_name(image_id, fmt))

    def template_path(self, name):
        """Where template ``name`` is (or will be)."""
        return self.path_of(_check_template_name(name))

    # --- the public operations -----------------------------------------------

    def ensure_image(self, context, image_id, fmt, max_virtual_size=None):
        """Return the base of ``image_id`` in ``fmt``, fetching it once.

        :param fmt: 'raw' (the fetch converts if needed) or 'qcow2' (only
            for an image declared qcow2: kept as it is).
        :param max_virtual_size: bytes; a larger image is refused before any
            byte of it is written (cold cache) or used (warm cache).
        :returns: CacheEntry.
        :raises: ImageTooLarge; ImageUnacceptable and ImageNotFound from the
            fetch; CacheEntryInvalid if the cached file fails its check.
        """
        name = image_entry_name(image_id, fmt)

        def fetch(target):
            verified = self._fetch(context, image_id, target, fmt,
                                   max_virtual_size)
            if verified.format != fmt:
                # The fetch promised fmt; never record anything else.
                _unlink_quiet(target)
                raise exception.CacheEntryInvalid(
                    name=name, reason='fetch produced %s, wanted %s' % (
                        verified.format, fmt))
            return verified.virtual_size

        entry = self._ensure(name, fmt, fetch, {'image_id': image_id})
        if max_virtual_size is not None and \
                entry.virtual_size > max_virtual_size:
            raise exception.ImageTooLarge(
                image_id=image_id, virtual_size=entry.virtual_size,
                disk_size=max_virtual_size)
        return entry

    def ensure_template(self, name, func, size, fmt='raw'):
        """Return template ``name``, making it once with ``func``.

        The template is made as a sparse raw file of ``size`` bytes (a
        truncate, no process) that ``func(target, size)`` fills, e.g. with
        mkfs or mkswap; it is then fsynced and renamed into place.

        :param fmt: 'raw' only: templates are raw.
        :returns: CacheEntry.
        :raises: CacheEntryInvalid if a template of that name exists with
            another size, or if ``func`` changed the file's size; whatever
            ``func`` raises.
        """
        _check_template_name(name)
        if fmt != 'raw':
            raise exception.InvalidInput(
                reason='templates are raw, not %s' % fmt)
        size = int(size)
        if size <= 0:
            raise exception.InvalidInput(
                reason='template %s needs a positive size, got %d' % (
                    name, size))

        def make(target):
            part = target + PART_SUFFIX
            # We hold the entry's lock: any .part is a crash's leftover.
            _unlink_quiet(part)
            with utils.remove_path_on_error(part):
                with utils.open_exclusive(part, _ENTRY_MODE) as f:
                    f.truncate(size)
                func(part, size)
                actual = os.stat(part).st_size
                if actual != size:
                    raise exception.CacheEntryInvalid(
                        name=name, reason='the template function left '
                        '%d bytes, expected %d' % (actual, size))
                _fsync_file(part)
                os.rename(part, target)
            return size

        entry = self._ensure(name, fmt, make, {'template': name})
        if entry.virtual_size != size:
            raise exception.CacheEntryInvalid(
                name=name, reason='cached with %d bytes, asked for %d' % (
                    entry.virtual_size, size))
        return entry

    def cleanup(self, context, in_use=None, now=None):
        """Remove entries unused for longer than the configured age.

        An entry is in use while a persisted disk record names it (see
        ``entry_name_for_record``); otherwise it goes once its last use is
        older than ``[image_cache]
        remove_unused_original_minimum_age_seconds``.
        Crash leftovers (a data file without a sidecar, a stale ``.part``)
        age the same way. Nothing happens when
        ``remove_unused_base_images`` is off.

        :param in_use: names of entries in use; default: read from the disk
            records in the database (``names_in_use(context)``).
        :param now: the current time (seconds since the epoch), for tests.
        :returns: sorted names of the removed entries.
        """
        if not CONF.image_cache.remove_unused_base_images:
            return []
        base_dir = self.base_dir
        if not os.path.isdir(base_dir):
            return []
        if in_use is None:
            in_use = names_in_use(context)
        in_use = set(in_use)
        # Bases are never resized here (disks grow, bases do not), so one
        # age applies to bases and templates alike.
        max_age = CONF.image_cache.remove_unused_original_minimum_age_seconds
        now = time.time() if now is None else now

        removed = []
        for name in sorted(self._entry_names_on_disk(base_dir)):
            if name in in_use:
                continue
            with self._lock(name):
                # A dead fetch's leftovers go whatever the entry's age (the
                # fetch tells dead from live by a flock on each part).
                images.remove_stale_parts(os.path.join(base_dir, name))
                files = self._files_of(base_dir, name)
                mtimes = []
                for path in files:
                    with contextlib.suppress(FileNotFoundError):
                        mtimes.append(os.lstat(path).st_mtime)
                if not mtimes or now - max(mtimes) < max_age:
                    continue
                # The sidecar goes first: without it the entry is invalid,
                # so a reader that races us rebuilds rather than uses it.
                for path in files:
                    _unlink_quiet(path)
                utils.fsync_dir(base_dir)
            LOG.info('Removed unused image cache entry %(name)s',
                     {'name': name})
            removed.append(name)
        return removed

    def _fetch(self, context, image_id, target, fmt, max_virtual_size):
        """Fetch and verify ``image_id`` into ``target`` (see images.py).

        :returns: images.VerifiedImage (format, virtual_size, ...).
        """
        return images.fetch_verified(context, self.image_api, image_id,
                                     target, fmt,
                                     max_virtual_size=max_virtual_size)

    # --- internals -----------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self, name):
        utils.ensure_tree(self.lock_path)
        with lockutils.lock(name, lock_file_prefix=_LOCK_PREFIX,
                            external=True, lock_path=self.lock_path):
            yield

    @staticmethod
    def _files_of(base_dir, name):
        """Every file an entry may own, sidecar first."""
        data = os.path.join(base_dir, name)
        sidecar = data + SIDECAR_SUFFIX
        return [sidecar, sidecar + PART_SUFFIX, data, data + PART_SUFFIX]

    @staticmethod
    def _entry_names_on_disk(base_dir):
        """Names of the entries the files in ``base_dir`` belong to.

        A name is derived from a file name, which anyone who can write
        into the directory chooses: a derived name that no entry can have
        ('..', '.', hidden, a bookkeeping suffix) is logged and skipped,
        never joined to a path, and the rest of the cleanup goes on.
        """
        names = set()
        for fname in os.listdir(base_dir):
            # The verified fetch streams into hidden part files next to
            # its target.
            name = images.part_target(fname)
            if name is None:
                name = fname
                if name.endswith(PART_SUFFIX):
                    name = name[:-len(PART_SUFFIX)]
                if name.endswith(SIDECAR_SUFFIX):
                    name = name[:-len(SIDECAR_SUFFIX)]
                if not name or name.startswith('.'):
                    continue  # not ours (e.g. another tool's hidden file)
            if _is_entry_name(name):
                names.add(name)
            else:
                LOG.warning('Image cache cleanup skips %(file)s: it names '
                            'no possible cache entry', {'file': fname})
        return names

    def _ensure(self, name, fmt, create, source):
        """Return entry ``name``, calling ``create(path)`` if it is missing.

        ``create`` leaves a complete file at ``path`` or nothing, and
        returns the virtual size of what it made.
        """
        base_dir = utils.ensure_tree(self.base_dir)
        path = self.path_of(name)
        sidecar = path + SIDECAR_SUFFIX
        with self._lock(name):
            entry = self._load(name, path, fmt)
            if entry is None:
                LOG.info('Creating image cache entry %(name)s (%(source)s)',
                         {'name': name, 'source': source})
                with utils.remove_path_on_error(path):
                    virtual_size = int(create(path))
                    os.chmod(path, _ENTRY_MODE)
                    utils.fsync_dir(base_dir)
                    self._write_sidecar(sidecar, fmt, virtual_size, source)
                entry = CacheEntry(path=path, format=fmt,
                                   virtual_size=virtual_size, name=name)
            else:
                # The sidecar's mtime is the entry's last use (cleanup).
                os.utime(sidecar)
            self._check_safe(entry)
        return entry

    def _load(self, name, path, fmt):
        """Read an entry under its lock; None if it must be (re)built."""
        sidecar = path + SIDECAR_SUFFIX
        has_data = os.path.lexists(path)
        has_sidecar = os.path.lexists(sidecar)
        if has_data and has_sidecar:
            return self._read_sidecar(name, path, fmt)
        if has_data:
            # Renamed into place but the sidecar never followed (crash):
            # its format and size are unknown and will not be probed.
            LOG.warning('Image cache entry %(name)s has no sidecar; '
                        'rebuilding it', {'name': name})
            _unlink_quiet(path)
        if has_sidecar:
            _unlink_quiet(sidecar)
        # We hold the entry's lock, so partial files are a crash's
        # leftovers; an exclusive create of the same name would trip on
        # them.
        _unlink_quiet(sidecar + PART_SUFFIX)
        _unlink_quiet(path + PART_SUFFIX)
        return None

    def _read_sidecar(self, name, path, fmt):
        sidecar = path + SIDECAR_SUFFIX
        try:
            with open(sidecar, 'rb') as f:
                info = jsonutils.loads(f.read(4096))
            recorded_fmt = info['format']
            virtual_size = info['virtual_size']
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise exception.CacheEntryInvalid(
                name=name, reason='unreadable sidecar: %s' % e)
        if info.get('version') != SIDECAR_VERSION or \
                not isinstance(virtual_size, int) or virtual_size < 0:
            raise exception.CacheEntryInvalid(
                name=name, reason='sidecar %r is not one this code wrote' %
                (info,))
        if recorded_fmt != fmt:
            raise exception.CacheEntryInvalid(
                name=name, reason='recorded as %s, wanted %s' % (
                    recorded_fmt, fmt))
        return CacheEntry(path=path, format=recorded_fmt,
                          virtual_size=virtual_size, name=name)

    @staticmethod
    def _write_sidecar(sidecar, fmt, virtual_size, source):
        part = sidecar + PART_SUFFIX
        _unlink_quiet(part)
        body = dict(source, version=SIDECAR_VERSION, format=fmt,
                    virtual_size=virtual_size)
        with utils.remove_path_on_error(part):
            with utils.open_exclusive(part, _ENTRY_MODE) as f:
                f.write(jsonutils.dump_as_bytes(body, sort_keys=True))
                f.flush()
                os.fsync(f.fileno())
            os.rename(part, sidecar)
        utils.fsync_dir(os.path.dirname(sidecar))

    @staticmethod
    def _check_safe(entry):
        """Re-check a cached file against its recorded format.

        Reads the header only. For qcow2: no backing file, no data-file,
        no unknown features, and the header's size equals the recorded
        one. For raw: the file's length is the recorded size.
        """
        try:
            st = os.lstat(entry.path)
        except FileNotFoundError:
            raise exception.CacheEntryInvalid(
                name=entry.name, reason='data file vanished')
        if not stat.S_ISREG(st.st_mode):
            raise exception.CacheEntryInvalid(
                name=entry.name, reason='not a regular file')
        inspector_cls = format_inspector.get_inspector(entry.format)
        try:
            inspector = inspector_cls.from_file(entry.path)
            inspector.safety_check()
        except (format_inspector.ImageFormatError,
                format_inspector.SafetyCheckFailed) as e:
            raise exception.CacheEntryInvalid(
                name=entry.name, reason='%s safety check failed: %s' % (
                    entry.format, e))
        size = (st.st_size if entry.format == 'raw'
                else inspector.virtual_size)
        if size != entry.virtual_size:
            raise exception.CacheEntryInvalid(
                name=entry.name, reason='holds %d bytes of disk, recorded '
                '%d' % (size, entry.virtual_size))


def names_in_use(context):
    """Names of the cache entries that persisted disk records depend on.

    Reads every live block device mapping that has a ``driver_info`` (all
    hosts: an instances_path may be shared) as objects, each record the
    one way records are read (``BlockDeviceMapping.get_disk_metadata``),
    and maps each record to its entries (see ``entry_name_for_record``).

    :raises: CacheEntryInvalid if a record cannot be read: then nobody can
        tell what it depends on, and cleanup must remove nothing.
    """
    # Imported late: the objects are not needed to use the cache.
    from nova.objects import block_device as block_device_obj

    names = set()
    bdms = block_device_obj.BlockDeviceMappingList.get_all_with_driver_info(
        context)
    for bdm in bdms:
        try:
            record = bdm.get_disk_metadata()
        except exception.DiskMetadataInvalid as e:
            # A record we cannot read still names something we cannot
            # know: keeping every entry is the only safe answer.
            raise exception.CacheEntryInvalid(
                name='*', reason='cannot tell which entries are in use: '
                '%s' % e)
        if record is not None:
            names |= entry_name_for_record(record)
    return names


_CACHE = None
_CACHE_LOCK = threading.Lock()


def get_cache():
    """The process-wide ImageCache (paths from CONF at each call)."""
    global _CACHE
    with _CACHE_LOCK:
        if _CACHE is None:
            _CACHE = ImageCache()
        return _CACHE

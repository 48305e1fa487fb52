"""The image cache: base images and templates under ``$instances_path/_base``.

This module is the only code that touches the cache directory. An entry is
one file of disk data plus a sidecar that says what the data is. Every
name this cache makes ends with the format of its data, so that none is
ever a name upstream Nova gave a file in the same directory::

    _base/3f786850e387550fdab836ed7e6dc881de23001b.raw      raw base of an
    _base/3f786850e387550fdab836ed7e6dc881de23001b.raw.info image (sha1 of
                                                            its id)
    _base/3f786850e387550fdab836ed7e6dc881de23001b.qcow2    the same image
    _base/3f786850e387550fdab836ed7e6dc881de23001b.qcow2.info  kept qcow2
    _base/ephemeral_1_ext4.raw, _base/ephemeral_1_ext4.raw.info  a template
    _base/swap_512.raw, _base/swap_512.raw.info

Upstream Nova (34.0.0 and older) left files of its own here, without a
sidecar: ``<sha1 of the image id>`` (raw, or the qcow2 image itself with
force_raw_images off), ``ephemeral_<GB>_<7 hex>`` and ``swap_<MB>``. Its
unrecorded qcow2 overlays still sit on them, so nothing here ever deletes,
replaces or rebuilds a file under such a name. Once legacy inference has
proved an overlay over one, it asks this cache to *adopt* it (``adopt``):
under the entry's lock, by descriptor, the file is inspected for the format
the overlay's header names, and only then does it get a sidecar (with
``adopted: true``). From then on it is an entry like any other, named by
the disk records (``base_name``) that depend on it; cleanup still keeps it
while any local mapping has no record yet (that mapping's disk may sit
on it). Upstream files nobody adopted are reported and left.

The sidecar (JSON: format, virtual_size, source) is written atomically after
the data, when the entry is created, and is the only source of the entry's
format and size from then on: nothing here ever asks qemu-img what a cached
file is. An entry is valid only when both files exist; a data file without
its sidecar under a name this cache makes is the leftover of a crash and is
rebuilt.

``_base`` may be shared (NFS) with hosts this one does not trust, so it is
only ever reached through a descriptor (``nova.virt.staging``): opened
without following a link, StrictModes-checked, and every file in it made
as a private part (data, templates, sidecars), published without
replacing, and read, checked or removed by ``*at()`` calls on that
descriptor. Tools (qemu-img, mkfs) get the part's descriptor, never a name
in ``_base``.

Each entry has its own lock (threads and processes: a flock on a lock file
in ``locks`` beside ``_base``, shared by every host that shares ``_base``,
opened O_NOFOLLOW), and every creation re-checks the
entry inside that lock, so any number of concurrent requests for one image
make one fetch. Before each use, and every time a guest is defined over it
(``check_base``), a base is re-checked by descriptor: a regular file owned
by this service, and, with oslo.utils' format inspector for its recorded
format (the header only, no process), the format and size its sidecar
says, so a cache file altered behind our back is refused rather than
handed to qemu.

The sidecar's mtime is the entry's "last used" time: ``cleanup()`` removes
entries that no persisted disk record names and that were not used for
``[image_cache] remove_unused_original_minimum_age_seconds``. It removes
only regular files with names this cache makes, and adopted entries (see
above); anything else in ``_base`` (a directory, a link, an upstream file
nobody adopted, a stranger's file) is reported and left alone, and never
stops the rest of the cleanup.
"""

import contextlib
import dataclasses
import errno
import os
import re
import stat
import threading
import time

from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils.imageutils import format_inspector

import nova.conf
from nova import exception
from nova.objects import libvirt_disk
from nova import utils
from nova.virt import images
from nova.virt import staging

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: Formats an entry can hold. Templates are always raw.
FORMATS = ('raw', 'qcow2')

SIDECAR_SUFFIX = '.info'
PART_SUFFIX = '.part'
#: The suffix of each format: the end of every name this cache makes.
FORMAT_SUFFIXES = {'raw': '.raw', 'qcow2': '.qcow2'}
QCOW2_SUFFIX = FORMAT_SUFFIXES['qcow2']
SIDECAR_VERSION = 1

_LOCK_PREFIX = 'nova-image-cache-'
_SHA1_RE = re.compile(r'^[0-9a-f]{40}$')
# Templates are named by policy.py (``ephemeral_1_ext4``, ``swap_512``):
# one plain name without a dot, so that its suffixed file name tells
# format and template apart.
_TEMPLATE_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_+-]{0,200}$')
# What this cache makes: a base (sha1, .raw or .qcow2), a template (.raw).
_OWN_NAME_RE = re.compile(
    r'^(?:[0-9a-f]{40}\.(?:raw|qcow2)|'
    r'[A-Za-z0-9][A-Za-z0-9_+-]{0,200}\.raw)$')
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

    ``sha1(image_id)`` and the format's suffix (``.raw``, ``.qcow2``), so
    both forms of one image can coexist, and neither is ever the name
    upstream Nova gave its own base of that image (``sha1(image_id)``).
    """
    if not isinstance(image_id, str) or not image_id:
        raise exception.InvalidInput(
            reason='image id %r is not a non-empty string' % (image_id,))
    _check_format(fmt)
    return libvirt_disk.upstream_base_name(image_id) + FORMAT_SUFFIXES[fmt]


def template_entry_name(name):
    """Return the cache name of template ``name``: ``<name>.raw``."""
    return _check_template_name(name) + FORMAT_SUFFIXES['raw']


def entry_name_for_record(record):
    """Return the cache entry names a disk record depends on.

    A record that names its base (``base_name``: an adopted upstream file)
    depends on that entry alone. Otherwise, a disk made from an image names
    the base in the format it was made from: ``backing_format`` for a qcow2
    overlay, the disk's own format for a flat copy. Disks in other formats
    (e.g. ploop) were made from a raw or a qcow2 base, so both are kept. A
    disk made by a function names its template.

    :returns: a set of names (empty for a blank disk).
    """
    if getattr(record, 'base_name', None):
        return {record.base_name}
    if record.image_id:
        fmt = record.backing_format or record.format
        fmts = (fmt,) if fmt in FORMATS else FORMATS
        return {image_entry_name(record.image_id, f) for f in fmts}
    if record.cache_name:
        return {template_entry_name(record.cache_name)}
    return set()


def _check_format(fmt):
    if fmt not in FORMATS:
        raise exception.InvalidInput(
            reason='image cache format %r is not one of %s' % (fmt, FORMATS))
    return fmt


def _check_template_name(name):
    """Template names come from policy.py; still, keep them plain."""
    if (not isinstance(name, str) or _SHA1_RE.match(name)
            or not _TEMPLATE_NAME_RE.match(name)):
        raise exception.InvalidName(
            kind='template', name=name,
            reason='reserved for base images, or not one plain name '
                   'without a dot')
    return name


def _is_own_name(name):
    """True if ``name`` is one this cache makes (and may rebuild)."""
    return isinstance(name, str) and bool(_OWN_NAME_RE.match(name))


def _is_upstream_name(name):
    """True if ``name`` is one upstream Nova gives its cache files (which
    this cache never deletes unless it adopted them)."""
    return libvirt_disk.is_upstream_base_name(name)


def _is_entry_name(name):
    """True if ``name`` may be an entry: one this code makes, or an
    upstream file it may adopt."""
    return _is_own_name(name) or _is_upstream_name(name)


def _plain(name):
    if not _is_entry_name(name):
        raise exception.InvalidName(kind='image cache entry', name=name,
                                    reason='not a name this cache makes')
    return name


def _invalid(name, e):
    """CacheEntryInvalid for a planted link/FIFO/directory or an I/O error."""
    return exception.CacheEntryInvalid(
        name=name, reason=str(e) if isinstance(e, exception.NovaException)
        else (e.strerror or str(e)))


class ImageCache:
    """Base images and templates shared by the instances of this host.

    :param base_dir: the cache directory (default: ``$instances_path/
        $[image_cache]subdirectory_name``, read at each call so that a
        process-wide cache follows configuration changes).
    :param lock_path: where the per-entry lock files live (default:
        ``locks`` beside ``_base``, i.e. ``$instances_path/locks``, as
        upstream keeps them: every host that shares ``_base`` shares its
        locks, whatever its own ``[oslo_concurrency] lock_path``).
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
        # Beside _base, never a host's own lock_path: two hosts sharing
        # _base with local lock paths would not exclude each other, and
        # one could remove an entry the other was still publishing.
        return os.path.join(os.path.dirname(self.base_dir), 'locks')

    @property
    def image_api(self):
        if self._image_api is None:
            from nova import image  # imported late: it may not be needed
            self._image_api = image.API()
        return self._image_api

    def path_of(self, name):
        """Absolute path of the data file of entry ``name``.

        The directories above ``_base`` are resolved (an operator may link
        instances_path to a mount); ``_base`` itself is not: it is only
        ever opened without following a link (``_open_base``).
        """
        parent, base = os.path.split(self.base_dir)
        return os.path.join(utils.safe_join(parent, base), _plain(name))

    def image_path(self, image_id, fmt):
        """Where the base of ``image_id`` kept in ``fmt`` is (or will be)."""
        return self.path_of(image_entry_name(image_id, fmt))

    def template_path(self, name):
        """Where template ``name`` is (or will be)."""
        return self.path_of(template_entry_name(name))

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

        def fetch(base):
            verified = self._fetch(context, image_id, base.join(name), fmt,
                                   max_virtual_size, directory=base)
            if verified.format != fmt:
                # The fetch promised fmt; never record anything else.
                base.unlink(name)
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

        The template is made as a private part (``staging.Part``): a
        sparse raw file of ``size`` bytes (a truncate, no process) that
        ``func(target, size)`` fills, e.g. with mkfs or mkswap. ``target``
        names the part's descriptor (``/proc/<pid>/fd/<n>``), never a name
        in ``_base`` that could be swapped; the part is then fsynced and
        published without replacing anything.

        :param fmt: 'raw' only: templates are raw.
        :returns: CacheEntry.
        :raises: CacheEntryInvalid if a template of that name exists with
            another size, or if ``func`` changed the file's size; whatever
            ``func`` raises.
        """
        entry_name = template_entry_name(name)
        if fmt != 'raw':
            raise exception.InvalidInput(
                reason='templates are raw, not %s' % fmt)
        size = int(size)
        if size <= 0:
            raise exception.InvalidInput(
                reason='template %s needs a positive size, got %d' % (
                    name, size))

        def make(base):
            with staging.Part(base, entry_name, mode=_ENTRY_MODE) as part:
                os.ftruncate(part.fd, size)
                func(part.path, size)
                actual = os.fstat(part.fd).st_size
                if actual != size:
                    raise exception.CacheEntryInvalid(
                        name=entry_name, reason='the template function left '
                        '%d bytes, expected %d' % (actual, size))
                part.publish()
            return size

        entry = self._ensure(entry_name, fmt, make, {'template': name})
        if entry.virtual_size != size:
            raise exception.CacheEntryInvalid(
                name=entry_name, reason='cached with %d bytes, asked for '
                '%d' % (entry.virtual_size, size))
        return entry

    def cleanup(self, context, in_use=None, now=None, unrecorded=None):
        """Remove entries unused for longer than the configured age.

        An entry is in use while a persisted disk record names it (see
        ``entry_name_for_record``); otherwise it goes once its last use is
        older than ``[image_cache]
        remove_unused_original_minimum_age_seconds``.
        Crash leftovers (a data file without a sidecar under a name this
        cache makes, a stale ``.part``) age the same way. An adopted
        upstream file goes only when, besides, no local mapping of any
        live instance is without a record (it may be such a disk's base);
        upstream files nobody adopted are never removed. Nothing happens when
        ``remove_unused_base_images`` is off.

        :param in_use: names of entries in use; default: read from the disk
            records in the database (``names_in_use(context)``).
        :param now: the current time (seconds since the epoch), for tests.
        :param unrecorded: whether a local mapping has no record yet;
            default: read from the database (``unrecorded_disks_exist``)
            when an adopted entry could go.
        :returns: sorted names of the removed entries.
        """
        if not CONF.image_cache.remove_unused_base_images:
            return []
        try:
            base = self._open_base()
        except FileNotFoundError:
            return []
        with base:
            # Records read from the database are read again, under its
            # lock, for each entry that would go: a spawn may have
            # recorded a disk over it since (its mtime alone does not
            # save it with an age of 0, or a clock behind the file
            # server's).
            still_unused = None
            if in_use is None:
                in_use = names_in_use(context)
                still_unused = (
                    lambda entry: entry not in names_in_use(context))
            in_use = set(in_use)
            # Bases are never resized here (disks grow, bases do not), so
            # one age applies to bases and templates alike.
            max_age = \
                CONF.image_cache.remove_unused_original_minimum_age_seconds
            now = time.time() if now is None else now
            removed = []
            for name in sorted(self._entry_names_on_disk(base)):
                if name in in_use:
                    continue
                if _is_upstream_name(name) and unrecorded is None:
                    # Asked once, and only when an adopted entry could go.
                    unrecorded = unrecorded_disks_exist(context)
                if unrecorded and _is_upstream_name(name):
                    LOG.info('Image cache cleanup keeps adopted entry '
                             '%(name)s: some local disks have no record '
                             'yet', {'name': name})
                    continue
                try:
                    with self._lock(name):
                        gone = self._remove_if_unused(base, name, now,
                                                      max_age, still_unused)
                except (OSError, exception.NovaException) as e:
                    # One odd entry (a planted directory, a lock file that
                    # is a link) never stops the rest of the cleanup.
                    LOG.warning('Image cache cleanup left %(name)s alone: '
                                '%(err)s', {'name': name, 'err': e})
                    continue
                if gone:
                    LOG.info('Removed unused image cache entry %(name)s',
                             {'name': name})
                    removed.append(name)
        return removed

    def _remove_if_unused(self, base, name, now, max_age,
                          still_unused=None):
        """Under the entry's lock: remove its files if all are older than
        ``max_age`` (and ``still_unused(name)``, if given). Only regular
        files are removed; anything else at an entry's file name is
        reported and left alone. An upstream name is removed only while
        its sidecar says this cache adopted it.

        :returns: True if the entry's files were removed.
        """
        # A dead fetch's leftovers go whatever the entry's age (a live
        # one holds a flock on its part).
        staging.remove_stale_parts(base, name + SIDECAR_SUFFIX)
        if _is_own_name(name):
            staging.remove_stale_parts(base, name)
        elif base.lexists(name) and not self._adopted(base, name):
            LOG.warning('Image cache cleanup leaves %(path)s alone: an '
                        'upstream file this cache did not adopt',
                        {'path': base.join(name)})
            return False
        files = []
        mtimes = []
        for fname in _files_of(name):
            try:
                st = base.lstat(fname)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                LOG.warning('Image cache cleanup leaves %(path)s alone: '
                            'not a regular file', {'path': base.join(fname)})
                continue
            files.append(fname)
            mtimes.append(st.st_mtime)
        if not mtimes or now - max(mtimes) < max_age:
            return False
        if still_unused is not None and not still_unused(name):
            return False
        # The sidecar goes first: without it the entry is invalid, so a
        # reader that races us rebuilds rather than uses it.
        for fname in files:
            base.unlink(fname)
        base.fsync()
        return True

    def _adopted(self, base, name):
        """True if upstream file ``name`` has the sidecar ``adopt`` wrote."""
        try:
            info = self._sidecar_info(base, name)
        except exception.CacheEntryInvalid as e:
            LOG.warning('Image cache entry %(name)s: %(err)s',
                        {'name': name, 'err': e})
            return False
        return info is not None and info.get('adopted') is True

    def _fetch(self, context, image_id, target, fmt, max_virtual_size,
               directory=None):
        """Fetch and verify ``image_id`` into ``target`` (see images.py),
        in ``directory`` (the open ``_base``).

        :returns: images.VerifiedImage (format, virtual_size, ...).
        """
        return images.fetch_verified(context, self.image_api, image_id,
                                     target, fmt,
                                     max_virtual_size=max_virtual_size,
                                     directory=directory)

    # --- internals -----------------------------------------------------------

    def _open_base(self, create=False):
        """Open ``_base``: its parent as a configured root, ``_base``
        itself never through a link; both must be the service's own
        (StrictModes, see ``staging.check_strict``).

        :returns: staging.Directory (close it).
        :raises: FileNotFoundError (missing, not ``create``),
            UnsafeDirectory, UnsafePath (a link or a file at ``_base``).
        """
        parent, name = os.path.split(self.base_dir)
        # Cached files are read by qemu (possibly another user): 0755.
        with staging.open_root(parent, create=create, mode=0o755) as root:
            return root.subdir(name, create=create, mode=0o755)

    @contextlib.contextmanager
    def _lock(self, name):
        """The entry's lock, between threads and processes: a flock on a
        lock file in the checked ``lock_path``, opened O_NOFOLLOW (a link
        planted at its name is neither followed nor created through)."""
        with staging.open_root(self.lock_path, create=True) as locks:
            with locks.lock(_LOCK_PREFIX + name):
                yield

    @staticmethod
    def _entry_names_on_disk(base):
        """Names of the entries the files in ``base`` belong to.

        Only names this code makes count, and upstream files that have a
        sidecar (adopted); a file name that maps to no possible entry
        (anything else someone put there, an upstream file nobody adopted)
        is reported and left alone, never joined to a path, and the rest
        of the cleanup goes on.
        """
        names = set()
        upstream = set()
        files = base.listdir()
        for fname in files:
            # The verified fetch and templates build in hidden parts.
            name = staging.part_target(fname)
            if name is None:
                name = fname
                if name.endswith(PART_SUFFIX):
                    name = name[:-len(PART_SUFFIX)]
            if name.endswith(SIDECAR_SUFFIX):
                name = name[:-len(SIDECAR_SUFFIX)]
            if _is_own_name(name):
                names.add(name)
            elif _is_upstream_name(name):
                upstream.add(name)
            else:
                LOG.warning('Image cache cleanup leaves %(path)s alone: it '
                            'names no cache entry', {'path': base.join(fname)})
        files = set(files)
        for name in upstream:
            if name + SIDECAR_SUFFIX in files:
                names.add(name)
            else:
                LOG.info('Image cache cleanup leaves %(path)s alone: an '
                         'upstream file no disk record has adopted',
                         {'path': base.join(name)})
        return names

    def _ensure(self, name, fmt, create, source):
        """Return entry ``name``, calling ``create(base)`` if it is missing.

        ``create`` publishes a complete file ``name`` in ``base`` (the open
        ``_base``) or leaves nothing, and returns the virtual size of what
        it made.
        """
        if not _is_own_name(name):
            # Never rebuild (or delete) a file upstream Nova may have made.
            raise exception.InvalidName(kind='image cache entry', name=name,
                                        reason='not a name this cache makes')
        sidecar = name + SIDECAR_SUFFIX
        with self._open_base(create=True) as base, self._lock(name):
            try:
                entry = self._load(base, name, fmt)
            except (OSError, exception.UnsafePath) as e:
                raise _invalid(name, e)
            if entry is None:
                LOG.info('Creating image cache entry %(name)s (%(source)s)',
                         {'name': name, 'source': source})
                virtual_size = int(create(base))
                try:
                    fd = base.open_regular(name)
                    try:
                        # Cached files are read by qemu as backing files.
                        os.fchmod(fd, _ENTRY_MODE)
                    finally:
                        os.close(fd)
                    self._write_sidecar(base, name, fmt, virtual_size,
                                        source)
                except BaseException:
                    base.unlink(name)
                    raise
                entry = CacheEntry(path=self.path_of(name), format=fmt,
                                   virtual_size=virtual_size, name=name)
            else:
                # The sidecar's mtime is the entry's last use (cleanup).
                base.touch(sidecar)
            self._check_entry(base, entry)
        return entry

    def _load(self, base, name, fmt):
        """Read an entry under its lock; None if it must be (re)built."""
        sidecar = name + SIDECAR_SUFFIX
        has_data = base.lexists(name)
        has_sidecar = base.lexists(sidecar)
        if has_data and has_sidecar:
            return self._read_sidecar(base, name, fmt)
        if has_data:
            # Published but the sidecar never followed (crash): its format
            # and size are unknown and will not be probed.
            LOG.warning('Image cache entry %(name)s has no sidecar; '
                        'rebuilding it', {'name': name})
            base.unlink(name)
        if has_sidecar:
            base.unlink(sidecar)
        # Parts of makers that died; a live maker cannot exist (we hold the
        # entry's lock), but its flock would keep its part anyway.
        staging.remove_stale_parts(base, name)
        staging.remove_stale_parts(base, sidecar)
        return None

    @staticmethod
    def _sidecar_info(base, name):
        """The sidecar of entry ``name`` as this code wrote it, or None if
        there is none.

        :raises: CacheEntryInvalid if it is unreadable or not one this code
            wrote (an upstream name's must say ``adopted``).
        """
        try:
            fd = base.open_regular(name + SIDECAR_SUFFIX)
        except FileNotFoundError:
            return None
        except (OSError, exception.UnsafePath) as e:
            raise exception.CacheEntryInvalid(
                name=name, reason='unreadable sidecar: %s' % e)
        try:
            with os.fdopen(fd, 'rb') as f:
                info = jsonutils.loads(f.read(4096))
            virtual_size = info['virtual_size']
            info['format']
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise exception.CacheEntryInvalid(
                name=name, reason='unreadable sidecar: %s' % e)
        if info.get('version') != SIDECAR_VERSION or \
                not isinstance(virtual_size, int) or virtual_size < 0 or \
                (_is_upstream_name(name) and info.get('adopted') is not True):
            raise exception.CacheEntryInvalid(
                name=name, reason='sidecar %r is not one this code wrote' %
                (info,))
        return info

    def _read_sidecar(self, base, name, fmt):
        info = self._sidecar_info(base, name)
        if info is None:
            raise exception.CacheEntryInvalid(name=name,
                                              reason='it has no sidecar')
        if info['format'] != fmt:
            raise exception.CacheEntryInvalid(
                name=name, reason='recorded as %s, wanted %s' % (
                    info['format'], fmt))
        return CacheEntry(path=self.path_of(name), format=fmt,
                          virtual_size=info['virtual_size'], name=name)

    @staticmethod
    def _write_sidecar(base, name, fmt, virtual_size, source):
        body = dict(source, version=SIDECAR_VERSION, format=fmt,
                    virtual_size=virtual_size)
        data = jsonutils.dump_as_bytes(body, sort_keys=True)
        with staging.Part(base, name + SIDECAR_SUFFIX,
                          mode=_ENTRY_MODE) as part:
            view = memoryview(data)
            while view:
                view = view[os.write(part.fd, view):]
            part.publish()

    def check_base(self, path, fmt):
        """Check the cached base at ``path`` before a guest uses it.

        Called every time a guest is defined over a cached base (reboot,
        power on: not only when a disk is made from it): ``path`` must be
        an entry of this cache (in ``_base``, opened without following a
        link), with a sidecar recording ``fmt``, and its data file must
        pass ``_check_entry`` (regular file, owned by this service, format
        and size as the sidecar says).

        :returns: the CacheEntry.
        :raises: CacheEntryInvalid naming the entry and what is wrong.
        """
        return self._check_base(path, fmt, keep_open=False)[0]

    @contextlib.contextmanager
    def opened_base(self, path, fmt):
        """``check_base``, keeping the checked data file open for the
        block: for a tool that reads the base under a disk (a snapshot of
        an overlay), handed ``staging.fd_path`` of it, never ``path``.

        :yields: (CacheEntry, descriptor); the descriptor is closed after.
        :raises: CacheEntryInvalid as ``check_base``.
        """
        entry, fd = self._check_base(path, fmt, keep_open=True)
        try:
            yield entry, fd
        finally:
            os.close(fd)

    def _check_base(self, path, fmt, keep_open):
        name = os.path.basename(path)
        if not _is_entry_name(name) or path != self.path_of(name):
            raise exception.CacheEntryInvalid(
                name=path, reason='not an entry of the image cache in %s' %
                self.base_dir)
        try:
            with self._open_base() as base:
                entry = self._read_sidecar(base, name, fmt)
                return entry, self._check_entry(base, entry, keep_open)
        except (OSError, exception.UnsafePath,
                exception.UnsafeDirectory) as e:
            raise _invalid(name, e)

    def open_entry(self, entry):
        """Open ``entry``'s data file for reading, checked by descriptor.

        For a backend that copies or converts a cached file: hand the
        descriptor (or ``staging.fd_path`` of it) to the copy or the tool,
        never ``entry.path``, which a neighbour could swap.

        :returns: a descriptor (close it).
        :raises: CacheEntryInvalid as ``check_base``.
        """
        try:
            with self._open_base() as base:
                return self._check_entry(base, entry, keep_open=True)
        except (OSError, exception.UnsafePath,
                exception.UnsafeDirectory) as e:
            raise _invalid(entry.name, e)

    @staticmethod
    def _check_entry(base, entry, keep_open=False):
        """Re-check a cached file against its sidecar, by descriptor.

        The file is opened once (O_NOFOLLOW, O_NONBLOCK) and everything
        is read from that descriptor (``_inspect``): a regular file, owned
        by this service, and its header only: for qcow2 no backing file, no
        data-file, no unknown features, and the header's size equals the
        recorded one; for raw the file's length is the recorded size.

        :returns: the checked descriptor if ``keep_open`` (close it).
        """
        fd = _open_data(base, entry.name)
        ok = False
        try:
            size = _inspect(fd, entry.name, entry.format)
            if size != entry.virtual_size:
                raise exception.CacheEntryInvalid(
                    name=entry.name, reason='holds %d bytes of disk, '
                    'recorded %d' % (size, entry.virtual_size))
            ok = True
        finally:
            if not (ok and keep_open):
                os.close(fd)
        return fd if keep_open else None

    # --- upstream files ------------------------------------------------------

    def adopt(self, name, fmt, source, check_only=False):
        """Make upstream file ``name`` an entry of this cache.

        For legacy inference, once it has proved an upstream qcow2 overlay
        whose backing file is ``name`` with backing format ``fmt``. Under
        the entry's lock, the file is opened once without following a link
        and inspected from that descriptor for ``fmt`` with oslo.utils'
        format inspector (header only: no process, no backing file
        opened): a regular file owned by this service; for qcow2 a qcow2
        with no backing file, no data-file and no unknown features. Only
        then is its sidecar written (format, virtual size, ``source``,
        ``adopted: true``). Adopting an adopted entry checks it again.

        :param name: an upstream name: ``<sha1 of the image id>``,
            ``swap_<MB>`` or ``ephemeral_<GB>_<7 hex>``.
        :param fmt: 'raw' or 'qcow2' (templates: raw).
        :param source: the sidecar's source: ``{'image_id': ...}`` or
            ``{'template': ...}``.
        :param check_only: inspect, write nothing (to show what adoption
            would do).
        :returns: CacheEntry.
        :raises: FileNotFoundError (no such file), CacheEntryInvalid (it is
            not what ``fmt`` says, or unsafe); nothing is written then.
        """
        if not _is_upstream_name(name):
            raise exception.InvalidName(
                kind='upstream image cache file', name=name,
                reason='not a name upstream Nova gives its cache files')
        _check_format(fmt)
        if fmt != 'raw' and not _SHA1_RE.match(name):
            raise exception.CacheEntryInvalid(
                name=name, reason='templates are raw, not %s' % fmt)
        try:
            with self._open_base() as base, self._lock(name):
                if base.lexists(name + SIDECAR_SUFFIX):
                    entry = self._read_sidecar(base, name, fmt)
                    self._check_entry(base, entry)
                    return entry
                if not base.lexists(name):
                    raise FileNotFoundError(errno.ENOENT, 'no such file',
                                            base.join(name))
                fd = _open_data(base, name)
                try:
                    virtual_size = _inspect(fd, name, fmt)
                finally:
                    os.close(fd)
                entry = CacheEntry(path=self.path_of(name), format=fmt,
                                   virtual_size=virtual_size, name=name)
                if check_only:
                    return entry
                self._write_sidecar(base, name, fmt, virtual_size,
                                    dict(source, adopted=True))
                base.fsync()
        except FileNotFoundError:
            raise
        except (OSError, exception.UnsafePath,
                exception.UnsafeDirectory) as e:
            raise _invalid(name, e)
        LOG.info('Adopted upstream image cache file %(name)s (%(fmt)s, '
                 '%(size)d bytes, %(source)s)',
                 {'name': name, 'fmt': fmt, 'size': virtual_size,
                  'source': source})
        return entry


def _open_data(base, name):
    """Open entry ``name``'s data file (O_NOFOLLOW): a descriptor."""
    try:
        return base.open_regular(name)
    except FileNotFoundError:
        raise exception.CacheEntryInvalid(name=name,
                                          reason='data file vanished')
    except (OSError, exception.UnsafePath) as e:
        raise exception.CacheEntryInvalid(
            name=name, reason='not a regular file: %s' % e)


def _inspect(fd, name, fmt):
    """The virtual size of the cached file open as ``fd``, read as ``fmt``.

    The file must be owned by this service and pass oslo.utils' format
    inspector for ``fmt`` and its safety checks (for qcow2: no backing
    file, no data-file, no unknown features); only the header is read.

    :raises: CacheEntryInvalid naming what is wrong.
    """
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        raise exception.CacheEntryInvalid(
            name=name, reason='owned by uid %d, not by this service' %
            st.st_uid)
    inspector_cls = format_inspector.get_inspector(fmt)
    try:
        inspector = inspector_cls.from_file(staging.fd_path(fd))
        inspector.safety_check()
    except (format_inspector.ImageFormatError,
            format_inspector.SafetyCheckFailed) as e:
        raise exception.CacheEntryInvalid(
            name=name, reason='%s safety check failed: %s' % (fmt, e))
    return st.st_size if fmt == 'raw' else inspector.virtual_size


def _files_of(name):
    """Every file name an entry may own, sidecar first (``.part`` names
    are those of earlier versions of this code)."""
    sidecar = name + SIDECAR_SUFFIX
    return [sidecar, sidecar + PART_SUFFIX, name, name + PART_SUFFIX]


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


def unrecorded_disks_exist(context, batch=500):
    """True while a local mapping of a live instance has no record.

    Its disk may sit on an upstream file that only its record, once
    written, will name. Every instance counts, not only this host's: an
    instances_path (and so ``_base``) may be shared.
    """
    # Imported late: the objects are not needed to use the cache.
    from nova.objects import block_device as block_device_obj
    from nova.objects import instance as instance_obj

    uuids = [i.uuid for i in instance_obj.InstanceList.get_all(context)]
    for start in range(0, len(uuids), batch):
        bdms = block_device_obj.BlockDeviceMappingList.get_by_instance_uuids(
            context, uuids[start:start + batch])
        if any(bdm.is_local and bdm.driver_info is None for bdm in bdms):
            return True
    return False


_CACHE = None
_CACHE_LOCK = threading.Lock()


def get_cache():
    """The process-wide ImageCache (paths from CONF at each call)."""
    global _CACHE
    with _CACHE_LOCK:
        if _CACHE is None:
            _CACHE = ImageCache()
        return _CACHE

"""The default image store: one directory per image on this host.

Layout, under ``root`` (default ``$state_path/images``)::

    <image_id>/metadata.json   the record that ``get`` returns
    <image_id>/data            the image's bytes, sparse

``image_id`` is a uuid4 made by ``import_file`` and validated as a
canonical UUID on every call, so no id can name a path outside ``root``.
Every file is made, read and removed through directory descriptors
(``nova.virt.staging``): the store must be the service's own (StrictModes),
an image's directory and its files are never reached through a link, and a
FIFO is refused without blocking. ``metadata.json`` is written last (a
private part, fsync, published without replacing): a directory without it
is an unfinished import, invisible as an image, and removed by the next
import once its importer is gone (``remove_unfinished``).

Imports apply the fetch's rules (``nova.virt.images``): the content must
be the declared format, pass the inspector's safety check and agree with
``qemu-img info``; what is stored is what a fetch will accept.
"""

import contextlib
import fcntl
import os
import shutil
import stat

from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import units
from oslo_utils import uuidutils

from nova import exception
from nova.image import api
from nova import utils
from nova.virt import images
from nova.virt import sparse
from nova.virt import staging
import nova.conf

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

METADATA_NAME = 'metadata.json'
DATA_NAME = 'data'

#: Bytes per chunk yielded by ``download`` (and read by ``import_file``).
#: A cold fetch of 4 GiB of raw data took a median 7.2 s with 8 MiB
#: chunks against 9.1 s with 1 MiB (alternating runs on this machine):
#: fewer, larger reads and writes keep the disk's queue fuller.
CHUNK_SIZE = 8 * units.Mi

#: A metadata file larger than this is not ours.
_MAX_METADATA = units.Mi

#: What an import's record holds before its source is read: the widest
#: values the inspection can give (sha512's hex digest, sizes of 2**64 - 1
#: bytes). The caller's arguments with these pass ``encode_metadata`` if
#: the real record will.
_DRAFT_ID = '00000000-0000-4000-8000-000000000000'
_DRAFT_INSPECTION = {
    'id': _DRAFT_ID,
    'status': 'active',
    'size': 2 ** 64 - 1,
    'checksum': None,
    'os_hash_algo': 'sha512',
    'os_hash_value': '0' * 128,
    'virtual_size': 2 ** 64 - 1,
}

_DIR_MODE = 0o700
_FILE_MODE = 0o600

#: key -> (accepted types, may be None)
_SCHEMA = {
    'id': (str, False),
    'name': (str, True),
    'status': (str, False),
    'disk_format': (str, False),
    'container_format': (str, False),
    'size': (int, False),
    # Like Glance's: images from before os_hash have only the md5
    # checksum, and a record may in principle have only the strong hash.
    # The fetch refuses a record with neither.
    'checksum': (str, True),
    'os_hash_algo': (str, True),
    'os_hash_value': (str, True),
    'virtual_size': (int, True),
    'min_disk': (int, False),
    'properties': (dict, False),
}


def validate_metadata(image_id, meta):
    """Check a loaded metadata record; return a clean copy of it.

    :raises: ImageMetadataInvalid naming the first bad key.
    """
    if not isinstance(meta, dict):
        raise exception.ImageMetadataInvalid(
            image_id=image_id, reason='not a JSON object')
    clean = {}
    for key, (types, nullable) in _SCHEMA.items():
        if key not in meta:
            raise exception.ImageMetadataInvalid(
                image_id=image_id, reason='%s is missing' % key)
        value = meta[key]
        if value is None and nullable:
            clean[key] = None
            continue
        if not isinstance(value, types) or isinstance(value, bool):
            raise exception.ImageMetadataInvalid(
                image_id=image_id, reason='%s has type %s' % (
                    key, type(value).__name__))
        if types is int and value < 0:
            raise exception.ImageMetadataInvalid(
                image_id=image_id, reason='%s is negative' % key)
        clean[key] = value
    if clean['id'] != image_id:
        # A record copied or moved under another id: never serve one
        # image's bytes as another's.
        raise exception.ImageMetadataInvalid(
            image_id=image_id, reason='it names image %r' % clean['id'])
    if not all(isinstance(k, str) for k in clean['properties']):
        raise exception.ImageMetadataInvalid(
            image_id=image_id, reason='properties keys must be strings')
    clean['properties'] = dict(clean['properties'])
    return clean


def encode_metadata(image_id, meta):
    """The bytes of ``metadata.json`` for the record ``meta``, which
    ``get`` will read back as ``meta``.

    :raises: ImageMetadataInvalid naming ``image_id`` and the reason: a
        record that is not JSON, larger than _MAX_METADATA, or that
        ``validate_metadata`` refuses once read back.
    """
    try:
        raw = jsonutils.dump_as_bytes(meta, indent=2, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise exception.ImageMetadataInvalid(
            image_id=image_id, reason='not JSON: %s' % e)
    if len(raw) > _MAX_METADATA:
        raise exception.ImageMetadataInvalid(
            image_id=image_id, reason='%s would be %d bytes, more than %d' % (
                METADATA_NAME, len(raw), _MAX_METADATA))
    validate_metadata(image_id, jsonutils.loads(raw))
    return raw


def _check_import_arguments(path, disk_format, name, container_format,
                            min_disk, properties):
    """Refuse, before anything is read or stored, an import whose record
    ``get`` would refuse.

    :raises: InvalidInput naming ``path`` and the reason.
    """
    if disk_format not in images.DISK_FORMATS:
        raise exception.InvalidInput(
            reason='disk_format %r is not one of %s' % (
                disk_format, ', '.join(sorted(images.DISK_FORMATS))))
    if container_format not in images.CONTAINER_FORMATS:
        raise exception.InvalidInput(
            reason='container_format %r is not one of %s' % (
                container_format, ', '.join(images.CONTAINER_FORMATS)))
    if name is not None and not isinstance(name, str):
        raise exception.InvalidInput(reason='name must be a string')
    if not all(isinstance(k, str) for k in properties):
        raise exception.InvalidInput(
            reason='property names must be strings')
    if (not isinstance(min_disk, int) or isinstance(min_disk, bool) or
            min_disk < 0):
        raise exception.InvalidInput(
            reason='min_disk must be a number of GiB')
    draft = dict(_DRAFT_INSPECTION, name=name, disk_format=disk_format,
                 container_format=container_format, min_disk=min_disk,
                 properties=properties)
    try:
        encode_metadata(_DRAFT_ID, draft)
    except exception.ImageMetadataInvalid as e:
        raise exception.InvalidInput(
            reason='the record of an import of %s would be refused: %s' % (
                path, e.kwargs['reason'])) from None


class LocalImageService(api.ImageService):
    """Images in a local directory (see the module docstring).

    :param root: the store's directory (default ``$state_path/images``,
        read at each call).
    """

    def __init__(self, root=None):
        self._root = root

    @property
    def root(self):
        return os.path.abspath(self._root or
                               os.path.join(CONF.state_path, 'images'))

    def image_dir(self, image_id):
        """The directory of ``image_id`` (validated; may not exist)."""
        utils.validate_uuid(image_id, kind='image')
        return os.path.join(self.root, image_id)

    def _open_root(self, create=False):
        """The store's directory, checked (StrictModes, see staging)."""
        return staging.open_root(self.root, create=create, mode=_DIR_MODE)

    # --- reading ------------------------------------------------------------

    def _open(self, image_id, name, buffering=-1):
        """Open the store's file ``name`` of ``image_id`` for reading.

        The store and the image's directory are opened without following
        a link, the file with ``O_NOFOLLOW | O_NONBLOCK`` and checked by
        its descriptor (see ``staging.Directory.open_regular``).

        :raises: ImageNotFound if it is missing; ImageMetadataInvalid for a
            link, or anything that is not a regular file; UnsafeDirectory
            for a store others can write.
        """
        utils.validate_uuid(image_id, kind='image')
        try:
            with self._open_root() as root:
                with root.subdir(image_id, strict=False) as image_dir:
                    fd = image_dir.open_regular(name)
        except FileNotFoundError:
            raise exception.ImageNotFound(image_id=image_id)
        except exception.UnsafePath as e:
            raise exception.ImageMetadataInvalid(
                image_id=image_id, reason='cannot open %s: %s' % (name, e))
        except OSError as e:
            raise exception.ImageMetadataInvalid(
                image_id=image_id, reason='cannot open %s: %s' % (
                    name, e.strerror))
        return os.fdopen(fd, 'rb', buffering=buffering)

    def get(self, context, image_id):
        """See ``ImageService.get``."""
        with self._open(image_id, METADATA_NAME) as f:
            raw = f.read(_MAX_METADATA + 1)
        if len(raw) > _MAX_METADATA:
            raise exception.ImageMetadataInvalid(
                image_id=image_id, reason='%s is too large' % METADATA_NAME)
        try:
            meta = jsonutils.loads(raw.decode('utf-8'))
        except (ValueError, UnicodeDecodeError) as e:
            raise exception.ImageMetadataInvalid(
                image_id=image_id, reason='%s is not JSON: %s' % (
                    METADATA_NAME, e))
        return validate_metadata(image_id, meta)

    def download(self, context, image_id, chunk_size=CHUNK_SIZE):
        """See ``ImageService.download``."""
        self.get(context, image_id)
        return _read_chunks(self._open(image_id, DATA_NAME, buffering=0),
                            chunk_size)

    def get_all(self, context):
        """Metadata of every valid image; unreadable entries are logged."""
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        result = []
        for name in names:
            if not uuidutils.is_uuid_like(name) or name != name.lower():
                continue
            try:
                result.append(self.get(context, name))
            except exception.ImageNotFound:
                continue  # an unfinished import
            except exception.Invalid as e:
                LOG.warning('Skipping image %(name)s: %(err)s',
                            {'name': name, 'err': e})
        return result

    # --- writing ------------------------------------------------------------

    def import_file(self, context, path, disk_format, name=None,
                    container_format='bare', progress=None, min_disk=0,
                    properties=None):
        """Copy ``path`` into the store as a new image.

        One pass over the source computes its size and its
        ``[image_store] hashing_algorithm`` hash, runs the format
        inspectors and writes the copy (zero blocks as holes); then
        ``qemu-img info`` must agree and the virtual size is recorded.

        :param path: a regular file.
        :param disk_format: 'raw', 'qcow2', 'iso' or 'ploop' (what the
            content must be; a raw disk image detected as gpt counts as
            raw).
        :param container_format: 'bare' or 'ovf'.
        :param progress: optional ``callback(bytes_done, bytes_total)``.
        :param min_disk: GiB, as in Glance.
        :param properties: a dict of extra properties (string keys).
        :returns: the new image's metadata (as ``get`` returns it).
        :raises: InvalidInput for bad arguments or a source that is not a
            regular file; ImageUnacceptable subclasses (the same as a
            fetch) for content that is not acceptable.
        """
        properties = dict(properties or {})
        _check_import_arguments(path, disk_format, name, container_format,
                                min_disk, properties)

        src = _open_source(path)
        with src:
            size = os.fstat(src.fileno()).st_size
            image_id = uuidutils.generate_uuid()
            with self._open_root(create=True) as root:
                image_dir = self._make_image_dir(root, image_id)
                try:
                    with image_dir:
                        meta = self._import(image_id, image_dir, src, size,
                                            disk_format, progress)
                        meta.update(name=name,
                                    container_format=container_format,
                                    min_disk=min_disk, properties=properties)
                        # Checked before: this only guards the last step.
                        encode_metadata(image_id, meta)
                        self._write_metadata(image_dir, meta)
                    root.fsync()
                except BaseException:
                    shutil.rmtree(image_id, dir_fd=root.fd,
                                  ignore_errors=True)
                    raise
        LOG.info('Imported %(path)s as image %(image_id)s (%(fmt)s, '
                 '%(size)d bytes, virtual size %(vsize)d)',
                 {'path': path, 'image_id': image_id, 'fmt': disk_format,
                  'size': meta['size'], 'vsize': meta['virtual_size']})
        return self.get(context, image_id)

    def _make_image_dir(self, root, image_id):
        """Remove what dead imports left, then make and flock the new
        image directory ``image_id`` in the store ``root`` (a Directory).

        Under the store's lock (see ``_store_lock``): no
        ``remove_unfinished`` sees the new directory before its flock is
        held, which it then keeps for the whole import.

        :returns: the new image directory (a Directory: close it).
        """
        with _store_lock(root):
            self._remove_unfinished(root)
            os.mkdir(image_id, _DIR_MODE, dir_fd=root.fd)
            try:
                image_dir = root.subdir(image_id)
                try:
                    fcntl.flock(image_dir.fd, fcntl.LOCK_EX)
                except BaseException:
                    image_dir.close()
                    raise
            except BaseException:
                shutil.rmtree(image_id, dir_fd=root.fd, ignore_errors=True)
                raise
        return image_dir

    def remove_unfinished(self, root=None):
        """Remove what killed imports left: image directories without
        ``metadata.json`` whose import is not running.

        A running import holds a flock on its image directory; the kernel
        drops it when the importer dies. Only entries with image-id names
        that are real directories are looked at; anything else (a link, a
        file) is logged and left alone. The scan holds the store's lock,
        so an import's new directory is never seen before it is flocked.

        :param root: the store's Directory, or None to open it. Its
            descriptor must not be one whose store lock is held already
            (a flock released here would be the caller's).
        :returns: sorted ids of the removed directories.
        """
        if root is None:
            try:
                with self._open_root() as root:
                    return self.remove_unfinished(root)
            except FileNotFoundError:
                return []
        with _store_lock(root):
            return self._remove_unfinished(root)

    def _remove_unfinished(self, root):
        """``remove_unfinished`` with the store's lock held."""
        removed = []
        for name in sorted(root.listdir()):
            if not uuidutils.is_uuid_like(name) or name != name.lower():
                continue
            try:
                image_dir = root.subdir(name, strict=False)
            except (OSError, exception.UnsafePath) as e:
                LOG.warning('Image store entry %(name)s left alone: '
                            '%(err)s', {'name': name, 'err': e})
                continue
            with image_dir:
                try:
                    fcntl.flock(image_dir.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # an import in progress
                if image_dir.lexists(METADATA_NAME):
                    continue
                shutil.rmtree(name, dir_fd=root.fd, ignore_errors=True)
            LOG.info('Removed %(path)s, left by an interrupted import',
                     {'path': root.join(name)})
            removed.append(name)
        return removed

    def _import(self, image_id, image_dir, src, size, disk_format, progress):
        with staging.Part(image_dir, DATA_NAME, mode=_FILE_MODE) as part:
            with images.ImageStream(
                    image_id, disk_format, fd=part.fd, size=size,
                    os_hash_algo=CONF.image_store.hashing_algorithm,
                    md5=False, progress=progress,
                    writeback=True) as stream:
                while True:
                    chunk = src.read(CHUNK_SIZE)
                    if not chunk:
                        break
                    stream.write(chunk)
                # size was fstat'ed: a source that changed while being
                # read fails here as a short or long read.
                inspection = stream.finish()
            images.check_with_qemu_img(image_id, part.path, disk_format,
                                       inspection)
            part.publish()
        return {
            'id': image_id,
            'status': 'active',
            'disk_format': disk_format,
            'size': inspection.size,
            'checksum': inspection.checksum,
            'os_hash_algo': inspection.os_hash_algo,
            'os_hash_value': inspection.os_hash_value,
            'virtual_size': inspection.virtual_size,
        }

    def _write_metadata(self, image_dir, meta):
        """Write ``metadata.json`` last: fsynced, published without
        replacing, the directory fsynced (see ``staging.Part``)."""
        data = jsonutils.dump_as_bytes(meta, indent=2, sort_keys=True)
        with staging.Part(image_dir, METADATA_NAME, mode=_FILE_MODE) as part:
            _write_all(part.fd, data)
            part.publish()

    def delete(self, context, image_id):
        """Remove ``image_id``: its metadata first, so it vanishes at once.

        The image's directory is never reached through a link: a symlink
        planted at its name (to another image's directory, or out of the
        store) is refused and left alone, as is anything else that is not
        a directory. Its removal works on the directory opened with
        O_NOFOLLOW, and rmtree never follows a link either.

        :raises: ImageNotFound; ImageMetadataInvalid (an entry that is not
            a real directory: a link, a file) with nothing removed.
        """
        utils.validate_uuid(image_id, kind='image')
        try:
            root = self._open_root()
        except FileNotFoundError:
            raise exception.ImageNotFound(image_id=image_id)
        with root:
            self._unlink_metadata(root.fd, image_id)
            shutil.rmtree(image_id, dir_fd=root.fd, ignore_errors=True)
        LOG.info('Deleted image %(image_id)s', {'image_id': image_id})

    @staticmethod
    def _unlink_metadata(root_fd, image_id):
        try:
            dir_fd = os.open(image_id, os.O_RDONLY | os.O_DIRECTORY |
                             os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root_fd)
        except FileNotFoundError:
            raise exception.ImageNotFound(image_id=image_id)
        except OSError as e:
            # ELOOP: a symlink; ENOTDIR: a file, a FIFO...
            raise exception.ImageMetadataInvalid(
                image_id=image_id, reason='its store entry is not a '
                'directory: %s' % e.strerror)
        try:
            os.unlink(METADATA_NAME, dir_fd=dir_fd)
        except FileNotFoundError:
            raise exception.ImageNotFound(image_id=image_id)
        except OSError as e:
            raise exception.ImageMetadataInvalid(
                image_id=image_id, reason='cannot remove %s: %s' % (
                    METADATA_NAME, e.strerror))
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def _store_lock(root):
    """Hold the store's lock: an exclusive flock on the open store
    directory ``root`` itself (no file is added to the store's layout).

    A flock belongs to the open file description: another opening of the
    store, in this process or another, waits for it.
    """
    fcntl.flock(root.fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(root.fd, fcntl.LOCK_UN)


def _open_source(path):
    """Open an import's source: a regular file, refused without blocking.

    ``O_NONBLOCK`` first, so that a FIFO (or a device) is refused by the
    ``fstat`` that follows instead of blocking the open for a writer.

    :raises: InvalidInput.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise exception.InvalidInput(
            reason='cannot read %s: %s' % (path, e.strerror))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise exception.InvalidInput(
                reason='%s is not a regular file' % path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, 'rb', buffering=0)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_chunks(f, chunk_size):
    """The bytes of the open store file ``f``, then close it.

    Its holes (a disk image is mostly holes) come as views of one shared
    buffer of zeros (``sparse.read_sparse``): every byte still reaches the
    fetch's hash, but a hole is neither read here nor written there.
    """
    with f:
        yield from sparse.read_sparse(f.fileno(), chunk_size)

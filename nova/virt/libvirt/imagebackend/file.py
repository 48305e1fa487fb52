"""FileImage: the mid-level of backends whose disk is a file.

Flat, Qcow2 and Ploop keep each disk under the instance's directory,
``$instances_path/<uuid>/<disk_name>``. This level owns what that means,
through ``nova/virt/staging.py`` (``instances_path``, and the instance
directories in it, may be shared with hosts that do not trust us):

* the instance directory is exactly ``instances_path/<uuid>``, opened once
  per operation ``O_DIRECTORY | O_NOFOLLOW`` (a link or a file at that
  name is ``UnsafePath``, left alone) and used through its descriptor;
* each disk is built in a ``staging.Part`` (a private file at an
  unpredictable name, created ``O_EXCL | O_NOFOLLOW``) that tools reach
  through its descriptor, and published complete under the disk's name
  without ever replacing one; the parts of a killed create are removed;
* an existing disk (resize, verify, inspect) is opened ``O_NOFOLLOW |
  O_NONBLOCK``, checked regular, and handed to qemu-img or ftruncate as
  that descriptor; removal unlinks the name itself;
* preallocation (``posix_fallocate`` on the part's descriptor) when the
  record says so;
* the file source of the ``<disk>`` element (libvirt needs the name).
"""

import contextlib
import os

from oslo_log import log as logging
from oslo_utils.imageutils import format_inspector

import nova.conf
from nova import exception
from nova.virt.libvirt.imagebackend import base
from nova.virt import qemu_img
from nova.virt import staging

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

# New disk files hold guest data: private to the service (libvirt relabels
# them for qemu).
DISK_MODE = 0o600
#: An instance's directory: the service's, readable (libvirt, qemu).
INSTANCE_DIR_MODE = 0o755


class OpenDisk:
    """An existing disk opened by descriptor, as a ``staging.Part`` offers
    a new one: ``fd``, and ``path`` for tools (``staging.fd_path``); for
    a disk that is a directory (ploop), ``image`` is the descriptor of
    the image file in it."""

    def __init__(self, fd, image=None):
        self.fd = fd
        self.image = image

    @property
    def path(self):
        return staging.fd_path(self.fd)


class FileImage(base.Image):
    """A disk that is a file (or directory) under the instance directory."""

    @property
    def instance_dir(self):
        """``$instances_path/<uuid>``: for messages and libvirt only (the
        uuid is validated: one plain name)."""
        return os.path.join(os.path.abspath(CONF.instances_path),
                            self.instance_uuid)

    @property
    def path(self):
        """``$instances_path/<uuid>/<disk_name>`` (for messages, libvirt)."""
        return os.path.join(self.instance_dir, self.record.disk_name)

    @property
    def image_path(self):
        """The file qemu opens: the disk's path itself here (a ploop disk
        keeps it inside its directory)."""
        return self.path

    @contextlib.contextmanager
    def _instance_directory(self, create=False):
        """Yield the instance's staging.Directory, held for the operation.

        ``instances_path`` is opened as configured (StrictModes), the
        instance's directory in it never through a link. With ``create``
        it is made (``INSTANCE_DIR_MODE``) if missing, and removed again
        if the block fails and left it empty.

        :raises: FileNotFoundError (missing, not ``create``), UnsafePath,
            UnsafeDirectory.
        """
        with staging.open_root(CONF.instances_path, create=create,
                               mode=INSTANCE_DIR_MODE) as root:
            made = create and not root.lexists(self.instance_uuid)
            with root.subdir(self.instance_uuid, create=create,
                             mode=INSTANCE_DIR_MODE, batched=True) as d:
                try:
                    yield d
                except BaseException:
                    if made and root.same_file(self.instance_uuid, d.fd):
                        with contextlib.suppress(OSError):
                            root.rmdir(self.instance_uuid)
                    raise

    def exists(self):
        """True if anything is at the disk's name (never followed)."""
        try:
            with self._instance_directory() as d:
                return d.lexists(self.disk_name)
        except FileNotFoundError:
            return False

    def remove(self):
        """Remove the disk, and what a killed create of it left behind;
        removing a missing disk is not an error.

        :raises: UnsafePath if the instance's directory is a link (nothing
            removed through it).
        """
        try:
            with self._instance_directory() as d:
                if self._remove_entry(d, self.disk_name):
                    LOG.info('Removed %(disk)r', {'disk': self})
                self._remove_stale_parts(d)
        except FileNotFoundError:
            pass

    def _remove_entry(self, d, name):
        """Remove the disk's entry ``name`` in ``d`` (the entry itself,
        never what a link there points at); False if it was missing."""
        try:
            d.unlink(name, missing_ok=False)
        except FileNotFoundError:
            return False
        return True

    def _remove_stale_parts(self, d):
        staging.remove_stale_parts(d, self.disk_name)

    def _open_image(self, d, flags=os.O_RDONLY):
        """The descriptor of the file qemu opens (the disk itself here),
        a context manager (see ``opened``).

        :raises: FileNotFoundError, UnsafePath.
        """
        return opened(d, self.disk_name, flags)

    @contextlib.contextmanager
    def _existing(self):
        """Yield the instance directory of this existing disk: DiskNotFound
        if the disk (or the directory) is missing."""
        try:
            with self._instance_directory() as d:
                yield d
        except FileNotFoundError:
            raise exception.DiskNotFound(instance_uuid=self.instance_uuid,
                                         disk_name=self.disk_name)

    @contextlib.contextmanager
    def _existing_image(self, flags=os.O_RDONLY):
        """``_open_image`` of this disk in its instance directory."""
        with self._existing() as d, self._open_image(d, flags) as fd:
            yield fd

    def inspect(self):
        """What is on disk, read with the recorded format pinned.

        :returns: {'format': 'qcow2', 'virtual_size': 2147483648,
            'allocated': 200704, 'backing_file': '/.../_base/3f78...',
            'backing_format': 'raw', 'data_file': None} (the backing keys
            are None without a backing file, 'data_file' without an
            external data file).
        :raises: DiskNotFound, UnsafePath (not a regular file),
            ProcessFailed.
        """
        with self._existing_image() as fd:
            info = qemu_img.info(staging.fd_path(fd), self.qemu_format)
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
        neither the backing file nor the data-file) of the disk's
        descriptor (never a link, never a FIFO) must report the recorded
        format, no data-file, and exactly the recorded backing file and
        backing format. A disk whose format has no metadata (raw) has
        nothing to check. Not needed right after this process made the
        disk: what it made is what the record says.

        :raises: DiskNotFound; DiskLayoutMismatch naming the instance, the
            disk, what was expected and what was found (nothing else was
            done).
        """
        if self._expected_layout() is not None:
            with self._verified_image():
                pass

    def _verified_image(self, flags=os.O_RDONLY):
        """Yield a descriptor of the disk's image, proven as ``verify``
        says through that very descriptor (a raw disk: only opened): what
        reads it reads the file that was checked, whatever is done to its
        name meanwhile.

        :raises: as ``verify``.
        """
        return self._proven(self._existing_image(flags))

    @contextlib.contextmanager
    def _proven(self, opening):
        """Enter ``opening``, a context manager that yields a descriptor
        of the disk's image, and yield it once proven as ``verify`` says.

        :raises: DiskLayoutMismatch, also for a link or a FIFO where
            ``opening`` expects the image (UnsafePath); DiskNotFound.
        """
        with contextlib.ExitStack() as stack:
            fd = self._enter_safely(stack, opening)
            if self._expected_layout() is not None:
                self._check_layout(fd, self._expected())
            yield fd

    def _enter_safely(self, stack, opening):
        """``stack.enter_context(opening)``, a link or a FIFO where the
        disk should be (UnsafePath) raised as DiskLayoutMismatch: qemu-img
        never follows a link or blocks on a FIFO."""
        try:
            return stack.enter_context(opening)
        except exception.UnsafePath:
            raise self._mismatch(self._expected(), 'not a regular file')

    def _expected(self):
        """What ``verify`` must find, as ``_check_layout`` compares it."""
        return dict(self._expected_layout() or {},
                    format=self.qemu_format, data_file=None)

    def _check_layout(self, fd, expected):
        try:
            info = qemu_img.info(staging.fd_path(fd), self.qemu_format)
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

    def _expected_layout(self):
        """What ``verify`` must find in the disk's metadata, from the record:
        {'backing_file': path or None, 'backing_format': fmt or None}; or
        None for a format without metadata (raw), which has nothing to
        check."""
        return None

    def _location(self):
        return self.path

    def _libvirt_source(self):
        return {'source_path': self.image_path}

    @contextlib.contextmanager
    def _resize_target(self):
        """Yield the existing disk as an ``OpenDisk`` (read-write),
        verified through that descriptor: the resize works on the file
        that was checked, whatever is done to its name meanwhile."""
        with self._verified_image(os.O_RDWR) as fd:
            yield OpenDisk(fd)

    def _finish(self, target, size):
        self._preallocate(target, size)

    def _grow_qcow2(self, target, size):
        """Grow the open qcow2 disk ``target`` to ``size`` bytes with
        ``qemu-img resize`` (format pinned), after reading its virtual size
        from its header on that descriptor.

        :raises: DiskShrinkNotSupported for a disk larger than ``size``
            (its record lags behind; it is never cut).
        """
        # The disk was just verified as a qcow2. A qcow2 is whole 512-byte
        # sectors (qemu-img create rounds up, resize refuses anything
        # else), so a record's size that is not (a root disk of root_gb 0
        # is as large as its image) is rounded up.
        header = format_inspector.QcowInspector()
        header.eat_chunk(os.pread(target.fd, 512, 0))
        current = header.virtual_size
        sectors = -(-size // 512) * 512
        if current > sectors:
            raise exception.DiskShrinkNotSupported(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                current=current, requested=size)
        if current < sectors:
            qemu_img.resize(target.path, self.qemu_format, sectors)

    @contextlib.contextmanager
    def _staged(self, size):
        """Yield a ``staging.Part`` to build the disk in; publish it after.

        ``size`` is not needed: a file grows as it is written.

        The part is ``.<disk_name>.<random>.part`` in the instance
        directory (made if missing), created ``O_EXCL | O_NOFOLLOW`` with
        ``DISK_MODE``; the block builds the disk through ``part.path`` or
        ``part.fd`` (copy or create, grow, preallocate). Then it is fsynced
        and linked at the disk's name by its descriptor, which never
        replaces anything (a file or link that appeared at the disk's name
        meanwhile raises DiskAlreadyExists and stays), and the directory
        fsynced (once for all of a spawn's disks: see
        ``staging.directory_syncs``). So the disk's name only ever names a
        complete disk, even if the process dies half way: the DiskManager
        keeps an existing recorded disk on a retry, and must never keep
        half of one. (A
        qcow2 overlay names its base by absolute path, so it does not care
        what it is called.)

        Before building, the parts a killed create of this disk left are
        removed (a live create's part is flocked and stays). On failure
        the part goes, and the instance directory too if this call created
        it and it is empty.
        """
        with self._instance_directory(create=True) as d:
            self._remove_stale_parts(d)
            with self._already_exists():
                with self._new_part(d) as part:
                    yield part
                    self._publish(d, part)

    def _new_part(self, d):
        """The private part the disk is built in (a context manager)."""
        return staging.Part(d, self.disk_name, mode=DISK_MODE)

    def _publish(self, d, part):
        # The directory's fsync may be one for all of the instance's disks
        # (see staging.directory_syncs: a spawn).
        part.publish(batched=True)

    @contextlib.contextmanager
    def _already_exists(self):
        """Turn a refused exclusive create or publish into our error."""
        try:
            yield
        except FileExistsError as e:
            raise exception.DiskAlreadyExists(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                location=e.filename or self.path) from None

    def _preallocate(self, target, size):
        """Allocate ``size`` bytes up front if the record says so.

        For a qcow2 file this reserves host space that qcow2 then fills
        with clusters, so the guest cannot run out of host storage.
        """
        if self.record.preallocated:
            os.posix_fallocate(target.fd, 0, size)

    # --- snapshots (nova.virt.libvirt.snapshot) ------------------------------

    @contextlib.contextmanager
    def snapshot_source(self):
        """The file qemu opens (a ploop disk's ``root.hds``), verified
        and read through one descriptor, in the recorded format (see
        ``Image.snapshot_source``)."""
        with self._verified_image() as fd:
            yield staging.fd_path(fd), self.qemu_format


@contextlib.contextmanager
def opened(directory, name, flags=os.O_RDONLY):
    """Yield a descriptor of the regular file ``name`` in ``directory``
    (a staging.Directory), opened ``O_NOFOLLOW | O_NONBLOCK`` and checked
    regular (``Directory.open_regular``); closed after.

    :raises: FileNotFoundError, UnsafePath.
    """
    fd = directory.open_regular(name, flags)
    try:
        yield fd
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

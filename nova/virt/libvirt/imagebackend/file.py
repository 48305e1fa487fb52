"""FileImage: the mid-level of backends whose disk is a file.

Flat, Qcow2 and Ploop keep each disk under the instance's directory,
``$instances_path/<uuid>/<disk_name>`` (proven to stay under
``instances_path``). This level owns what that means:

* building each disk under a private part name and publishing it
  complete, atomically, at its final name; removing whatever a failed
  create made, and the leftovers of a killed one. These steps sit behind
  small methods (``_staged``, ``_publish``, ``_remove_stale_parts``,
  ``_reserve``) so that a shared staging module can replace them;
* preallocation (``posix_fallocate``) when the record says so;
* ``verify()``, which proves with ``qemu-img info -f <recorded format>``
  that the file is what its record says, and ``inspect()``;
* removal by unlink, and the file source of the ``<disk>`` element.
"""

import contextlib
import os
import re
import secrets
import stat

from oslo_log import log as logging

import nova.conf
from nova import exception
from nova import utils
from nova.virt.libvirt.imagebackend import base
from nova.virt import qemu_img

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

# New disk files hold guest data: private to the service (libvirt relabels
# them for qemu).
DISK_MODE = 0o600

#: A disk is built as '.<disk_name>.<16 hex>.part' in the instance
#: directory, then published at its name (see FileImage._staged).
PART_SUFFIX = '.part'
_PART_TOKEN_BYTES = 8


class FileImage(base.Image):
    """A disk that is a file (or directory) under the instance directory."""

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
    def image_path(self):
        """The file qemu opens: the disk's path itself here (a ploop disk
        keeps it inside its directory)."""
        return self.path

    def exists(self):
        """True if the disk's file is there."""
        return os.path.lexists(self.path)

    def remove(self):
        """Remove the disk, and what a killed create of it left behind;
        removing a missing disk is not an error."""
        with contextlib.suppress(FileNotFoundError):
            self._discard(self.path)
            LOG.info('Removed %(disk)r', {'disk': self})
        self._remove_stale_parts()

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
        info = qemu_img.info(self.image_path, self.qemu_format)
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
        path = self.image_path
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

    def _discard(self, path):
        """Remove the disk (or a part of it) at ``path``, never following
        a link planted there."""
        os.unlink(path)

    def _resize_target(self):
        return self.path

    def _finish(self, path, size):
        self._preallocate(path, size)

    @contextlib.contextmanager
    def _staged(self, size):
        """Yield a private path to build the disk at; publish it after.

        ``size`` is not needed: a file grows as it is written.

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
                    self._discard(part)
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
                self._discard(os.path.join(instance_dir, name))
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

    # --- snapshots (nova.virt.libvirt.snapshot) ------------------------------

    def snapshot_source(self):
        """The file qemu opens (a ploop disk's ``root.hds``) in the
        recorded format (see ``Image.snapshot_source``)."""
        if not self.exists():
            raise exception.DiskNotFound(instance_uuid=self.instance_uuid,
                                         disk_name=self.disk_name)
        return self.image_path, self.qemu_format


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

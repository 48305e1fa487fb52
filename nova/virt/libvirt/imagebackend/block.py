"""BlockImage: the mid-level of backends whose disk is a block device.

A block backend keeps each disk as a volume (``record.volume_name``) in a
container the record names (a volume group). This level owns what that
means, whatever the volume manager:

* building each disk in a volume under a temporary name,
  ``<volume_name>.part``, renamed into place only once it is complete: a
  killed create never leaves a volume under the final name, and the next
  create (or ``remove()``) wipes and removes the temporary one, so a retry
  converges;
* wiping every volume it removes, the temporary ones included (guest
  data must not reach the next tenant of those extents); a wipe that fails
  leaves the volume and raises;
* the block source of the ``<disk>`` element, from the device path of the
  volume.

Each volume manager command costs tens of milliseconds, so a create runs
as few as it can: one lookup of both names (the disk's volume and the
temporary one), reused from ``check_available`` when the backend looked
there already (``_saw``), then the create of the temporary volume and the
rename. A lookup that went stale in between is safe: the volume manager
refuses to create a temporary volume that exists (it is then wiped,
removed and created again) and to rename onto a volume that exists
(DiskAlreadyExists, the temporary one removed).

A backend (``lvm.py``) supplies the volume operations: ``_volume_size``,
``_volume_sizes``, ``_create_volume``, ``_rename_volume``, ``_wipe``,
``_remove_volume`` and ``_device_path``.
"""

import abc
import contextlib
import os
import stat

from oslo_log import log as logging

import nova.conf
from nova import exception
from nova.virt.libvirt.imagebackend import base
from nova.virt import qemu_img
from nova.virt import staging

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

#: Suffix of the temporary name a volume is built under.
TEMP_SUFFIX = '.part'

#: The temporary volume's size is not known yet (see ``_refuse_existing``).
_UNSEEN = object()

#: Lock files of disks in volumes (see ``BlockImage._volume_lock``).
_LOCK_PREFIX = 'nova-volume-'


class _HeldLock:
    """What ``BlockImage._volume_lock`` yields."""

    def __init__(self, waited):
        self.waited = waited
        self.remove_file = False


class BlockImage(base.Image):
    """A disk that is a volume, reached as a block device."""

    #: {volume name: bytes or None} of the disk's volume and its temporary
    #: one as last seen (``_saw``), for the next create only.
    _seen = None
    #: The temporary volume's size as the current create's lookup saw it.
    _temp_seen = _UNSEEN

    @property
    def volume_name(self):
        return self.record.volume_name

    @property
    def temp_volume_name(self):
        return self.record.volume_name + TEMP_SUFFIX

    @property
    def path(self):
        """The volume's block device."""
        return self._device_path(self.volume_name)

    # --- the contract --------------------------------------------------------

    def exists(self):
        """:raises: BackendUnavailable if the container cannot be listed
        (a volume group that is missing)."""
        try:
            return self._volume_size(self.volume_name) is not None
        except exception.ProcessFailed as e:
            raise exception.BackendUnavailable(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                backend=self.backend_name, reason=str(e)) from e

    def remove(self):
        """Wipe and remove the volume, and a temporary one a killed create
        left; removing a missing disk is not an error.

        :raises: VolumeWipeFailed (the volume is kept), DiskRemoveFailed.
        """
        try:
            with self._volume_lock() as held:
                for name in (self.temp_volume_name, self.volume_name):
                    if self._remove_if_there(name):
                        LOG.info('Removed volume %(volume)s of %(disk)r',
                                 {'volume': name, 'disk': self})
                held.remove_file = True
        except (exception.UnsafePath, exception.UnsafeDirectory,
                OSError) as e:
            # The lock's directory or file, not the disk.
            raise exception.DiskRemoveFailed(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                reason='taking its lock: %s' % e) from e

    def inspect(self):
        """What is on the device, read as raw.

        :returns: {'format': 'raw', 'virtual_size': <volume bytes>,
            'allocated': <volume bytes>, 'backing_file': None,
            'backing_format': None, 'data_file': None}
        :raises: DiskNotFound.
        """
        size = self._volume_size(self.volume_name)
        if size is None:
            raise exception.DiskNotFound(instance_uuid=self.instance_uuid,
                                         disk_name=self.disk_name)
        return {'format': self.qemu_format, 'virtual_size': size,
                'allocated': size, 'backing_file': None,
                'backing_format': None, 'data_file': None}

    # --- the mid-level's steps -------------------------------------------

    def _location(self):
        return '%s/%s' % (self._container(), self.volume_name)

    def _saw(self, volumes):
        """Keep what a lookup (e.g. ``check_available``'s) saw of the
        disk's two volume names, from ``volumes`` ({name: bytes}), for the
        next create to use instead of a lookup of its own."""
        self._seen = {name: volumes.get(name)
                      for name in (self.volume_name, self.temp_volume_name)}

    def _take_seen(self):
        """The sizes of the disk's two volume names: what ``_saw`` kept
        (once), else one lookup."""
        seen, self._seen = self._seen, None
        if seen is None:
            seen = self._volume_sizes(
                (self.volume_name, self.temp_volume_name))
        return seen

    def _refuse_existing(self):
        seen = self._take_seen()
        if seen[self.volume_name] is not None:
            raise exception.DiskAlreadyExists(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                location=self._location())
        # For _staged, which comes next in the same create.
        self._temp_seen = seen[self.temp_volume_name]

    def _libvirt_source(self):
        return {'source_path': self.path}

    @contextlib.contextmanager
    def _resize_target(self):
        with self._volume_lock():
            yield self.volume_name

    @contextlib.contextmanager
    def _volume_lock(self):
        """The disk's lock, held by a create from the lookup of its
        temporary volume to the rename, by a resize and by a remove.

        A volume manager has no lock of its own: without this one, a
        create (or a remove) that found the temporary volume of a create
        still filling it took it for a killed create's leftover, and wiped
        and removed it under it; the first create then published a wiped
        disk. A flock on ``<vg>-<volume>`` in ``[oslo_concurrency]
        lock_path`` (a volume group is this host's storage).

        :yields: a ``_HeldLock``: ``waited`` (another holder was waited
            for: what was looked up before may have changed), and
            ``remove_file`` (set it when no volume of the disk is left:
            the lock file goes too, before the lock is let go).
        """
        name = '%s%s-%s' % (_LOCK_PREFIX, self._container(),
                            self.volume_name)
        with staging.open_root(CONF.oslo_concurrency.lock_path,
                               create=True) as locks:
            with locks.lock(name) as waited:
                held = _HeldLock(waited)
                try:
                    yield held
                finally:
                    if held.remove_file:
                        locks.unlink(name)

    @contextlib.contextmanager
    def _staged(self, size):
        with self._volume_lock() as held:
            if held.waited:
                # Another create or a remove of this disk ran meanwhile:
                # what was looked up before is stale.
                self._seen = None
                self._refuse_existing()
            try:
                with self._staged_unlocked(size) as device:
                    yield device
            except BaseException:
                # Nothing of the disk was published; its temporary volume
                # is gone (or kept, if its wipe failed).
                with contextlib.suppress(Exception):
                    held.remove_file = self._volume_sizes(
                        (self.volume_name, self.temp_volume_name)) == {
                        self.volume_name: None, self.temp_volume_name: None}
                raise

    @contextlib.contextmanager
    def _staged_unlocked(self, size):
        temp = self.temp_volume_name
        temp_size, self._temp_seen = self._temp_seen, _UNSEEN
        if temp_size is _UNSEEN:
            temp_size = self._volume_size(temp)
        if temp_size is not None:
            self._remove_leftover(temp, temp_size)
        try:
            self._create_volume(temp, size)
        except exception.ProcessFailed:
            # The lookup was stale: a temporary volume appeared since (a
            # create of this disk killed meanwhile). Remove it, once.
            temp_size = self._volume_size(temp)
            if temp_size is None:
                raise
            self._remove_leftover(temp, temp_size)
            self._create_volume(temp, size)
        try:
            yield self._device_node(temp)
            try:
                self._rename_volume(temp, self.volume_name)
            except exception.ProcessFailed:
                # The volume manager refuses to rename onto an existing
                # volume: one that appeared meanwhile is kept.
                if self.exists():
                    raise exception.DiskAlreadyExists(
                        instance_uuid=self.instance_uuid,
                        disk_name=self.disk_name,
                        location=self._location())
                raise
        except BaseException:
            try:
                self._remove_if_there(temp)
            except Exception:
                LOG.exception('Could not remove volume %(volume)s after a '
                              'failed create of %(disk)r; the next create '
                              'or remove of the disk retries',
                              {'volume': temp, 'disk': self})
            raise

    def _device_node(self, name):
        """The device node of volume ``name``, for the tools that fill a
        new volume: its device path (``/dev/<vg>/<lv>``) is a link that
        udev makes, to ``/dev/dm-N``, and the template functions refuse
        links (a file target must never be one). Only root writes /dev.

        :raises: DiskCreateFailed if that is not a block device.
        """
        path = self._device_path(name)
        node = os.path.realpath(path)
        try:
            is_device = stat.S_ISBLK(os.stat(node).st_mode)
        except OSError as e:
            raise exception.DiskCreateFailed(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                reason='volume %s has no device at %s: %s' % (name, path, e))
        if not is_device:
            raise exception.DiskCreateFailed(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                reason='%s (volume %s) is not a block device' % (path, name))
        return node

    def _remove_leftover(self, temp, size):
        self._wipe_and_remove(temp, size)
        LOG.warning('Removed volume %(volume)s, left by a create of '
                    '%(disk)r that did not finish',
                    {'volume': temp, 'disk': self})

    def _remove_if_there(self, name):
        """Wipe and remove volume ``name`` if it exists.

        :returns: True if there was one.
        :raises: VolumeWipeFailed (kept), DiskRemoveFailed.
        """
        try:
            size = self._volume_size(name)
        except exception.ProcessFailed as e:
            # A volume group that cannot be listed (missing, its PV gone)
            # may still hold the volume: never report it removed.
            raise exception.DiskRemoveFailed(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                reason=str(e)) from e
        if size is None:
            return False
        self._wipe_and_remove(name, size)
        return True

    def _wipe_and_remove(self, name, size):
        """Wipe volume ``name`` of ``size`` bytes, then remove it.

        :raises: VolumeWipeFailed (kept), DiskRemoveFailed.
        """
        try:
            self._wipe(name, size)
        except exception.VolumeWipeFailed:
            raise
        except Exception as e:
            LOG.error('Wiping volume %(volume)s of %(disk)r failed; it is '
                      'kept: %(error)s',
                      {'volume': name, 'disk': self, 'error': e})
            raise exception.VolumeWipeFailed(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                volume='%s/%s' % (self._container(), name),
                method=self._wipe_method(), reason=str(e)) from e
        try:
            self._remove_volume(name)
        except Exception as e:
            raise exception.DiskRemoveFailed(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                reason=str(e)) from e

    def _convert_into(self, src, src_format, device):
        """Write ``src`` (pinned ``src_format``) into ``device`` as the
        recorded format (raw); the device exists (``-n``). Written with
        O_DIRECT and out of order (``-W``): every range of a raw device
        has its place already, and the writes no longer wait for each
        other."""
        qemu_img.convert(src, src_format, device, self.qemu_format,
                         target_exists=True, out_of_order=True)

    # --- what a block backend supplies -----------------------------------

    @abc.abstractmethod
    def _container(self):
        """The record's container of the volume (a volume group)."""

    @abc.abstractmethod
    def _volume_size(self, name):
        """Bytes of volume ``name``, or None if there is none."""

    @abc.abstractmethod
    def _volume_sizes(self, names):
        """{name: bytes or None} of each volume of ``names``, from one
        lookup."""

    @abc.abstractmethod
    def _create_volume(self, name, size):
        """Create volume ``name`` of ``size`` bytes; ProcessFailed
        (nothing made) if it exists."""

    @abc.abstractmethod
    def _rename_volume(self, old, new):
        """Rename a volume; ProcessFailed (nothing renamed) if ``new``
        exists."""

    @abc.abstractmethod
    def _wipe(self, name, size):
        """Overwrite volume ``name`` as the deployer asked."""

    @abc.abstractmethod
    def _wipe_method(self):
        """The wipe method's name, for messages."""

    @abc.abstractmethod
    def _remove_volume(self, name):
        """Remove volume ``name`` (already wiped)."""

    @abc.abstractmethod
    def _device_path(self, name):
        """The block device of volume ``name``."""

    # --- snapshots (nova.virt.libvirt.snapshot) ------------------------------

    @contextlib.contextmanager
    def snapshot_source(self):
        """The volume's block device, in the recorded format (raw) (see
        ``Image.snapshot_source``)."""
        if not self.exists():
            raise exception.DiskNotFound(instance_uuid=self.instance_uuid,
                                         disk_name=self.disk_name)
        yield self.path, self.qemu_format

"""Typed exceptions.

Every exception has a message template (``msg_fmt``) filled from keyword
arguments, so that callers name what failed (instance, disk, image) and why::

    raise exception.DiskNotFound(instance_uuid=uuid, disk_name='disk.local')

Catch the most specific class that you can handle; ``NovaException`` is the
root of all of them.
"""

from oslo_log import log as logging

LOG = logging.getLogger(__name__)


class NovaException(Exception):
    """Base exception: a message template formatted with kwargs."""

    msg_fmt = "An unknown exception occurred."
    code = 500

    def __init__(self, message=None, **kwargs):
        self.kwargs = kwargs
        if message is None:
            try:
                message = self.msg_fmt % kwargs
            except (KeyError, TypeError, ValueError):
                # A wrong kwarg is a bug in the raiser; never hide the
                # original error behind a formatting failure.
                LOG.exception('Exception in string format operation for '
                              '%(cls)s, kwargs: %(kwargs)s',
                              {'cls': type(self).__name__, 'kwargs': kwargs})
                message = self.msg_fmt
        self.message = message
        super().__init__(message)

    def __str__(self):
        return self.message


class Invalid(NovaException):
    msg_fmt = "Bad request: %(reason)s"
    code = 400


class NotFound(NovaException):
    msg_fmt = "Resource could not be found."
    code = 404


class InvalidInput(Invalid):
    msg_fmt = "Invalid input received: %(reason)s"


class InvalidUUID(Invalid):
    msg_fmt = "Expected a uuid but received %(uuid)r."


class InvalidName(Invalid):
    msg_fmt = "Invalid %(kind)s name %(name)r: %(reason)s"


class PathOutsideRoot(Invalid):
    msg_fmt = "Path %(path)r resolves outside of %(root)r."


# --- files and directories (see nova/virt/staging.py) --------------------

class UnsafeDirectory(NovaException):
    """A service directory others could change behind our back."""
    msg_fmt = ("Refusing to work in %(path)s: %(reason)s. Fix: %(fix)s")


class UnsafePath(Invalid):
    """A link, FIFO or other unexpected entry where a plain file or
    directory of ours must be: refused and left alone."""
    msg_fmt = "%(path)s is not a plain %(kind)s (%(reason)s); left alone."


# --- objects and database -------------------------------------------------

class ObjectActionError(NovaException):
    msg_fmt = 'Object action %(action)s failed because: %(reason)s'


class OrphanedObjectError(NovaException):
    msg_fmt = 'Cannot call %(method)s on orphaned %(objtype)s object'


class InstanceNotFound(NotFound):
    msg_fmt = "Instance %(instance_id)s could not be found."


class BDMNotFound(NotFound):
    msg_fmt = "No Block Device Mapping with id %(id)s."


class VolumeBDMNotFound(NotFound):
    msg_fmt = "No volume Block Device Mapping with id %(volume_id)s."


class VolumeBDMIsMultiAttach(Invalid):
    msg_fmt = ("Block Device Mapping %(volume_id)s is a multi-attach volume "
               "and is not valid for this operation.")


class InvalidVolume(Invalid):
    msg_fmt = "Invalid volume: %(reason)s"


class DBNotAtRevision(NovaException):
    msg_fmt = "Database is at %(actual)s, expected %(expected)s."


class InstanceExists(NovaException):
    msg_fmt = "Instance %(uuid)s already exists."


class BDMExists(NovaException):
    msg_fmt = "Block Device Mapping %(uuid)s already exists."


class DBUnversioned(NovaException):
    msg_fmt = ("Database has tables (%(tables)s) but no alembic version: it "
               "was not made by db sync, so its revision is unknown.")


class DBInvalidRevision(NovaException):
    msg_fmt = "Cannot migrate the database to %(revision)s: %(reason)s"


# --- the persisted disk record (LibvirtDiskMetadata) ----------------------

class DiskMetadataInvalid(Invalid):
    """A ``driver_info`` could not be loaded; nothing may be guessed."""
    msg_fmt = "Invalid disk record: %(reason)s"


class DiskMetadataMalformed(DiskMetadataInvalid):
    msg_fmt = "Disk record is not valid JSON of an object: %(reason)s"


class DiskMetadataUnknownObject(DiskMetadataInvalid):
    msg_fmt = ("Disk record holds object %(name)r of namespace "
               "%(namespace)r, expected LibvirtDiskMetadata.")


class DiskMetadataUnsupportedVersion(DiskMetadataInvalid):
    msg_fmt = ("Disk record has version %(version)s; this code supports "
               "LibvirtDiskMetadata up to %(supported)s.")


class DiskMetadataUnknownValue(DiskMetadataInvalid):
    msg_fmt = "Disk record has unknown %(field)s %(value)r."


class DiskMetadataMissing(NovaException):
    msg_fmt = ("Disk %(disk_name)s of instance %(instance_uuid)s has no "
               "layout record.")


# Disks made before records existed (imagebackend/legacy.py): a layout that
# cannot be worked out for certain is refused, never guessed.

class DiskLayoutNotInferred(DiskMetadataMissing):
    msg_fmt = ("Disk %(disk_name)s of instance %(instance_uuid)s has no "
               "layout record, and none is recorded for it: %(reason)s")


class LegacyDisksNotRemoved(NovaException):
    msg_fmt = ("Instance %(instance_uuid)s: disks without a layout record "
               "were left in place because which storage is theirs is not "
               "certain: %(disks)s")


class DiskFormatAmbiguous(DiskLayoutNotInferred):
    """A Flat disk without a disk.info entry whose bytes start like qcow2:
    only the operator can say what it is."""
    msg_fmt = ("Disk %(disk_name)s of instance %(instance_uuid)s has no "
               "layout record, and its format is ambiguous: %(reason)s")


# --- image service and verified fetch -------------------------------------

class ImageNotFound(NotFound):
    msg_fmt = "Image %(image_id)s could not be found."


class ImageUnacceptable(Invalid):
    """An image failed verification; nothing of it was kept."""
    msg_fmt = "Image %(image_id)s is unacceptable: %(reason)s"


class ImageFormatMismatch(ImageUnacceptable):
    msg_fmt = ("Image %(image_id)s is declared %(declared)s but its content "
               "is %(detected)s.")


class ImageUnsafe(ImageUnacceptable):
    msg_fmt = "Image %(image_id)s failed the safety check: %(reason)s"


class ImageCorrupt(ImageUnacceptable):
    msg_fmt = ("Image %(image_id)s download does not match its metadata: "
               "%(reason)s")


class ImageTooLarge(ImageUnacceptable):
    msg_fmt = ("Image %(image_id)s has virtual size %(virtual_size)d bytes, "
               "larger than the disk's %(disk_size)d bytes.")


class ProcessFailed(NovaException):
    msg_fmt = "%(cmd)s failed: %(reason)s"


class ImageFormatUnsupported(ImageUnacceptable):
    msg_fmt = ("Image %(image_id)s has disk_format %(disk_format)r, which "
               "this service does not accept.")


class ImageDamaged(ImageUnacceptable):
    """The bytes are what the metadata says, but not a sound image."""
    msg_fmt = "Image %(image_id)s is damaged: %(reason)s"


class ImageMetadataInvalid(ImageUnacceptable):
    msg_fmt = "Image %(image_id)s has invalid metadata: %(reason)s"


class ImageFetchFailed(NovaException):
    """The host failed during a fetch (no space, I/O); the image may be
    fine, and a retry may succeed. Nothing of it was kept."""
    msg_fmt = "Fetching image %(image_id)s failed: %(reason)s"


# --- local disks -----------------------------------------------------------

class DiskNotFound(NotFound):
    msg_fmt = "Disk %(disk_name)s of instance %(instance_uuid)s not found."


class DiskAlreadyExists(NovaException):
    msg_fmt = ("Disk %(disk_name)s of instance %(instance_uuid)s already "
               "exists at %(location)s.")


class DiskCreateFailed(NovaException):
    msg_fmt = ("Creating disk %(disk_name)s of instance %(instance_uuid)s "
               "failed: %(reason)s")


class DiskShrinkNotSupported(Invalid):
    msg_fmt = ("Disk %(disk_name)s of instance %(instance_uuid)s cannot "
               "shrink from %(current)d to %(requested)d bytes.")


class DiskResizeFailed(NovaException):
    msg_fmt = ("Resizing disk %(disk_name)s of instance %(instance_uuid)s "
               "failed: %(reason)s")


class BackendUnavailable(NovaException):
    """This host cannot serve a recorded backend (no such VG, no Ceph)."""
    msg_fmt = ("Disk %(disk_name)s of instance %(instance_uuid)s is recorded "
               "on backend %(backend)s, which this host cannot serve: "
               "%(reason)s")


class DiskLayoutMismatch(NovaException):
    """A disk on storage is not laid out as its record says (e.g. a raw
    file whose guest wrote a qcow2 header); nothing was done with it."""
    msg_fmt = ("Disk %(disk_name)s of instance %(instance_uuid)s is not "
               "laid out as its record says: expected %(expected)s, found "
               "%(found)s.")


# --- block and ploop storage (imagebackend/lvm.py, ploop.py) -----------------

class DiskRemoveFailed(NovaException):
    """A disk could not be removed; it is still there."""
    msg_fmt = ("Removing disk %(disk_name)s of instance %(instance_uuid)s "
               "failed, the disk is kept: %(reason)s")


class VolumeWipeFailed(DiskRemoveFailed):
    """Wiping a volume before its removal failed: it was not removed."""
    msg_fmt = ("Wiping volume %(volume)s of disk %(disk_name)s of instance "
               "%(instance_uuid)s (volume_clear = %(method)s) failed, the "
               "volume is kept: %(reason)s")


class PloopOperationUnsupported(NovaException):
    """Only the ploop kernel module could do this, and it is not here."""
    msg_fmt = ("Disk %(disk_name)s of instance %(instance_uuid)s: "
               "%(operation)s needs the ploop kernel module, which this "
               "host does not have.")


class CacheEntryInvalid(NovaException):
    msg_fmt = "Image cache entry %(name)s is unusable: %(reason)s"


class FlavorDiskSmallerThanImage(Invalid):
    msg_fmt = ("Flavor's disk is too small for requested image. Flavor disk "
               "is %(flavor_size)i bytes, image is %(image_size)i bytes.")


# --- the libvirt driver ----------------------------------------------------

class HypervisorUnavailable(NovaException):
    msg_fmt = "Connection to the hypervisor is broken: %(reason)s"


class InstanceSpawnFailed(NovaException):
    msg_fmt = "Spawning instance %(instance_uuid)s failed: %(reason)s"


class DiskPlanningFailed(Invalid):
    """The layout of a new disk cannot be decided; nothing was recorded."""
    msg_fmt = ("Cannot plan disk %(disk_name)s of instance "
               "%(instance_uuid)s: %(reason)s")


class DiskLayoutConfigMissing(DiskPlanningFailed):
    msg_fmt = ("Cannot plan disk %(disk_name)s of instance "
               "%(instance_uuid)s: [libvirt] %(option)s = %(value)s needs "
               "[libvirt] %(needed)s to be set.")


class InstanceDomainFailed(NovaException):
    msg_fmt = ("Libvirt refused to %(action)s the domain of instance "
               "%(instance_uuid)s: %(reason)s")


# --- the console scripts ---------------------------------------------------

class StatePathInvalid(NovaException):
    msg_fmt = ("state_path %(path)s is not a directory; point [DEFAULT] "
               "state_path at a directory, or move that file away.")


class InstanceStateNotSaved(NovaException):
    msg_fmt = ("Instance %(instance_uuid)s: %(error)s; its state "
               "(%(vm_state)s) could not be saved either (%(reason)s): the "
               "next nova-libvirt command that reads it repairs it from "
               "its records.")


class ImageInUse(NovaException):
    msg_fmt = ("Image %(image_id)s is the source of disks of instance(s) "
               "%(instances)s; destroy them first.")


# --- snapshots and rescue ---------------------------------------------------

class SnapshotFailed(NovaException):
    """A snapshot was refused or failed; no image was added."""
    msg_fmt = ("Snapshot %(name)s of instance %(instance_uuid)s failed: "
               "%(reason)s")


class RescueFailed(NovaException):
    msg_fmt = ("Rescue of instance %(instance_uuid)s failed: %(reason)s")

"""Field types of this project's objects: oslo's, plus our enums."""

from oslo_versionedobjects import fields

# Re-export oslo's field types so that objects import one module.
from oslo_versionedobjects.fields import *  # noqa: F401,F403


class DiskBackend(fields.Enum):
    """Where and how a local disk is stored.

    flat: a standalone file; qcow2: a qcow2 overlay over a cached base;
    lvm: a logical volume; rbd: a Ceph RBD image; ploop: a ploop image.
    """

    FLAT = 'flat'
    QCOW2 = 'qcow2'
    LVM = 'lvm'
    RBD = 'rbd'
    PLOOP = 'ploop'

    ALL = (FLAT, QCOW2, LVM, RBD, PLOOP)

    def __init__(self):
        super().__init__(valid_values=DiskBackend.ALL)


class DiskFormat(fields.Enum):
    """The on-disk format that every tool call on a disk pins."""

    RAW = 'raw'
    QCOW2 = 'qcow2'
    PLOOP = 'ploop'

    ALL = (RAW, QCOW2, PLOOP)

    def __init__(self):
        super().__init__(valid_values=DiskFormat.ALL)


class DiskBackendField(fields.BaseEnumField):
    AUTO_TYPE = DiskBackend()


class DiskFormatField(fields.BaseEnumField):
    AUTO_TYPE = DiskFormat()


class DiskSourceKind(fields.Enum):
    """A disk beside the instance's mappings: the config drive (imported
    from a file) or a rescue disk (from the rescue image)."""

    FILE = 'file'
    RESCUE = 'rescue'

    ALL = (FILE, RESCUE)

    def __init__(self):
        super().__init__(valid_values=DiskSourceKind.ALL)


class DiskSourceKindField(fields.BaseEnumField):
    AUTO_TYPE = DiskSourceKind()


# Upstream Nova's block device enums, for BlockDeviceMapping.

class BlockDeviceSourceType(fields.Enum):
    BLANK = 'blank'
    IMAGE = 'image'
    SNAPSHOT = 'snapshot'
    VOLUME = 'volume'

    ALL = (BLANK, IMAGE, SNAPSHOT, VOLUME)

    def __init__(self):
        super().__init__(valid_values=BlockDeviceSourceType.ALL)


class BlockDeviceDestinationType(fields.Enum):
    LOCAL = 'local'
    VOLUME = 'volume'

    ALL = (LOCAL, VOLUME)

    def __init__(self):
        super().__init__(valid_values=BlockDeviceDestinationType.ALL)


class BlockDeviceType(fields.Enum):
    CDROM = 'cdrom'
    DISK = 'disk'
    FLOPPY = 'floppy'
    FS = 'fs'
    LUN = 'lun'

    ALL = (CDROM, DISK, FLOPPY, FS, LUN)

    def __init__(self):
        super().__init__(valid_values=BlockDeviceType.ALL)


class BlockDeviceEncryptionFormatType(fields.Enum):
    PLAIN = 'plain'
    LUKS = 'luks'
    LUKSv2 = 'luksv2'

    ALL = (PLAIN, LUKS, LUKSv2)

    def __init__(self):
        super().__init__(valid_values=BlockDeviceEncryptionFormatType.ALL)


class BlockDeviceSourceTypeField(fields.BaseEnumField):
    AUTO_TYPE = BlockDeviceSourceType()


class BlockDeviceDestinationTypeField(fields.BaseEnumField):
    AUTO_TYPE = BlockDeviceDestinationType()


class BlockDeviceTypeField(fields.BaseEnumField):
    AUTO_TYPE = BlockDeviceType()


class BlockDeviceEncryptionFormatTypeField(fields.BaseEnumField):
    AUTO_TYPE = BlockDeviceEncryptionFormatType()

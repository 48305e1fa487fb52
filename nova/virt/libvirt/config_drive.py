"""Config drive content: a small ISO 9660 or VFAT file with the metadata.

The drive holds ``openstack/latest/meta_data.json`` (the instance's uuid,
name and hostname), under the volume label ``config-2`` that cloud-init
looks for, as upstream's. It is built with the real tools in a private
temporary directory (``genisoimage``; ``mkfs.vfat`` and ``mcopy``, which
need no mount), then imported into the instance's config drive disk by
the DiskManager (``Image.import_file``) and removed.

Whether an instance gets one is upstream's rule: asked for at boot, or
``[DEFAULT] force_config_drive``. ``[DEFAULT] config_drive_format`` says
which format; an iso9660 drive is attached as a cdrom, a vfat one as a
disk.
"""

import contextlib
import os
import shutil
import tempfile

from oslo_concurrency import processutils
from oslo_serialization import jsonutils
from oslo_utils import units

import nova.conf

CONF = nova.conf.CONF

FS_LABEL = 'config-2'
ISO9660 = 'iso9660'
VFAT = 'vfat'

#: Upstream's size of a vfat config drive.
VFAT_SIZE = 64 * units.Mi


def required(requested):
    """True if the instance gets a config drive (asked, or forced)."""
    return bool(requested) or CONF.force_config_drive


def drive_format():
    """``[DEFAULT] config_drive_format``: iso9660 or vfat."""
    return CONF.config_drive_format


def metadata(instance):
    """The metadata the drive carries, as upstream's meta_data.json."""
    return {
        'uuid': instance.uuid,
        'name': instance.display_name or instance.uuid,
        'hostname': instance.hostname or instance.display_name or
        instance.uuid,
        'launch_index': 0,
    }


@contextlib.contextmanager
def built(instance, fmt):
    """Build the drive of ``instance`` in ``fmt``; yield its path.

    The file and its directory (private, in the system's temporary
    directory) are removed when the block ends.
    """
    work = tempfile.mkdtemp(prefix='nova-config-drive-')
    try:
        tree = os.path.join(work, 'tree')
        latest = os.path.join(tree, 'openstack', 'latest')
        os.makedirs(latest)
        with open(os.path.join(latest, 'meta_data.json'), 'w') as f:
            f.write(jsonutils.dumps(metadata(instance), sort_keys=True))
        path = os.path.join(work, 'disk.config')
        if fmt == ISO9660:
            processutils.execute(
                'genisoimage', '-o', path, '-ldots', '-allow-lowercase',
                '-allow-multidot', '-l', '-V', FS_LABEL, '-quiet', '-J',
                '-r', tree)
        elif fmt == VFAT:
            with open(path, 'wb') as f:
                f.truncate(VFAT_SIZE)
            processutils.execute('mkfs.vfat', '-n', FS_LABEL, path)
            processutils.execute('mcopy', '-s', '-i', path,
                                 os.path.join(tree, 'openstack'), '::/')
        else:
            raise ValueError('unknown config drive format %r' % fmt)
        yield path
    finally:
        shutil.rmtree(work, ignore_errors=True)

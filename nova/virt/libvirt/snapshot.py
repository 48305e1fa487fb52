"""Instance snapshots: a new image from the root disk, copied as recorded.

A snapshot reads the root disk with the format its record says, never a
probed one: ``qemu-img convert -f <recorded format> -O <format>``, the
source being what the backend names (``Image.snapshot_source``: the file
or ploop's ``root.hds``, verified and read through one descriptor, or the
volume's block device). A raw disk whose guest
wrote a qcow2 header into its first bytes is copied as the raw bytes it
is, and the image is declared raw: the image service then checks those
bytes as it checks any upload, and the verified fetch again before any
disk is made from them, so the header never names a host file to anyone.

The output format is upstream's: ``[libvirt] snapshot_image_format`` if
set, else the disk's recorded format. The image store holds raw and qcow2
images only, so anything else (vmdk, vdi, a ploop disk's own format) is
refused before anything is copied.

The copy is consistent as upstream's cold snapshot is: an active guest is
stopped with libvirt's managed save for the copy (pausing is not enough:
QEMU keeps its write lock on the disks, and qemu-img then refuses to open
them) and started again after it, paused if it was, whatever happened.
A live block copy is not used (libvirt's test driver has no block jobs).
The copy is written to a private part file in ``[libvirt] snapshots_directory``
(made through ``nova.virt.staging``: that directory is under
instances_path by default) and handed to the image service's
``import_file``; the part is removed in every case, and the parts that
snapshots killed mid-copy left there (their maker's flock gone) are
removed by the next snapshot.
"""

import contextlib

import libvirt
from oslo_log import log as logging

import nova.conf
from nova import exception
from nova.virt import images
from nova.virt import qemu_img
from nova.virt import staging

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

#: The part file's target name inside snapshots_directory.
_PART_TARGET = 'snapshot'


def image_format(record):
    """The disk_format a snapshot of the disk ``record`` describes is
    declared as (``snapshot_image_format``, else the recorded format).

    :raises: InvalidInput naming the format if the image store cannot
        hold it.
    """
    fmt = CONF.libvirt.snapshot_image_format or record.format
    # ploop images are fetched (converted to raw), never snapshotted to.
    if fmt not in images.DISK_FORMATS or fmt in ('iso', 'ploop'):
        raise exception.InvalidInput(
            reason='a snapshot of disk %s (%s) would be a %s image, which '
                   'snapshots are not made in; set [libvirt] '
                   'snapshot_image_format to raw or qcow2' % (
                       record.disk_name, record.format, fmt))
    return fmt


@contextlib.contextmanager
def stopped(instance, dom):
    """Stop a running or paused guest for the block (libvirt's managed
    save: its memory is kept and QEMU exits, releasing its lock on the
    disks); start it again after, in any case, paused if it was.

    A guest that is not active (no domain, shut off) is left as it is.
    """
    was_paused = None
    if dom is not None and dom.isActive():
        state, _reason = dom.state()
        was_paused = state == libvirt.VIR_DOMAIN_PAUSED
        dom.managedSave(0)
        LOG.debug('Saved instance %(uuid)s for a snapshot',
                  {'uuid': instance.uuid})
    try:
        yield
    finally:
        if was_paused is not None:
            try:
                # QEMU restores a saved guest in the state it was saved in;
                # a driver that restores it running (the test driver) is
                # asked to pause it again.
                dom.create()
                if (was_paused and dom.state()[0] ==
                        libvirt.VIR_DOMAIN_RUNNING):
                    dom.suspend()
            except libvirt.libvirtError as e:
                LOG.error('Restoring instance %(uuid)s after a snapshot '
                          'failed: %(error)s',
                          {'uuid': instance.uuid, 'error': e})
                raise


def take(context, image_api, instance, backend, dom, name, progress=None):
    """Copy the disk of ``backend`` into a new image named ``name``.

    :param image_api: a nova.image.API (its store must ``import_file``).
    :param instance: the Instance (uuid, image_ref, root_gb).
    :param backend: the imagebackend.Image of the root disk, built from
        its record.
    :param dom: the instance's libvirt domain, or None.
    :param progress: optional callable(message) told of each step.
    :returns: the new image's metadata (as ``image_api.get`` returns it).
    :raises: SnapshotFailed naming the instance and the snapshot (the
        cause chained); nothing is added to the image store and no file
        is left behind.
    """
    record = backend.record
    try:
        fmt = image_format(record)
        # A qcow2 overlay names its base in its header: the source is
        # proven to be the one recorded before qemu-img follows it, and
        # the copy reads the file that was checked.
        with backend.snapshot_source() as (source, source_format), \
                staging.open_root(CONF.libvirt.snapshots_directory,
                                  create=True) as directory:
            # A snapshot killed mid-copy leaves its part: sweep those of
            # dead makers (a live one's flock keeps its part).
            staging.remove_stale_parts(directory, _PART_TARGET)
            part = staging.Part(directory, _PART_TARGET)
            try:
                with stopped(instance, dom):
                    if progress:
                        progress('copying disk %s (%s) to %s' % (
                            record.disk_name, record.format, fmt))
                    # Through the page cache: the import reads the copy
                    # at once (its hash), and the guest waits only for
                    # the copy, not for its write-back.
                    qemu_img.convert(source, source_format, part.path,
                                     images.DISK_FORMATS[fmt],
                                     direct_write=False)
                if progress:
                    progress('adding image %s' % name)
                meta = image_api.import_file(
                    context, part.path, fmt, name=name,
                    min_disk=instance.root_gb or 0,
                    properties={'image_type': 'snapshot',
                                'instance_uuid': instance.uuid,
                                'base_image_ref': instance.image_ref or ''})
            finally:
                part.discard()
    except exception.SnapshotFailed:
        raise
    except (exception.NovaException, OSError, libvirt.libvirtError) as e:
        # Raised, not logged: SnapshotFailed carries the whole reason to
        # whoever reports it (the CLI's one line).
        raise exception.SnapshotFailed(
            name=name, instance_uuid=instance.uuid, reason=str(e)) from e
    LOG.info('Snapshot %(name)s of instance %(uuid)s is image %(image)s '
             '(%(fmt)s)',
             {'name': name, 'uuid': instance.uuid, 'image': meta['id'],
              'fmt': fmt})
    return meta

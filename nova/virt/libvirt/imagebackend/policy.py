"""The layout of new local disks: the one reader of layout configuration.

Given an instance, the image metadata and its new local block device
mappings, decide each disk's ``LibvirtDiskMetadata`` (backend, format,
size, location, source) from the node's configuration *as it is now*. The
record is then persisted by the DiskManager and obeyed for the disk's whole
life: nothing else reads ``[libvirt] images_type``, ``[DEFAULT]
use_cow_images``, ``force_raw_images``, ``[libvirt] images_volume_group``,
``sparse_logical_volumes`` or ``images_rbd_pool``, so changing them later
changes new disks only. What each backend makes of a base (its formats,
whether it is an overlay, where its volumes live) is its spec in
``specs.py``.

The decisions, by backend (``images_type``; ``default`` is qcow2 when
``use_cow_images`` is true, else flat; ``raw`` is flat):

=======  =======================================  =====================
backend  root disk (from the image)               ephemeral / swap
=======  =======================================  =====================
flat     raw; qcow2 if the image is qcow2 and     raw
         force_raw_images is off
qcow2    qcow2 over a base that is qcow2 if the   qcow2 over a raw
         image is qcow2 and force_raw_images is   template
         off, else raw
lvm      raw, in images_volume_group              raw
rbd      raw, in images_rbd_pool                  raw
ploop    ploop                                    ploop
=======  =======================================  =====================

Sizes come from the flavor: ``root_gb`` (0 means the image's virtual size,
which must then be known), ``ephemeral_gb`` (or the mapping's
``volume_size`` in GB), ``swap`` (or the swap mapping's ``volume_size``, in
MiB as upstream). Disk names are upstream's: ``disk``, ``disk.local`` for
the first ephemeral and ``disk.eph<N>`` for the others, ``disk.swap``.
Ephemeral and swap disks come from shared templates named
``ephemeral_<GB>_<fs>`` and ``swap_<MB>``. An ephemeral disk's filesystem
is upstream's choice (``ephemeral_fs.choose``: a ``[DEFAULT] virt_mkfs``
command for the instance's os_type, else the mapping's guest_format, else
``default_ephemeral_format``, else by os_type, vfat when unset); a disk made
by a ``virt_mkfs`` command comes from ``ephemeral_<GB>_<hash>``, the first
seven hex digits of the command's MD5, as upstream names it.

With ``[ephemeral_storage_encryption] enabled``, every new disk must be an
LVM volume under a dm-crypt mapping: the record says so (``encryption``,
its cipher and key size), and planning is refused, before anything is
recorded, on another backend or on a host without dm-crypt.
"""

import dataclasses
import hashlib
import re
import string

from oslo_log import log as logging
from oslo_utils import units

import nova.conf
from nova import exception
from nova.objects import fields
from nova.objects import libvirt_disk
from nova import utils
from nova.virt.libvirt import disk_funcs
from nova.virt.libvirt import ephemeral_crypt
from nova.virt.libvirt import ephemeral_fs
from nova.virt.libvirt.imagebackend import specs

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

ROOT_DISK = 'disk'
FIRST_EPHEMERAL_DISK = 'disk.local'
EPHEMERAL_DISK_FMT = 'disk.eph%d'
SWAP_DISK = 'disk.swap'

#: The label of every ephemeral filesystem made from a template.
EPHEMERAL_LABEL = 'ephemeral0'

#: How this host is asked whether it has dm-crypt: callable() ->
#: (available, reason). Tests that show the encrypted record on a host
#: without dm-crypt stand in for it (the kernel cannot be given it here).
DMCRYPT_PROBE = ephemeral_crypt.probe_dmcrypt

# Roles of a local mapping, in the order their disks are attached.
ROOT = 'root'
EPHEMERAL = 'ephemeral'
SWAP = 'swap'
ROLES = (ROOT, EPHEMERAL, SWAP)

_EPHEMERAL_TEMPLATE = re.compile(r'^ephemeral_([1-9][0-9]*)_([a-z0-9]+)$')
# Upstream's name for a template made by a virt_mkfs command: the first
# seven hex digits of the command's MD5. Never a filesystem name: those
# all hold a letter past 'f'.
_MKFS_DIGEST = re.compile(r'^[0-9a-f]{7}$')
_SWAP_TEMPLATE = re.compile(r'^swap_([1-9][0-9]*)$')

# Characters kept as they are in LV and RBD image names; anything else is
# written as '+xx' (hex), so that distinct disk names stay distinct.
_VOLUME_NAME_SAFE = frozenset(string.ascii_letters + string.digits + '_.-')


@dataclasses.dataclass(frozen=True)
class NodeLayout:
    """The node's layout settings, read once per planning call.

    ``backend`` is the resolved backend name (flat, qcow2, lvm, rbd,
    ploop); ``images_type`` is the option as written, for messages.
    """

    images_type: str
    backend: str
    force_raw_images: bool
    volume_group: str = None
    rbd_pool: str = None
    preallocate: bool = False
    sparse_logical_volumes: bool = False
    encryption: ephemeral_crypt.EncryptionSpec = None


@dataclasses.dataclass(frozen=True)
class Template:
    """A parsed template name: ``kind`` is ephemeral or swap.

    ``size`` is in the name's unit (GB for ephemeral, MB for swap); an
    ephemeral template has either ``fs_type`` or ``mkfs_digest`` (made by
    the ``virt_mkfs`` command with that digest).
    """

    kind: str
    size: int
    fs_type: str = None
    mkfs_digest: str = None


def node_layout():
    """Read the layout configuration of this node.

    :returns: a NodeLayout.
    :raises: EphemeralEncryptionInvalid for encryption settings dm-crypt
        would not take.
    """
    images_type = CONF.libvirt.images_type
    if images_type == 'default':
        backend = (fields.DiskBackend.QCOW2 if CONF.use_cow_images
                   else fields.DiskBackend.FLAT)
    elif images_type == 'raw':
        backend = fields.DiskBackend.FLAT
    else:
        backend = images_type
    return NodeLayout(images_type=images_type, backend=backend,
                      force_raw_images=CONF.force_raw_images,
                      volume_group=CONF.libvirt.images_volume_group,
                      rbd_pool=CONF.libvirt.images_rbd_pool,
                      preallocate=CONF.preallocate_images == 'space',
                      sparse_logical_volumes=(
                          CONF.libvirt.sparse_logical_volumes),
                      encryption=ephemeral_crypt.spec_from_conf(CONF))


def disk_role(bdm):
    """Return the role of a local mapping: ROOT, EPHEMERAL or SWAP.

    :param bdm: a BlockDeviceMapping (source_type, destination_type,
        guest_format, boot_index).
    :returns: the role, or None for a mapping that is not a local disk
        (a volume).
    :raises: InvalidInput for a local mapping this driver cannot make (a
        local disk from a snapshot or a volume; an image that is not the
        boot disk).
    """
    if bdm.destination_type != fields.BlockDeviceDestinationType.LOCAL:
        return None
    if bdm.source_type == fields.BlockDeviceSourceType.BLANK:
        return SWAP if bdm.guest_format == 'swap' else EPHEMERAL
    if (bdm.source_type == fields.BlockDeviceSourceType.IMAGE and
            bdm.boot_index == 0):
        return ROOT
    raise exception.InvalidInput(
        reason='a local disk from source %s (boot_index %s) is not '
               'supported' % (bdm.source_type, bdm.boot_index))


def ephemeral_template_name(size_gb, fs_type):
    """``ephemeral_<GB>_<fs>``: the template an ephemeral disk comes from."""
    return 'ephemeral_%d_%s' % (size_gb, fs_type)


def mkfs_digest(mkfs_command):
    """Upstream's short name of a virt_mkfs command: 7 hex digits of MD5.

    A name, not a safeguard: the command is found again by comparing the
    digests of the configured commands (``template_func``).
    """
    return hashlib.md5(mkfs_command.encode('utf-8'),
                       usedforsecurity=False).hexdigest()[:7]


def _configured_mkfs_commands():
    return ephemeral_fs.parse_mkfs_commands(CONF.virt_mkfs).values()


def template_func(template, label=EPHEMERAL_LABEL):
    """The ``func(target, size)`` that makes a template's content.

    :param template: a Template from ``parse_template_name``.
    :param label: the filesystem label of an ephemeral template.
    :returns: disk_funcs' ``make_swap()``, ``make_ephemeral(fs_type)`` or
        ``make_ephemeral_by_command(command)``. The command of a
        ``mkfs_digest`` is the configured ``[DEFAULT] virt_mkfs`` command
        with that digest; when none has it any more, the func refuses to
        run (MkfsCommandNotConfigured), so a template already cached is
        still used and a missing one is never made with another command.
    """
    if template.kind == SWAP:
        return disk_funcs.make_swap()
    if template.fs_type:
        return disk_funcs.make_ephemeral(template.fs_type, label)
    commands = {command for command in _configured_mkfs_commands()
                if mkfs_digest(command) == template.mkfs_digest}
    if len(commands) == 1:
        return disk_funcs.make_ephemeral_by_command(commands.pop(), label)
    reason = ('no configured [DEFAULT] virt_mkfs command has digest %s' %
              template.mkfs_digest if not commands else
              '%d configured virt_mkfs commands share digest %s' % (
                  len(commands), template.mkfs_digest))

    def refuse(target, size):
        raise ephemeral_fs.MkfsCommandNotConfigured(
            digest=template.mkfs_digest, reason=reason)

    return refuse


def swap_template_name(size_mb):
    """``swap_<MB>``: the template a swap disk comes from."""
    return 'swap_%d' % size_mb


def parse_template_name(name):
    """Return the Template a recorded ``cache_name`` stands for.

    :raises: DiskMetadataInvalid for a name this module never makes.
    """
    match = _EPHEMERAL_TEMPLATE.match(name or '')
    if match and match.group(2) in disk_funcs.SUPPORTED_FILESYSTEMS:
        return Template(EPHEMERAL, int(match.group(1)), match.group(2))
    if match and _MKFS_DIGEST.match(match.group(2)):
        return Template(EPHEMERAL, int(match.group(1)),
                        mkfs_digest=match.group(2))
    match = _SWAP_TEMPLATE.match(name or '')
    if match:
        return Template(SWAP, int(match.group(1)))
    raise exception.DiskMetadataInvalid(
        reason='unknown template name %r' % (name,))


def volume_name(instance_uuid, disk_name):
    """``<uuid>_<disk_name>``, escaped for LVM and RBD.

    Characters outside ``[A-Za-z0-9_.-]`` become ``+xx`` (their UTF-8 bytes
    in hex): the result is a valid LV and RBD image name, and two disk names
    never share one.
    """
    utils.validate_uuid(instance_uuid)
    escaped = ''.join(
        ch if ch in _VOLUME_NAME_SAFE else
        ''.join('+%02x' % b for b in ch.encode('utf-8'))
        for ch in disk_name)
    return '%s_%s' % (instance_uuid, escaped)


class _Planner:
    """Plans the disks of one instance under one NodeLayout."""

    def __init__(self, instance, image_meta, layout):
        self.instance = instance
        self.uuid = utils.validate_uuid(instance.uuid)
        self.image_meta = image_meta
        self.layout = layout
        self._host_can_encrypt = None

    def fail(self, disk_name, reason):
        return exception.DiskPlanningFailed(
            instance_uuid=self.uuid, disk_name=disk_name, reason=reason)

    def record(self, disk_name, fmt, size, backing_format=None, **source):
        """A record on the node's backend, with the location it needs."""
        layout = self.layout
        spec = specs.SPECS[layout.backend]
        location = {}
        if spec.container:
            field, option = spec.container
            container = getattr(layout, field)
            if not container:
                raise exception.DiskLayoutConfigMissing(
                    instance_uuid=self.uuid, disk_name=disk_name,
                    option='images_type', value=layout.images_type,
                    needed=option)
            location = {field: container,
                        'volume_name': volume_name(self.uuid, disk_name)}
        if (layout.backend == fields.DiskBackend.LVM and
                layout.sparse_logical_volumes):
            # Sparse volumes (lvcreate --virtualsize) are device-mapper
            # snapshot/thin targets: this driver makes only plain,
            # fully allocated volumes, so a sparse one is never promised.
            raise self.fail(disk_name, '[libvirt] sparse_logical_volumes = '
                            'True needs sparse (device-mapper thin) logical '
                            'volumes, which this driver does not make; set '
                            'it to False')
        if size <= 0:
            raise self.fail(disk_name, 'its size would be %d bytes' % size)
        record = libvirt_disk.LibvirtDiskMetadata(
            backend=layout.backend, format=fmt, size=size,
            disk_name=disk_name, backing_format=backing_format,
            preallocated=layout.preallocate and spec.preallocatable,
            **self.encryption(disk_name), **location, **source)
        try:
            record.validate()
        except exception.DiskMetadataInvalid as e:
            raise self.fail(disk_name, str(e))
        return record

    def encryption(self, disk_name):
        """The record's encryption fields for a new disk ({} if none).

        As upstream: encryption is for LVM volumes only, and every LVM disk
        of the instance is encrypted. Refused before anything is recorded
        where it cannot be done.

        :raises: DiskPlanningFailed on another backend;
            EphemeralEncryptionUnavailable on a host without dm-crypt.
        """
        spec = self.layout.encryption
        if spec is None:
            return {}
        if self.layout.backend != fields.DiskBackend.LVM:
            raise self.fail(disk_name, '[ephemeral_storage_encryption] '
                            'enabled needs images_type = lvm, not %s' %
                            self.layout.images_type)
        if self._host_can_encrypt is None:
            # One probe per planning call, however many disks.
            self._host_can_encrypt = DMCRYPT_PROBE()
        ephemeral_crypt.check_host_can_encrypt(
            self.uuid, disk_name, probe=lambda: self._host_can_encrypt)
        return dict(encryption=libvirt_disk.ENCRYPTION_DMCRYPT_PLAIN,
                    encryption_cipher=spec.cipher,
                    encryption_key_size=spec.key_size)

    def template_record(self, disk_name, size, cache_name):
        """Ephemeral and swap: templates are always made raw."""
        return self.from_base(disk_name, size, fields.DiskFormat.RAW,
                              cache_name=cache_name)

    def from_base(self, disk_name, size, base_format, **source):
        """A record of a disk built from a cached base kept in
        ``base_format``: its format and backing format are the spec's."""
        spec = specs.SPECS[self.layout.backend]
        return self.record(disk_name, spec.new_disk_format(base_format),
                           size,
                           backing_format=spec.new_backing_format(
                               base_format),
                           **source)

    def root(self, bdm):
        disk_name = ROOT_DISK
        meta = self.image_meta
        if not meta:
            raise self.fail(disk_name, 'no image metadata was given')
        image_id = bdm.image_id or self.instance.image_ref
        if meta.get('id') != image_id:
            raise self.fail(disk_name, 'the mapping names image %s but the '
                            'metadata is of image %s' % (image_id,
                                                         meta.get('id')))
        virtual_size = meta.get('virtual_size')
        root_gb = self.instance.root_gb or 0
        if root_gb:
            size = root_gb * units.Gi
            if virtual_size and virtual_size > size:
                raise self.fail(disk_name, 'image %s has virtual size %d '
                                'bytes, larger than the flavor\'s root disk '
                                'of %d bytes' % (image_id, virtual_size,
                                                 size))
            if (meta.get('min_disk') or 0) > root_gb:
                raise self.fail(disk_name, 'image %s needs a root disk of '
                                'at least %s GB, the flavor has %d GB' % (
                                    image_id, meta['min_disk'], root_gb))
        elif virtual_size:
            # root_gb 0: the disk is exactly as large as the image.
            size = virtual_size
        else:
            raise self.fail(disk_name, 'the flavor has root_gb 0 and the '
                            'virtual size of image %s is unknown' % image_id)

        # What the cached base (qcow2) or the disk itself (flat) is kept as.
        image_format = meta.get('disk_format')
        keep_qcow2 = (image_format == fields.DiskFormat.QCOW2 and
                      not self.layout.force_raw_images)
        image_kept_as = (fields.DiskFormat.QCOW2 if keep_qcow2
                         else fields.DiskFormat.RAW)
        return self.from_base(disk_name, size, image_kept_as,
                              image_id=image_id)

    def ephemeral(self, bdm, disk_name):
        size_gb = bdm.volume_size or self.instance.ephemeral_gb or 0
        if size_gb <= 0:
            raise self.fail(disk_name, 'no ephemeral size: the mapping has '
                            'no volume_size and the flavor ephemeral_gb 0')
        # Our minimal Instance may have no os_type: unset, as upstream's
        # default (vfat).
        try:
            choice = ephemeral_fs.choose(
                getattr(self.instance, 'os_type', None),
                CONF.default_ephemeral_format, CONF.virt_mkfs,
                guest_format=bdm.guest_format)
        except exception.InvalidInput as e:
            raise self.fail(disk_name, e.kwargs['reason'])
        if choice.mkfs_command:
            # Checked now: a command that cannot run is never recorded.
            try:
                disk_funcs.make_ephemeral_by_command(choice.mkfs_command)
            except exception.InvalidInput as e:
                raise self.fail(disk_name, e.kwargs['reason'])
            suffix = mkfs_digest(choice.mkfs_command)
        elif choice.fs_type in disk_funcs.SUPPORTED_FILESYSTEMS:
            suffix = choice.fs_type
        else:
            raise self.fail(disk_name, 'filesystem %r is not one of %s' % (
                choice.fs_type, ', '.join(disk_funcs.SUPPORTED_FILESYSTEMS)))
        return self.template_record(
            disk_name, size_gb * units.Gi,
            ephemeral_template_name(size_gb, suffix))

    def swap(self, bdm):
        size_mb = bdm.volume_size or self.instance.flavor.swap or 0
        if size_mb <= 0:
            raise self.fail(SWAP_DISK, 'no swap size: the mapping has no '
                            'volume_size and the flavor swap 0')
        return self.template_record(SWAP_DISK, size_mb * units.Mi,
                                    swap_template_name(size_mb))


def _ephemeral_names(taken):
    """Yield free ephemeral disk names in upstream's order."""
    if FIRST_EPHEMERAL_DISK not in taken:
        yield FIRST_EPHEMERAL_DISK
    index = 1
    while True:
        name = EPHEMERAL_DISK_FMT % index
        if name not in taken:
            yield name
        index += 1


def _mapping_label(bdm):
    """Name a mapping that has no disk name yet, for messages."""
    for attr in ('uuid', 'id'):
        if bdm.obj_attr_is_set(attr) and getattr(bdm, attr) is not None:
            return '(mapping %s)' % getattr(bdm, attr)
    return '(unsaved mapping)'


def plan_disks(instance, image_meta, bdms, taken_names=()):
    """Decide the layout of each new local disk of an instance.

    :param instance: an Instance (uuid, image_ref, root_gb, ephemeral_gb,
        swap in MiB; os_type if it has one).
    :param image_meta: the root image's metadata from the image service
        ({'id', 'disk_format', 'virtual_size', 'min_disk', ...}); may be
        None if no mapping is the root disk.
    :param bdms: the instance's local mappings that have no record yet, in
        the instance's mapping order (which decides ephemeral names).
    :param taken_names: disk names already recorded for this instance.
    :returns: [(bdm, LibvirtDiskMetadata)], one per mapping, in order.
    :raises: DiskPlanningFailed (DiskLayoutConfigMissing when the node's
        images_type needs a setting that is not there) naming the disk;
        EphemeralEncryptionUnavailable when encryption is on and this host
        has no dm-crypt; EphemeralEncryptionInvalid for encryption
        settings dm-crypt would not take. Nothing is recorded by this
        function.
    """
    planner = _Planner(instance, image_meta, node_layout())
    taken = set(taken_names)
    ephemeral_names = _ephemeral_names(taken)
    planned = []
    for bdm in bdms:
        try:
            role = disk_role(bdm)
        except exception.InvalidInput as e:
            raise planner.fail(_mapping_label(bdm), e.kwargs['reason'])
        if role is None:
            raise planner.fail(_mapping_label(bdm),
                               'it is a volume, not a local disk')
        if role == ROOT:
            record = planner.root(bdm)
        elif role == SWAP:
            record = planner.swap(bdm)
        else:
            record = planner.ephemeral(bdm, next(ephemeral_names))
        if record.disk_name in taken:
            raise planner.fail(record.disk_name, 'the instance already has '
                               'a disk of that name')
        taken.add(record.disk_name)
        LOG.debug('Planned disk %(disk)s of instance %(uuid)s: backend '
                  '%(backend)s, format %(format)s, %(size)d bytes, from '
                  '%(source)s',
                  {'disk': record.disk_name, 'uuid': planner.uuid,
                   'backend': record.backend, 'format': record.format,
                   'size': record.size, 'source': record.source})
        planned.append((bdm, record))
    return planned


# --- config drive and rescue disks -----------------------------------------
# Disks beside the instance's mappings, each with a record of its own
# (``source_kind``): the config drive imported from a local file, and the
# rescue disk made from the rescue image.

CONFIG_DISK = 'disk.config'
RESCUE_DISK = 'disk.rescue'

#: A config drive's record size is its file's size rounded up to this
#: (a whole number of LVM extents of the default 4 MiB).
_CONFIG_DRIVE_ALIGN = 4 * units.Mi


class _RescueMapping:
    """What ``_Planner.root`` reads of a mapping, for the rescue image."""

    boot_index = 0

    def __init__(self, image_id):
        self.image_id = image_id


def plan_config_drive(instance, file_size):
    """The record of an instance's config drive, made from a local file.

    As upstream, the drive is a raw file disk (``flat``) whatever the
    node's images_type, except on a node whose images_type is ``lvm``,
    where it is a volume of ``images_volume_group`` like every other disk
    of its instances (no file under instances_path).

    :param file_size: bytes of the file it is imported from.
    :returns: LibvirtDiskMetadata (source_kind ``file``).
    :raises: DiskPlanningFailed.
    """
    layout = node_layout()
    backend = (fields.DiskBackend.LVM
               if layout.backend == fields.DiskBackend.LVM
               else fields.DiskBackend.FLAT)
    layout = dataclasses.replace(layout, backend=backend, preallocate=False)
    size = -(-int(file_size) // _CONFIG_DRIVE_ALIGN) * _CONFIG_DRIVE_ALIGN
    return _Planner(instance, None, layout).record(
        CONFIG_DISK, fields.DiskFormat.RAW, size,
        source_kind=fields.DiskSourceKind.FILE)


def plan_rescue_disk(instance, image_meta):
    """The record of a rescue disk from the image ``image_meta``.

    Laid out as a root disk from that image would be on this node now
    (backend, format, the flavor's root size), under the name
    ``disk.rescue``.

    :returns: LibvirtDiskMetadata (source_kind ``rescue``).
    :raises: DiskPlanningFailed naming the rescue disk.
    """
    planner = _Planner(instance, image_meta, node_layout())
    try:
        record = planner.root(_RescueMapping(image_meta.get('id')))
    except exception.DiskPlanningFailed as e:
        raise planner.fail(RESCUE_DISK, str(e)) from e
    record.disk_name = RESCUE_DISK
    record.source_kind = fields.DiskSourceKind.RESCUE
    if record.volume_name:
        record.volume_name = volume_name(planner.uuid, RESCUE_DISK)
    record.validate()
    return record

"""Layouts of local disks made before records existed: the one inference.

Disks that upstream Nova (34.0.0 and older) made have no
``LibvirtDiskMetadata``. This module, and no other, works out the record
such a disk would have had, the way that code laid it out, and proves it
against what is on storage before anyone records it. It never writes: the
DiskManager saves what it returns.

What each fact comes from:

* **backend**: the node's ``images_type`` / ``use_cow_images`` as they are
  now (``policy.node_layout``: policy.py stays the one reader of layout
  configuration). Volume backends name the disk ``<uuid>_<disk name>``
  in ``images_volume_group`` or ``images_rbd_pool``, as Nova 34 did.
* **disk name**: the mapping's role: ``disk`` (root), ``disk.swap``, and
  for the N-th ephemeral mapping Nova 34's ``disk.eph<N>`` (or, for the
  first, the older ``disk.local``). A name the instance already has a
  record for is not a candidate; two candidates that both exist are
  ambiguous.
* **format, Flat**: the instance's ``disk.info`` (upstream's record of the
  format it once probed), read as data, never executed. Without an entry
  the guest's bytes do not decide: no qcow2 magic means raw (qemu would
  read anything else as raw too), a qcow2 magic is ambiguous and left for
  the operator to state (``formats``).
* **format, Qcow2**: always qcow2 (Nova's own overlay). Its backing file
  must be a file upstream made in this host's image cache: ``sha1(image
  id)`` for the instance's image (raw, or the qcow2 image itself with
  force_raw_images off), ``ephemeral_<GB>_<7 hex>`` or ``swap_<MB>`` for a
  template, in the format the overlay's header names. Once the overlay is
  proved, the cache adopts that file (``ImageCache.adopt``: inspected by
  descriptor for that format, a qcow2 base with no backing file and no
  data-file), and the record names it (``base_name``).
* **size**: the flavor (``root_gb``, ``ephemeral_gb`` or the mapping's
  ``volume_size``, swap in MiB); a root disk of ``root_gb`` 0 is the size
  on storage.

Every candidate is checked before it is returned: the disk exists, its
virtual size (``qemu-img info -f <inferred format>``; the file's length for
a raw file) equals the inferred size, and for qcow2 the header names
exactly the inferred backing file and format and no data-file. Whatever
disagrees comes back unrecorded with the reason, never guessed.
"""

import dataclasses
import errno
import os
import re
import stat

from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import units

import nova.conf
from nova import exception
from nova.objects import fields
from nova.objects import libvirt_disk
from nova import utils
from nova.virt.libvirt.imagebackend import backends
from nova.virt.libvirt.imagebackend import cache as image_cache
from nova.virt.libvirt.imagebackend import policy
from nova.virt import staging

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: Upstream's per-instance file: one JSON line {disk path: driver format}.
DISK_INFO = 'disk.info'
#: A real disk.info names a handful of disks; anything larger is not one.
DISK_INFO_MAX_BYTES = 64 * 1024

QCOW2_MAGIC = b'QFI\xfb'

#: Nova 34's name of the N-th ephemeral mapping's disk.
UPSTREAM_EPHEMERAL_FMT = 'disk.eph%d'

# Formats a disk.info entry (or an operator) may state for a Flat disk.
_FLAT_FORMATS = (fields.DiskFormat.RAW, fields.DiskFormat.QCOW2)

# Upstream's template names: ephemeral_<GB>_<7 hex of an md5 of the
# filesystem or mkfs command>.
_UPSTREAM_EPHEMERAL_TEMPLATE = re.compile(
    r'^ephemeral_([1-9][0-9]*)_([0-9a-f]{7})$')


@dataclasses.dataclass
class Inference:
    """What legacy inference made of one unrecorded local mapping.

    ``record`` is the proven LibvirtDiskMetadata, or None with ``reason``
    saying why not; ``ambiguous`` is true when only the operator can decide
    (a Flat disk's format). ``disk_name`` is the disk's name, or a label of
    the mapping when no name could be settled.
    """

    bdm: object
    disk_name: str
    record: object = None
    reason: str = None
    ambiguous: bool = False

    @property
    def recorded(self):
        return self.record is not None

    def error(self, instance_uuid):
        """The typed error for a refused inference, naming the disk and
        the mapping's device."""
        cls = (exception.DiskFormatAmbiguous if self.ambiguous
               else exception.DiskLayoutNotInferred)
        name = self.disk_name
        device = mapping_label(self.bdm)
        if device != name and not device.startswith('of mapping'):
            name = '%s (%s)' % (name, device)
        return cls(instance_uuid=instance_uuid, disk_name=name,
                   reason=self.reason)


class _Refused(Exception):
    def __init__(self, reason, ambiguous=False):
        super().__init__(reason)
        self.reason = reason
        self.ambiguous = ambiguous


def swap_mb(instance, bdm):
    """The swap size in MiB of a swap mapping (0: unknown).

    The mapping's ``volume_size``, else the flavor's ``swap``, as Nova 34
    reads it.
    """
    return bdm.volume_size or instance.flavor.swap or 0


def mapping_label(bdm):
    """Name a mapping whose disk name is not settled, for messages."""
    if bdm.obj_attr_is_set('device_name') and bdm.device_name:
        return bdm.device_name
    return 'of mapping %s' % (bdm.id if bdm.obj_attr_is_set('id')
                              else '(unsaved)')


def infer_disks(instance, bdms, formats=None, cache=None, adopt=True):
    """Infer and prove the record of every unrecorded local mapping.

    :param instance: the Instance (uuid, image_ref, root_gb, ephemeral_gb,
        swap).
    :param bdms: ALL the instance's mappings, in mapping order (the order
        names ephemerals; recorded ones keep their names).
    :param formats: {disk name: 'raw' | 'qcow2'} stated by the operator
        for Flat disks whose format is ambiguous.
    :param cache: the ImageCache whose entries Qcow2 disks sit on (default:
        the process-wide one).
    :param adopt: have the cache adopt the upstream file under each proved
        Qcow2 overlay (its sidecar is written); False only checks it (to
        show what would be recorded).
    :returns: [Inference], one per local mapping without a record, in
        mapping order. No record is written.
    :raises: DiskMetadataInvalid for a record that cannot be loaded (that
        is not a disk without a record: it is refused as it is).
    """
    uuid = utils.validate_uuid(instance.uuid)
    formats = dict(formats or {})
    for name, fmt in formats.items():
        if fmt not in _FLAT_FORMATS:
            raise exception.InvalidInput(
                reason='format %r stated for disk %s of instance %s is not '
                       'one of %s' % (fmt, name, uuid,
                                      ', '.join(_FLAT_FORMATS)))
    inferrer = _Inferrer(instance, uuid, policy.node_layout(), formats,
                         cache, adopt=adopt)
    taken, unrecorded = _unrecorded(bdms)
    results = []
    for bdm, role, index, why in unrecorded:
        if role is None:
            results.append(Inference(bdm, mapping_label(bdm), reason=why))
        else:
            results.append(inferrer.infer(bdm, role, index, taken))
    return results


def _unrecorded(bdms):
    """The disk names recorded for an instance, and its unrecorded local
    mappings with their role and ephemeral index.

    :param bdms: all the instance's mappings, in mapping order: the N-th
        ephemeral mapping (recorded or not) is ephemeral N.
    :returns: ({recorded disk name}, [(bdm, role or None, ephemeral index
        or None, why the role is unknown or None)]).
    """
    local = [bdm for bdm in bdms if bdm.is_local]
    taken = set()
    for bdm in local:
        record = bdm.get_disk_metadata()
        if record is not None:
            taken.add(record.disk_name)
    unrecorded = []
    eph_index = 0
    for bdm in local:
        try:
            role, why = policy.disk_role(bdm), None
        except exception.InvalidInput as e:
            role, why = None, e.kwargs['reason']
        index = None
        if role == policy.EPHEMERAL:
            index, eph_index = eph_index, eph_index + 1
        if bdm.driver_info is None:
            unrecorded.append((bdm, role, index, why))
    return taken, unrecorded


class _Inferrer:
    """Infers the disks of one instance under one NodeLayout."""

    def __init__(self, instance, uuid, layout, formats, cache, adopt=True):
        self.adopt = adopt
        self.instance = instance
        self.uuid = uuid
        self.layout = layout
        self.formats = formats
        self.cache = cache or image_cache.get_cache()
        self._disk_info = None

    # --- per mapping -------------------------------------------------------

    def infer(self, bdm, role, eph_index, taken):
        label = mapping_label(bdm)
        refused = None
        try:
            size, source = self._size_and_source(bdm, role)
            name = self._disk_name(role, eph_index, taken, size, source)
            label = name
            record = self._prove(bdm, role, name, size, source)
        except _Refused as e:
            refused = e
        if refused is not None:
            # Logged out of the except block: oslo.log would add the
            # exception's class (private here) to a warning logged in it.
            LOG.warning('Disk %(disk)s of instance %(uuid)s has no record '
                        'and none is inferred: %(reason)s',
                        {'disk': label, 'uuid': self.uuid,
                         'reason': refused.reason})
            return Inference(bdm, label, reason=refused.reason,
                             ambiguous=refused.ambiguous)
        taken.add(record.disk_name)
        LOG.debug('Inferred disk %(disk)s of instance %(uuid)s: backend '
                  '%(backend)s, format %(format)s, %(size)d bytes, from '
                  '%(source)s', {'disk': record.disk_name, 'uuid': self.uuid,
                                 'backend': record.backend,
                                 'format': record.format,
                                 'size': record.size,
                                 'source': record.source})
        return Inference(bdm, record.disk_name, record=record)

    def _size_and_source(self, bdm, role):
        """(bytes or None for "as on storage", source kwargs)."""
        instance = self.instance
        if role == policy.ROOT:
            image_id = bdm.image_id or instance.image_ref
            if not image_id:
                raise _Refused('the mapping and the instance name no image')
            root_gb = instance.root_gb or 0
            return (root_gb * units.Gi if root_gb else None,
                    {'image_id': image_id})
        if role == policy.SWAP:
            size_mb = swap_mb(instance, bdm)
            if size_mb <= 0:
                raise _Refused('no swap size: the mapping has no '
                               'volume_size and the flavor swap 0')
            return (size_mb * units.Mi,
                    {'cache_name': policy.swap_template_name(size_mb)})
        size_gb = bdm.volume_size or instance.ephemeral_gb or 0
        if size_gb <= 0:
            raise _Refused('no ephemeral size: the mapping has no '
                           'volume_size and the flavor ephemeral_gb 0')
        # The template's name is a hash of the filesystem upstream chose
        # from the guest's os_type: only a Qcow2 overlay's backing file
        # tells it (see _qcow2).
        return size_gb * units.Gi, {'ephemeral_gb': size_gb}

    def _candidates(self, role, eph_index):
        if role == policy.ROOT:
            return [policy.ROOT_DISK]
        if role == policy.SWAP:
            return [policy.SWAP_DISK]
        names = [UPSTREAM_EPHEMERAL_FMT % eph_index]
        if eph_index == 0:
            names.append(policy.FIRST_EPHEMERAL_DISK)
        return names

    def _disk_name(self, role, eph_index, taken, size, source):
        names = [n for n in self._candidates(role, eph_index)
                 if n not in taken]
        if not names:
            raise _Refused('every name it could have (%s) is recorded for '
                           'another disk' % ', '.join(
                               self._candidates(role, eph_index)))
        if len(names) == 1:
            # Its one possible name: whether the disk is there is part of
            # the proof that follows.
            return names[0]
        present = [n for n in names
                   if self._backend(self._probe_record(n)).exists()]
        if len(present) > 1:
            raise _Refused('disks %s both exist; which one is this '
                           'mapping\'s cannot be told' % ' and '.join(
                               present))
        if not present:
            raise _Refused('no disk %s on %s storage' % (
                ' or '.join(names), self.layout.backend))
        return present[0]

    # --- records -------------------------------------------------------------

    def _location(self, name):
        backend = self.layout.backend
        if backend == fields.DiskBackend.LVM:
            container = {'volume_group': self.layout.volume_group}
        elif backend == fields.DiskBackend.RBD:
            container = {'rbd_pool': self.layout.rbd_pool}
        else:
            return {}
        if not next(iter(container.values())):
            raise _Refused('images_type is %s but its %s is not set' % (
                self.layout.images_type, next(iter(container))))
        return dict(container, volume_name=policy.volume_name(self.uuid,
                                                              name))

    def _record(self, name, fmt, size, backing_format=None, **source):
        source.pop('ephemeral_gb', None)
        record = libvirt_disk.LibvirtDiskMetadata(
            backend=self.layout.backend, format=fmt, size=size,
            disk_name=name, backing_format=backing_format,
            preallocated=False, **self._location(name), **source)
        try:
            record.validate()
        except exception.DiskMetadataInvalid as e:
            raise _Refused(str(e))
        return record

    def _probe_record(self, name):
        """A record only good for asking the backend where the disk is."""
        backend = self.layout.backend
        fmt = {fields.DiskBackend.QCOW2: fields.DiskFormat.QCOW2,
               fields.DiskBackend.PLOOP: fields.DiskFormat.PLOOP}.get(
                   backend, fields.DiskFormat.RAW)
        return self._record(
            name, fmt, 1, backing_format=(
                fields.DiskFormat.RAW
                if backend == fields.DiskBackend.QCOW2 else None))

    def _backend(self, record):
        try:
            return backends.backend_for(self.instance, record,
                                        cache=self.cache)
        except exception.NovaException as e:
            raise _Refused(str(e))

    # --- proof ---------------------------------------------------------------

    def _prove(self, bdm, role, name, size, source):
        backend = self.layout.backend
        if backend == fields.DiskBackend.FLAT:
            return self._flat(name, size, source)
        if backend == fields.DiskBackend.QCOW2:
            return self._qcow2(role, name, size, source)
        if backend in (fields.DiskBackend.LVM, fields.DiskBackend.RBD):
            return self._volume(name, size, source)
        raise _Refused('Nova 34 disks on backend %s are not inferred here'
                       % backend)

    def _flat(self, name, size, source):
        if 'ephemeral_gb' in source:
            # A copy of a template keeps no trace of which one it was.
            source = {}
        probe = self._backend(self._record(name, fields.DiskFormat.RAW,
                                           size or 1, **source))
        fmt, why = self._flat_format(probe)
        if fmt is None:
            raise _Refused(why, ambiguous=True)
        if fmt == fields.DiskFormat.RAW:
            # Raw has no metadata to verify: its size is all there is.
            stored = self._stored_size(probe)
            record = (probe.record if size else self._record(
                name, fmt, stored, **source))
            self._check_size(record, stored)
            return record
        probe = self._backend(self._record(name, fmt, size or 1, **source))
        stored = self._stored_size(probe)
        record = self._record(name, fmt, size or stored, **source)
        self._check_size(record, stored)
        self._verify(record)
        return record

    def _flat_format(self, probe):
        """(format, None) or (None, why it is ambiguous)."""
        name = probe.disk_name
        stated = self.formats.get(name)
        entry = self._disk_info_entry(probe)
        if entry is not None:
            if entry not in _FLAT_FORMATS:
                raise _Refused('%s says its format is %r, which a Flat disk '
                               'here cannot be' % (DISK_INFO, entry))
            if stated and stated != entry:
                raise _Refused('the operator states %s but %s says %s' % (
                    stated, DISK_INFO, entry))
            return entry, None
        if stated:
            LOG.info('Disk %(disk)s of instance %(uuid)s is %(fmt)s as '
                     'the operator states', {'disk': name,
                                             'uuid': self.uuid,
                                             'fmt': stated})
            return stated, None
        if self._starts_with_qcow2_magic(probe.path):
            return None, (
                'it has no %s entry and its first bytes are a qcow2 magic, '
                'which a guest can write into a raw disk; state its format '
                '(raw or qcow2) if you know it' % DISK_INFO)
        return fields.DiskFormat.RAW, None

    def _qcow2(self, role, name, size, source):
        # The overlay's header is Nova's metadata, not guest data: read it
        # as qcow2 (pinned), which opens no backing file.
        probe = self._backend(self._record(
            name, fields.DiskFormat.QCOW2, size or 1,
            backing_format=fields.DiskFormat.RAW,
            **self._template_source(source, None)))
        info = self._inspect(probe)
        backing_file = info.get('backing_file')
        backing_format = info.get('backing_format')
        if not backing_file:
            raise _Refused('it is a qcow2 overlay with no backing file, '
                           'which Nova 34 did not make')
        if backing_format not in (fields.DiskFormat.RAW,
                                  fields.DiskFormat.QCOW2):
            raise _Refused('its header names backing format %r for %s' % (
                backing_format, backing_file))
        source = self._backing_source(role, source, backing_file,
                                      backing_format)
        record = self._record(name, fields.DiskFormat.QCOW2,
                              size or info.get('virtual_size') or 0,
                              backing_format=backing_format, **source)
        self._check_size(record, info.get('virtual_size'))
        self._verify(record)
        self._adopt_base(record)
        return record

    @staticmethod
    def _template_source(source, name):
        if 'ephemeral_gb' in source:
            return {'cache_name': name} if name else {}
        return source

    def _backing_source(self, role, source, backing_file, backing_format):
        """The record's source and base_name, from an overlay's backing
        file: a file upstream made in this host's image cache for exactly
        the disk's source."""
        base_dir, base_name = os.path.split(backing_file)
        if base_dir != self.cache.base_dir:
            raise _Refused('its backing file %s is not in this host\'s '
                           'image cache %s' % (backing_file,
                                               self.cache.base_dir))
        if role == policy.ROOT:
            image_id = source['image_id']
            if base_name != libvirt_disk.upstream_base_name(image_id):
                raise _Refused('its backing file %s is not the cache file '
                               'of image %s' % (backing_file, image_id))
            return dict(source, base_name=base_name)
        if backing_format != fields.DiskFormat.RAW:
            raise _Refused('its template %s is %s; templates are raw' % (
                base_name, backing_format))
        if role == policy.SWAP:
            if base_name != source['cache_name']:
                raise _Refused('its backing file %s is not template %s' % (
                    backing_file, source['cache_name']))
            return dict(source, base_name=base_name)
        match = _UPSTREAM_EPHEMERAL_TEMPLATE.match(base_name)
        if not match or int(match.group(1)) != source['ephemeral_gb']:
            raise _Refused('its backing file %s is not an ephemeral '
                           'template of %d GB' % (backing_file,
                                                  source['ephemeral_gb']))
        return {'cache_name': base_name, 'base_name': base_name}

    def _adopt_base(self, record):
        """Have the cache adopt the upstream file the proved overlay sits
        on (or, not ``adopt``, only check that it would)."""
        source = ({'image_id': record.image_id} if record.image_id
                  else {'template': record.cache_name})
        try:
            self.cache.adopt(record.base_name, record.backing_format,
                             source, check_only=not self.adopt)
        except FileNotFoundError:
            raise _Refused('its base %s is missing' %
                           self.cache.path_of(record.base_name))
        except exception.NovaException as e:
            raise _Refused('its base %s cannot be adopted: %s' % (
                record.base_name, e))

    def _volume(self, name, size, source):
        if 'ephemeral_gb' in source:
            source = {}
        record = self._record(name, fields.DiskFormat.RAW, size or 1,
                              **source)
        backend = self._backend(record)
        stored = self._stored_size(backend)
        if size is None:
            record = self._record(name, fields.DiskFormat.RAW, stored,
                                  **source)
        self._check_size(record, stored)
        return record

    # --- storage -------------------------------------------------------------

    def _inspect(self, backend):
        try:
            return backend.inspect()
        except exception.DiskNotFound:
            raise _Refused('the disk does not exist')
        except exception.NovaException as e:
            raise _Refused('it cannot be read as %s: %s' % (
                backend.record.format, e))

    def _stored_size(self, backend):
        """The disk's virtual size in its (inferred) format."""
        if (backend.spec.source_type == 'file' and
                backend.record.format == fields.DiskFormat.RAW):
            # A raw file's virtual size is its length: the same answer as
            # qemu-img info -f raw, without a process per disk.
            try:
                st = os.lstat(backend.path)
            except FileNotFoundError:
                raise _Refused('the disk does not exist')
            if not stat.S_ISREG(st.st_mode):
                raise _Refused('%s is not a regular file' % backend.path)
            return st.st_size
        return self._inspect(backend).get('virtual_size')

    def _check_size(self, record, stored):
        if stored != record.size:
            raise _Refused('its virtual size as %s is %s bytes, the flavor '
                           'says %d' % (record.format, stored, record.size))

    def _verify(self, record):
        backend = self._backend(record)
        try:
            backend.verify()
        except exception.DiskNotFound:
            raise _Refused('the disk does not exist')
        except exception.DiskLayoutMismatch as e:
            raise _Refused('it is not laid out as inferred: expected %s, '
                           'found %s' % (e.kwargs['expected'],
                                         e.kwargs['found']))

    @staticmethod
    def _starts_with_qcow2_magic(path):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC |
                         os.O_NONBLOCK)
        except FileNotFoundError:
            raise _Refused('the disk does not exist')
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise _Refused('%s is a symbolic link' % path)
            raise _Refused('%s cannot be opened: %s' % (path, e))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _Refused('%s is not a regular file' % path)
            return os.pread(fd, len(QCOW2_MAGIC), 0) == QCOW2_MAGIC
        finally:
            os.close(fd)

    def _disk_info_entry(self, probe):
        """The format disk.info gives disk ``name``, or None.

        :raises: _Refused if disk.info exists but is not upstream's
            one-line JSON object of path -> format.
        """
        if self._disk_info is None:
            self._disk_info = self._read_disk_info()
        # Keys are the paths upstream saw: match on the instance directory
        # and the disk name, so a moved instances_path still matches.
        wanted = (self.uuid, probe.disk_name)
        entries = [fmt for path, fmt in self._disk_info.items()
                   if tuple(path.split('/')[-2:]) == wanted]
        if len(set(entries)) > 1:
            raise _Refused('%s gives it more than one format (%s)' % (
                DISK_INFO, ', '.join(sorted(set(entries)))))
        return entries[0] if entries else None

    def _read_disk_info(self):
        """Upstream's disk.info of the instance, read through the instance
        directory's descriptor (``instances_path`` as configured, the
        instance directory and disk.info never through a link)."""
        path = os.path.join(os.path.abspath(CONF.instances_path), self.uuid,
                            DISK_INFO)
        try:
            with staging.open_root(CONF.instances_path) as root, \
                    root.subdir(self.uuid) as instance_dir:
                fd = instance_dir.open_regular(DISK_INFO)
        except FileNotFoundError:
            return {}
        except (OSError, exception.UnsafePath,
                exception.UnsafeDirectory) as e:
            raise _Refused('%s cannot be opened: %s' % (path, e))
        try:
            data = os.read(fd, DISK_INFO_MAX_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > DISK_INFO_MAX_BYTES:
            raise _Refused('%s is larger than %d bytes' % (
                path, DISK_INFO_MAX_BYTES))
        text = data.decode('utf-8', 'replace').strip()
        if not text:
            return {}
        try:
            info = jsonutils.loads(text)
        except ValueError as e:
            raise _Refused('%s is corrupt: %s' % (path, e))
        if not isinstance(info, dict) or not all(
                isinstance(k, str) and isinstance(v, str)
                for k, v in info.items()):
            raise _Refused('%s is corrupt: not an object of path -> '
                           'format' % path)
        return info


def owned_disks(instance, bdms, cache=None):
    """What a destroy may remove of unrecorded disks it could not record.

    A disk whose layout is refused is still the instance's when its name
    says so for certain: a file in the instance's own directory, or a volume
    named ``<uuid>_<disk name>``. Removing one needs no format (the file or
    volume goes as a whole), so each comes back as a backend whose record
    only locates it.

    Both kinds of place are looked at whatever the node's ``images_type``
    is now (``_probed_layouts``): a node switched from files to LVM (or
    back) still sees, and a destroy still removes, the disks the old
    setting made, and a spawn refuses to plan new disks beside them.

    :param bdms: ALL the instance's mappings (recorded ones keep their
        names out of reach).
    :returns: ([backend], [(mapping label, why nothing could be found)]):
        the backends of every candidate disk that exists, and the mappings
        whose storage could not even be looked at (to be reported).
    """
    uuid = utils.validate_uuid(instance.uuid)
    taken, unrecorded = _unrecorded(bdms)
    unresolved = [(mapping_label(bdm), why)
                  for bdm, role, _index, why in unrecorded if role is None]
    roles = [(role, index) for _bdm, role, index, _why in unrecorded
             if role is not None]
    candidates = {}
    layouts = _probed_layouts(policy.node_layout())
    node = layouts[0]
    for layout in layouts:
        inferrer = _Inferrer(instance, uuid, layout, {}, cache)
        for role, index in roles:
            for name in inferrer._candidates(role, index):
                key = (layout.backend, name)
                if name in taken or key in candidates:
                    continue
                try:
                    candidates[key] = inferrer._backend(
                        inferrer._probe_record(name))
                except (_Refused, exception.NovaException) as e:
                    if layout is node:
                        unresolved.append((name, str(e)))
    # One look per kind of storage for all the names (one listing of a
    # volume group, not one per disk).
    by_class = {}
    for backend in candidates.values():
        by_class.setdefault(type(backend), []).append(backend)
    present = set()
    for cls, group in by_class.items():
        try:
            present.update(id(b) for b in cls.which_exist(group))
        except exception.NovaException as e:
            if group[0].record.backend != node.backend:
                # Another kind of place, looked at in case the node's
                # setting changed (a volume group that is gone, say).
                LOG.debug('Not looking for disks of instance %(uuid)s on '
                          '%(backend)s storage: %(error)s',
                          {'uuid': uuid, 'backend': group[0].record.backend,
                           'error': e})
                continue
            unresolved.extend((b.record.disk_name, str(e)) for b in group)
    backends = [b for b in candidates.values() if id(b) in present]
    return backends, unresolved


#: Backends whose disks are files in the instance's directory.
_FILE_BACKENDS = (fields.DiskBackend.FLAT, fields.DiskBackend.QCOW2,
                  fields.DiskBackend.PLOOP)


def _probed_layouts(node):
    """The node's layout, then each other kind of place an unrecorded
    disk of the instance can be: its directory (probed as Flat: any file
    at the name) unless the node keeps disks there, and the node's
    ``images_volume_group`` (if set) unless the node is Lvm already."""
    layouts = [node]
    if node.backend not in _FILE_BACKENDS:
        layouts.append(dataclasses.replace(
            node, backend=fields.DiskBackend.FLAT, images_type='flat'))
    if node.backend != fields.DiskBackend.LVM and node.volume_group:
        layouts.append(dataclasses.replace(
            node, backend=fields.DiskBackend.LVM, images_type='lvm'))
    return layouts


def remove_disk_info(instance_dir):
    """Remove Nova 34's ``disk.info`` of a destroyed instance, if any.

    :param instance_dir: the instance's open staging.Directory.
    """
    instance_dir.unlink(DISK_INFO)

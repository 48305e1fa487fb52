"""LibvirtDiskMetadata: the persisted layout record of one local disk.

The record is decided once, when a disk is planned, and is then the only
source of the disk's backend, format, size, location and origin. It is stored
as JSON in ``block_device_mapping.driver_info``::

    {"nova_object.name": "LibvirtDiskMetadata",
     "nova_object.namespace": "nova",
     "nova_object.version": "1.0",
     "nova_object.data": {"backend": "qcow2", "format": "qcow2",
                          "size": 2147483648, "disk_name": "disk",
                          "backing_format": "raw",
                          "image_id": "c0f5...", ...}}

Loading is strict: anything that is not exactly such an object of a version
this code knows raises a ``DiskMetadataInvalid`` subclass, never a guess.
"""

import hashlib
import re

from oslo_serialization import jsonutils
from oslo_utils import versionutils
from oslo_versionedobjects import exception as ovo_exc

from nova import exception
from nova.objects import base
from nova.objects import fields
from nova.virt.libvirt import ephemeral_crypt
from nova.virt.libvirt.imagebackend import specs

_VERSION = re.compile(r'^[0-9]+\.[0-9]+$')

#: ``encryption``: a plain dm-crypt mapping over the volume, as upstream's
#: encrypted Lvm (``cryptsetup create <lv>-dmcrypt``, key in hex on stdin).
ENCRYPTION_DMCRYPT_PLAIN = 'dmcrypt-plain'
ENCRYPTIONS = (ENCRYPTION_DMCRYPT_PLAIN,)

#: The backends whose disks may be encrypted (upstream: Lvm only).
_ENCRYPTABLE_BACKENDS = (fields.DiskBackend.LVM,)

# The names upstream Nova (34.0.0 and older) gave the files of its image
# cache: sha1 of the image id, swap_<MB>, ephemeral_<GB>_<7 hex of an md5>.
_UPSTREAM_BASE_NAME = re.compile(
    r'^(?:[0-9a-f]{40}|swap_[1-9][0-9]*|ephemeral_[1-9][0-9]*_[0-9a-f]{7})$')


def upstream_base_name(image_id):
    """The name upstream Nova gave the cached base of ``image_id``."""
    return hashlib.sha1(image_id.encode('utf-8'),
                        usedforsecurity=False).hexdigest()


def is_upstream_base_name(name):
    """True if ``name`` is one upstream Nova gave a file in ``_base``."""
    return isinstance(name, str) and bool(_UPSTREAM_BASE_NAME.match(name))


@base.NovaObjectRegistry.register
class LibvirtDiskMetadata(base.NovaObject):
    """The layout of one local disk of a libvirt instance.

    Fields:

    ``backend``
        flat, qcow2, lvm, rbd or ploop.
    ``format``
        raw, qcow2 or ploop: the format pinned (``-f``) on every tool call
        and written as the libvirt driver type.
    ``size``
        Virtual size in bytes.
    ``disk_name``
        The instance-relative name: ``disk``, ``disk.local``, ``disk.eph1``,
        ``disk.swap``. File backends keep it at
        ``$instances_path/<uuid>/<disk_name>``.
    ``backing_format``
        The format of the cached base the disk is built from, for the
        backends whose spec keeps it: qcow2 (required: the base the overlay
        sits on, ``-F`` on create, ``<backingStore>`` in the guest XML) and
        lvm (optional, raw when absent: ``-f`` of the convert into the
        volume).
    ``volume_group`` / ``rbd_pool`` / ``volume_name``
        Block backends only: the LVM volume group or the RBD pool, and the
        LV or RBD image name inside it.
    ``image_id`` / ``cache_name``
        The source: the image a disk was made from, or the template name
        (``ephemeral_1_ext4``, ``swap_512``) of a disk made by a function.
        At most one is set; neither for a blank disk.
    ``preallocated``
        File backends: the disk's full size is allocated when it is
        created and whenever it grows (``preallocate_images = space``
        when it was planned). Absent from 1.0 records: False.
    ``encryption`` / ``encryption_cipher`` / ``encryption_key_size``
        Whether and how the disk's bytes are encrypted: None (in clear), or
        ``dmcrypt-plain`` (LVM only: the guest opens a plain dm-crypt
        mapping over the volume) with dm-crypt's cipher string
        (``aes-xts-plain64``) and the key size in bits. The key itself is
        never recorded here. Absent from 1.0 and 1.1 records: None.
    ``source_kind``
        What the disk is beside the instance's own disks: ``file`` (the
        config drive, ``disk.config``, imported from a local file: no
        image_id, no cache_name), ``rescue`` (``disk.rescue``, from the
        rescue image: image_id set) or None (a disk of the instance's
        mappings). Absent from older records: None.
    """

    # Version 1.0: Initial version
    # Version 1.1: Added preallocated
    # Version 1.2: Added encryption, encryption_cipher, encryption_key_size,
    #              source_kind (config drive and rescue disks)
    # Version 1.3: Added base_name (adopted upstream cache files)
    VERSION = '1.3'

    fields = {
        'backend': fields.DiskBackendField(),
        'format': fields.DiskFormatField(),
        'size': fields.NonNegativeIntegerField(),
        'disk_name': fields.StringField(),
        'backing_format': fields.DiskFormatField(nullable=True,
                                                 default=None),
        'volume_group': fields.StringField(nullable=True, default=None),
        'rbd_pool': fields.StringField(nullable=True, default=None),
        'volume_name': fields.StringField(nullable=True, default=None),
        'image_id': fields.StringField(nullable=True, default=None),
        'cache_name': fields.StringField(nullable=True, default=None),
        'preallocated': fields.BooleanField(default=False),
        'encryption': fields.StringField(nullable=True, default=None),
        'encryption_cipher': fields.StringField(nullable=True,
                                                default=None),
        'encryption_key_size': fields.NonNegativeIntegerField(
            nullable=True, default=None),
        # --- config drive and rescue disks (1.2) ---------------------------
        'source_kind': fields.DiskSourceKindField(nullable=True,
                                                  default=None),
        # --- adopted upstream cache files (1.3) ----------------------------
        'base_name': fields.StringField(nullable=True, default=None),
    }

    def obj_make_compatible(self, primitive, target_version):
        super().obj_make_compatible(primitive, target_version)
        target = versionutils.convert_version_to_tuple(target_version)
        if target < (1, 3):
            if primitive.get('base_name') is not None:
                # An older reader would derive another base from the
                # source: it would define the overlay over a file it does
                # not sit on. Refuse rather than drop.
                raise exception.ObjectActionError(
                    action='obj_make_compatible',
                    reason='disk %s sits on cache entry %s, which a %s '
                           'record cannot name' % (
                               primitive.get('disk_name'),
                               primitive['base_name'], target_version))
            primitive.pop('base_name', None)
        if target < (1, 2):
            # An older reader would take an encrypted disk for one in
            # clear, and a config drive or rescue disk for one of the
            # instance's own: refuse rather than drop (as for base_name;
            # from_driver_info refuses newer minor versions likewise).
            for name in ('encryption', 'source_kind'):
                if primitive.get(name) is not None:
                    raise exception.ObjectActionError(
                        action='obj_make_compatible',
                        reason='disk %s has %s %s, which a %s record '
                               'cannot say' % (
                                   primitive.get('disk_name'), name,
                                   primitive[name], target_version))
            for name in ('encryption', 'encryption_cipher',
                         'encryption_key_size', 'source_kind'):
                primitive.pop(name, None)
        if target < (1, 1):
            primitive.pop('preallocated', None)

    @property
    def source(self):
        """A short description of the origin, for logs and the CLI."""
        if self.obj_attr_is_set('source_kind') and self.source_kind:
            return _describe_source_kind(self)
        if self.image_id:
            return 'image:%s' % self.image_id
        if self.cache_name:
            return 'template:%s' % self.cache_name
        return 'blank'

    def __setattr__(self, name, value):
        # A new value for any field makes the record unproven again.
        if name in self.fields:
            self.__dict__.pop('_proven', None)
        super().__setattr__(name, value)

    def __delattr__(self, name):
        if name in self.fields:
            self.__dict__.pop('_proven', None)
        super().__delattr__(name)

    def validate(self):
        """Check that the fields are consistent with each other.

        A record passes through several hands on its way to the database
        (inference, the backend, serialisation), and each of them asks; the
        answer is kept until a field is set again, so the checks run once
        per version of the record's facts.

        :raises: DiskMetadataInvalid naming the first inconsistency.
        """
        if self.__dict__.get('_proven'):
            return
        missing = [name for name in self.fields
                   if name in ('backend', 'format', 'size', 'disk_name')
                   and not self.obj_attr_is_set(name)]
        if missing:
            raise exception.DiskMetadataInvalid(
                reason='missing %s' % ', '.join(missing))
        for name, field in self.fields.items():
            if not self.obj_attr_is_set(name):
                # Facts added by later minor versions take their default
                # when an older record is loaded.
                if field.default is not fields.UnspecifiedDefault:
                    self.obj_set_defaults(name)
                else:
                    setattr(self, name, None)
        spec = specs.SPECS[self.backend]
        if self.format not in spec.formats:
            raise exception.DiskMetadataInvalid(
                reason='backend %s cannot hold format %s' % (
                    self.backend, self.format))
        if self.backing_format and not spec.keeps_base_format:
            raise exception.DiskMetadataInvalid(
                reason='backend %s keeps no backing_format, got %s' % (
                    self.backend, self.backing_format))
        if spec.overlay and not self.backing_format:
            raise exception.DiskMetadataInvalid(
                reason='backend %s needs backing_format' % self.backend)
        for name in spec.location:
            if not getattr(self, name):
                raise exception.DiskMetadataInvalid(
                    reason='backend %s needs %s' % (self.backend, name))
        self._validate_encryption()
        if self.image_id and self.cache_name:
            raise exception.DiskMetadataInvalid(
                reason='a disk has one source, not both image %s and '
                       'template %s' % (self.image_id, self.cache_name))
        if self.image_id is not None and not 0 < len(self.image_id) <= 255:
            # As Nova's instances.image_ref: a record that fits every
            # database's Text column (MySQL's is 64 KiB).
            raise exception.DiskMetadataInvalid(
                reason='image_id of %d characters: 1 to 255 expected' %
                       len(self.image_id))
        _check_source_kind(self)
        _check_base_name(self, spec)
        _check_simple_name('disk_name', self.disk_name)
        for name in ('volume_group', 'rbd_pool', 'volume_name',
                     'cache_name'):
            if getattr(self, name) is not None:
                _check_simple_name(name, getattr(self, name))
        self.__dict__['_proven'] = True

    def _validate_encryption(self):
        how = (self.encryption_cipher, self.encryption_key_size)
        if self.encryption is None:
            if how != (None, None):
                raise exception.DiskMetadataInvalid(
                    reason='a disk in clear has no encryption cipher or '
                           'key size')
            return
        if self.encryption not in ENCRYPTIONS:
            raise exception.DiskMetadataInvalid(
                reason='unknown encryption %r' % (self.encryption,))
        if self.backend not in _ENCRYPTABLE_BACKENDS:
            raise exception.DiskMetadataInvalid(
                reason='backend %s cannot be encrypted' % self.backend)
        try:
            ephemeral_crypt.validate_spec(*how)
        except ephemeral_crypt.EphemeralEncryptionInvalid as e:
            raise exception.DiskMetadataInvalid(reason=str(e))

    def to_driver_info(self):
        """Serialise for ``block_device_mapping.driver_info``.

        :returns: a JSON string of ``obj_to_primitive()``.
        """
        self.validate()
        primitive = self.obj_to_primitive()
        # Which fields changed in memory is not part of the layout.
        primitive.pop(self._obj_primitive_key('changes'), None)
        return jsonutils.dumps(primitive, sort_keys=True)

    @classmethod
    def from_driver_info(cls, driver_info):
        """Load a record strictly from its ``driver_info`` text.

        :param driver_info: the JSON text written by ``to_driver_info()``.
        :returns: a validated LibvirtDiskMetadata.
        :raises: DiskMetadataMalformed, DiskMetadataUnknownObject,
            DiskMetadataUnsupportedVersion, DiskMetadataUnknownValue or
            DiskMetadataInvalid.
        """
        try:
            primitive = jsonutils.loads(driver_info)
        except (TypeError, ValueError) as e:
            raise exception.DiskMetadataMalformed(reason=str(e))
        except RecursionError:
            # Nesting deep enough to exhaust the parser is not a record.
            raise exception.DiskMetadataMalformed(
                reason='nested too deeply to be a disk record')
        if not isinstance(primitive, dict):
            raise exception.DiskMetadataMalformed(
                reason='top level is %s, not an object' %
                       type(primitive).__name__)
        keys = [cls._obj_primitive_key(k)
                for k in ('name', 'namespace', 'version', 'data')]
        if any(k not in primitive for k in keys):
            raise exception.DiskMetadataMalformed(
                reason='missing one of %s' % ', '.join(keys))
        name, namespace, version, data = (primitive[k] for k in keys)
        if name != cls.obj_name() or namespace != cls.OBJ_PROJECT_NAMESPACE:
            raise exception.DiskMetadataUnknownObject(name=name,
                                                      namespace=namespace)
        if not isinstance(data, dict):
            raise exception.DiskMetadataMalformed(
                reason='data is %s, not an object' % type(data).__name__)
        if not isinstance(version, str) or not _VERSION.match(version):
            raise exception.DiskMetadataMalformed(
                reason='bad version %r' % (version,))
        wanted = versionutils.convert_version_to_tuple(version)
        ours = versionutils.convert_version_to_tuple(cls.VERSION)
        # A newer minor version carries facts this code would drop: refuse
        # rather than act on half a record.
        if wanted[0] != ours[0] or wanted > ours:
            raise exception.DiskMetadataUnsupportedVersion(
                version=version, supported=cls.VERSION)
        unknown = set(data) - set(cls.fields)
        if unknown:
            raise exception.DiskMetadataMalformed(
                reason='unknown fields %s' % ', '.join(sorted(unknown)))
        for name, value in data.items():
            _check_json_type(name, cls.fields[name], value)
        for field in ('backend', 'format', 'backing_format', 'source_kind'):
            value = data.get(field)
            valid = cls.fields[field].AUTO_TYPE.valid_values
            if value is not None and value not in valid:
                raise exception.DiskMetadataUnknownValue(field=field,
                                                         value=value)
        try:
            record = cls.obj_from_primitive(primitive)
        except (ovo_exc.VersionedObjectsException, ValueError,
                TypeError, KeyError) as e:
            raise exception.DiskMetadataInvalid(reason=str(e))
        record.validate()
        # An older record is now a record of this version (its new facts
        # at their defaults): written back, it must say so.
        record.VERSION = cls.VERSION
        record.obj_reset_changes()
        return record


def _check_json_type(name, field, value):
    """Refuse a value of the wrong JSON type rather than coerce it.

    oslo.versionedobjects would turn ``"12"`` or ``true`` into a size of
    12 or 1: a record is read as written, or not at all.
    """
    if value is None and field.nullable:
        return
    if isinstance(field.AUTO_TYPE, fields.Boolean):
        ok = isinstance(value, bool)
    elif isinstance(field.AUTO_TYPE, (fields.Integer,
                                      fields.NonNegativeInteger)):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise exception.DiskMetadataMalformed(
            reason='%s has JSON type %s' % (name, type(value).__name__))


def _check_simple_name(field, value):
    """Names end up in paths and volume names: one plain component only."""
    if (not value or value in ('.', '..') or '/' in value or '\0' in value
            or len(value) > 255):
        raise exception.DiskMetadataInvalid(
            reason='%s %r is not a plain name' % (field, value))


# --- config drive and rescue disks (1.2) -----------------------------------

def _describe_source_kind(record):
    if record.source_kind == fields.DiskSourceKind.RESCUE:
        return 'rescue:image:%s' % record.image_id
    return 'file'


def _check_source_kind(record):
    """A config drive comes from a file alone; a rescue disk from its
    image alone."""
    kind = record.source_kind
    if kind == fields.DiskSourceKind.FILE and (record.image_id or
                                               record.cache_name):
        raise exception.DiskMetadataInvalid(
            reason='a disk imported from a file names no image or template')
    if kind == fields.DiskSourceKind.RESCUE and not record.image_id:
        raise exception.DiskMetadataInvalid(
            reason='a rescue disk names its rescue image')


# --- adopted upstream cache files (1.3) ------------------------------------

def _check_base_name(record, spec):
    """A base_name is the upstream name of the disk's own source, under a
    qcow2 overlay: never a name of anything else."""
    name = record.base_name
    if name is None:
        return
    if not spec.overlay:
        raise exception.DiskMetadataInvalid(
            reason='backend %s sits on no cache entry, got base_name %r' % (
                record.backend, name))
    if record.image_id:
        expected = upstream_base_name(record.image_id)
    elif record.cache_name:
        expected = record.cache_name
        if record.backing_format != fields.DiskFormat.RAW:
            raise exception.DiskMetadataInvalid(
                reason='base_name %s is a template, which is raw; the '
                       'record says backing format %s' % (
                           name, record.backing_format))
    else:
        raise exception.DiskMetadataInvalid(
            reason='a blank disk sits on no cache entry, got base_name '
                   '%r' % (name,))
    if name != expected or not is_upstream_base_name(name):
        raise exception.DiskMetadataInvalid(
            reason='base_name %r is not the upstream cache name of the '
                   'disk\'s source (%s)' % (name, expected))

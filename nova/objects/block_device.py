"""BlockDeviceMapping: one disk of an instance, and its layout record.

Upstream Nova's object (field set of 1.21) plus ``driver_info`` at 1.22: the
JSON of the disk's ``LibvirtDiskMetadata``, opaque to everything but the
libvirt driver. Only the imagebackend DiskManager assigns ``driver_info``;
everyone else reads it through ``get_disk_metadata()``.

``BlockDeviceMappingList.save()`` writes every changed member in one
transaction (one UPDATE statement), however many disks an instance has.

Both objects travel to and from Nova 34 services: the same fields and
remotable methods as upstream's (a test pins 1.22 without ``driver_info``
to Nova 34's own 1.21 fingerprint), ``driver_info`` dropped for a 1.21
target, and a mapping that arrives without ``driver_info`` (from a 1.21
sender) loads it from the database when asked.
"""

from oslo_log import log as logging
from oslo_utils import uuidutils
from oslo_utils import versionutils
from oslo_versionedobjects import base as ovo_base

from nova.db import api as db
from nova import exception
from nova.objects import base
from nova.objects import fields
from nova.objects import instance as instance_obj
from nova.objects import libvirt_disk

LOG = logging.getLogger(__name__)

# Fields that are not columns: loaded on demand, never written.
_OPTIONAL_ATTRS = ('instance',)
# Fields that may be missing from a mapping (an older sender's) and are
# loaded from its row when read.
_LAZY_COLUMNS = ('driver_info',)


@base.NovaObjectRegistry.register
class BlockDeviceMapping(base.NovaPersistentObject, base.NovaObject,
                         base.NovaObjectDictCompat):
    # Version 1.0: Initial version
    # Version 1.1: Add instance_uuid to get_by_volume_id method
    # Version 1.2: Instance version 1.14
    # Version 1.3: Instance version 1.15
    # Version 1.4: Instance version 1.16
    # Version 1.5: Instance version 1.17
    # Version 1.6: Instance version 1.18
    # Version 1.7: Add update_or_create method
    # Version 1.8: Instance version 1.19
    # Version 1.9: Instance version 1.20
    # Version 1.10: Changed source_type field to BlockDeviceSourceTypeField.
    # Version 1.11: Changed destination_type field to
    #               BlockDeviceDestinationTypeField.
    # Version 1.12: Changed device_type field to BlockDeviceTypeField.
    # Version 1.13: Instance version 1.21
    # Version 1.14: Instance version 1.22
    # Version 1.15: Instance version 1.23
    # Version 1.16: Deprecate get_by_volume_id(), add
    #               get_by_volume() and get_by_volume_and_instance()
    # Version 1.17: Added tag field
    # Version 1.18: Added attachment_id
    # Version 1.19: Added uuid
    # Version 1.20: Added volume_type
    # Version 1.21: Added encrypted, encryption_secret_uuid, encryption_format
    #               and encryption_options
    # Version 1.22: Added driver_info (this project: the LibvirtDiskMetadata
    #               of a local disk, as JSON)
    VERSION = '1.22'

    fields = {
        'id': fields.IntegerField(),
        'uuid': fields.UUIDField(),
        'instance_uuid': fields.UUIDField(),
        'instance': fields.ObjectField('Instance', nullable=True),
        'source_type': fields.BlockDeviceSourceTypeField(nullable=True),
        'destination_type': fields.BlockDeviceDestinationTypeField(
            nullable=True),
        'guest_format': fields.StringField(nullable=True),
        'device_type': fields.BlockDeviceTypeField(nullable=True),
        'disk_bus': fields.StringField(nullable=True),
        'boot_index': fields.IntegerField(nullable=True),
        'device_name': fields.StringField(nullable=True),
        'delete_on_termination': fields.BooleanField(default=False),
        'snapshot_id': fields.StringField(nullable=True),
        'volume_id': fields.StringField(nullable=True),
        'volume_size': fields.IntegerField(nullable=True),
        'image_id': fields.StringField(nullable=True),
        'no_device': fields.BooleanField(default=False),
        'connection_info': fields.SensitiveStringField(nullable=True),
        'tag': fields.StringField(nullable=True),
        'attachment_id': fields.UUIDField(nullable=True),
        # A volume type name or id.
        'volume_type': fields.StringField(nullable=True),
        'encrypted': fields.BooleanField(default=False),
        'encryption_secret_uuid': fields.UUIDField(nullable=True),
        'encryption_format': fields.BlockDeviceEncryptionFormatTypeField(
            nullable=True),
        'encryption_options': fields.StringField(nullable=True),
        'driver_info': fields.StringField(nullable=True),
    }

    def obj_make_compatible(self, primitive, target_version):
        super().obj_make_compatible(primitive, target_version)
        target = versionutils.convert_version_to_tuple(target_version)
        dropped = (
            ((1, 22), ('driver_info',)),
            ((1, 21), ('encrypted', 'encryption_secret_uuid',
                       'encryption_format', 'encryption_options')),
            ((1, 20), ('volume_type',)),
            ((1, 19), ('uuid',)),
            ((1, 18), ('attachment_id',)),
            ((1, 17), ('tag',)),
        )
        for added_in, names in dropped:
            if target < added_in:
                for name in names:
                    primitive.pop(name, None)

    @staticmethod
    def _from_db_object(context, bdm, db_bdm, expected_attrs=None):
        """Fill ``bdm`` from a ``nova.db.models.BlockDeviceMapping`` row.

        :param expected_attrs: names of optional fields to load now
            (``instance``); others load when first read.
        """
        for name in bdm.fields:
            if name in _OPTIONAL_ATTRS:
                continue
            value = db_bdm[name]
            if name == 'deleted':
                # The column holds the row's id once deleted.
                value = bool(value)
            elif name == 'uuid' and value is None:
                # Rows from before upstream's 1.19 have none: leave it unset.
                continue
            elif name in ('delete_on_termination', 'no_device', 'encrypted'):
                value = bool(value)
            setattr(bdm, name, value)
        bdm._context = context
        if 'instance' in (expected_attrs or ()):
            bdm.obj_load_attr('instance')
        bdm.obj_reset_changes()
        return bdm

    def _create(self, update_or_create=False):
        if self.obj_attr_is_set('id'):
            raise exception.ObjectActionError(action='create',
                                              reason='already created')
        if 'instance' in self.obj_what_changed():
            raise exception.ObjectActionError(action='create',
                                              reason='instance assigned')
        if update_or_create:
            db_bdm = db.block_device_mapping_update_or_create(
                self._context, self.obj_get_changes())
        else:
            if not self.obj_attr_is_set('uuid'):
                self.uuid = uuidutils.generate_uuid()
            db_bdm = db.block_device_mapping_create(self._context,
                                                    self.obj_get_changes())
        self._from_db_object(self._context, self, db_bdm)

    @base.remotable
    def create(self):
        """Insert this mapping; ``instance_uuid`` names a live instance.

        A missing ``uuid`` is generated.

        :raises: ObjectActionError if already created or ``instance`` is
            set; InstanceNotFound; BDMExists.
        """
        self._create()

    @base.remotable
    def update_or_create(self):
        """Update the instance's mapping with this ``uuid`` (else this
        ``device_name``), or insert this one; as upstream, a swap mapping
        replaces the instance's other swap mappings.

        :raises: as create().
        """
        self._create(update_or_create=True)

    def _updates(self, action):
        """The changed columns, for save(); ``instance`` is not one."""
        updates = self.obj_get_changes()
        if 'instance' in updates:
            raise exception.ObjectActionError(action=action,
                                              reason='instance changed')
        updates.pop('id', None)
        return updates

    @base.remotable
    def save(self):
        """Write the changed fields; a no-op when nothing changed.

        :raises: ObjectActionError if ``instance`` changed; BDMNotFound.
        """
        updates = self._updates('save')
        if not updates:
            return
        db_bdm = db.block_device_mapping_update(self._context, self.id,
                                                updates)
        self._from_db_object(self._context, self, db_bdm)

    @base.remotable
    def destroy(self):
        """Soft-delete this mapping; ``id`` is unset afterwards.

        :raises: ObjectActionError if not created; BDMNotFound.
        """
        if not self.obj_attr_is_set('id'):
            raise exception.ObjectActionError(action='destroy',
                                              reason='already destroyed')
        db.block_device_mapping_destroy(self._context, self.id)
        del self.id

    @classmethod
    def get_by_id(cls, context, bdm_id):
        """:raises: BDMNotFound.

        Local only (not remotable): upstream's mapping has no such call.
        """
        return cls._from_db_object(
            context, cls(), db.block_device_mapping_get(context, bdm_id))

    # NOTE: deprecated upstream in favour of get_by_volume() and
    # get_by_volume_and_instance(); kept for the wire.
    @classmethod
    @base.remotable
    def get_by_volume_id(cls, context, volume_id,
                         instance_uuid=None, expected_attrs=None):
        """The first mapping of a volume.

        :raises: VolumeBDMNotFound; InvalidVolume if ``instance_uuid`` is
            given and the mapping is another instance's.
        """
        db_bdms = db.block_device_mapping_get_all_by_volume_id(context,
                                                               volume_id)
        if not db_bdms:
            raise exception.VolumeBDMNotFound(volume_id=volume_id)
        if len(db_bdms) > 1:
            LOG.warning('Legacy get_by_volume_id() call found multiple '
                        'BDMs for volume %(volume)s', {'volume': volume_id})
        if instance_uuid and instance_uuid != db_bdms[0]['instance_uuid']:
            raise exception.InvalidVolume(
                reason='volume %s does not belong to instance %s' % (
                    volume_id, instance_uuid))
        return cls._from_db_object(context, cls(), db_bdms[0],
                                   expected_attrs)

    @classmethod
    @base.remotable
    def get_by_volume_and_instance(cls, context, volume_id, instance_uuid,
                                   expected_attrs=None):
        """:raises: VolumeBDMNotFound."""
        db_bdm = db.block_device_mapping_get_by_instance_and_volume_id(
            context, volume_id, instance_uuid)
        if db_bdm is None:
            raise exception.VolumeBDMNotFound(volume_id=volume_id)
        return cls._from_db_object(context, cls(), db_bdm, expected_attrs)

    @classmethod
    @base.remotable
    def get_by_volume(cls, context, volume_id, expected_attrs=None):
        """The one mapping of a volume.

        :raises: VolumeBDMNotFound; VolumeBDMIsMultiAttach if the volume is
            attached more than once.
        """
        db_bdms = db.block_device_mapping_get_all_by_volume_id(context,
                                                               volume_id)
        if not db_bdms:
            raise exception.VolumeBDMNotFound(volume_id=volume_id)
        if len(db_bdms) > 1:
            raise exception.VolumeBDMIsMultiAttach(volume_id=volume_id)
        return cls._from_db_object(context, cls(), db_bdms[0],
                                   expected_attrs)

    def obj_load_attr(self, attrname):
        self._check_lazy_load(attrname, _OPTIONAL_ATTRS + _LAZY_COLUMNS)
        if attrname in _LAZY_COLUMNS:
            # A mapping from a sender that does not know the field.
            LOG.debug('Lazy-loading %(attr)s of block device mapping %(id)s',
                      {'attr': attrname, 'id': self.id})
            row = db.block_device_mapping_get(self._context, self.id)
            setattr(self, attrname, row[attrname])
            self.obj_reset_changes(fields=[attrname])
            return
        LOG.debug('Lazy-loading instance %(uuid)s of block device mapping '
                  '%(id)s', {'uuid': self.instance_uuid,
                             'id': self.obj_attr_is_set('id') and self.id})
        self.instance = instance_obj.Instance.get_by_uuid(self._context,
                                                          self.instance_uuid)
        self.obj_reset_changes(fields=['instance'])

    @property
    def is_root(self):
        return self.boot_index == 0

    @property
    def is_volume(self):
        return (self.destination_type ==
                fields.BlockDeviceDestinationType.VOLUME)

    @property
    def is_local(self):
        """A disk on the compute host (image, blank, ephemeral, swap)."""
        return (self.destination_type ==
                fields.BlockDeviceDestinationType.LOCAL)

    @property
    def is_image(self):
        return self.source_type == fields.BlockDeviceSourceType.IMAGE

    @property
    def is_blank(self):
        return self.source_type == fields.BlockDeviceSourceType.BLANK

    @property
    def is_swap(self):
        return self.guest_format == 'swap'

    def get_disk_metadata(self):
        """Return this disk's layout record, or None if it has none yet.

        :returns: a validated ``LibvirtDiskMetadata`` loaded strictly from
            ``driver_info``, or None when ``driver_info`` is None. A mapping
            that arrived without the field (a Nova 34 sender's 1.21) loads
            it from the database first; one that is not in the database
            (no id or no context) has no record: None.
        :raises: DiskMetadataInvalid (or a subclass) for a record this code
            cannot load; nothing is guessed.
        """
        if 'driver_info' not in self and not (
                self.obj_attr_is_set('id') and self._context):
            return None
        if self.driver_info is None:
            return None
        return libvirt_disk.LibvirtDiskMetadata.from_driver_info(
            self.driver_info)


@base.NovaObjectRegistry.register
class BlockDeviceMappingList(base.ObjectListBase, base.NovaObject):
    # Version 1.0: Initial version
    # Version 1.1: BlockDeviceMapping <= version 1.1
    # Version 1.2: Added use_slave to get_by_instance_uuid
    # Version 1.3: BlockDeviceMapping <= version 1.2
    # Version 1.4: BlockDeviceMapping <= version 1.3
    # Version 1.5: BlockDeviceMapping <= version 1.4
    # Version 1.6: BlockDeviceMapping <= version 1.5
    # Version 1.7: BlockDeviceMapping <= version 1.6
    # Version 1.8: BlockDeviceMapping <= version 1.7
    # Version 1.9: BlockDeviceMapping <= version 1.8
    # Version 1.10: BlockDeviceMapping <= version 1.9
    # Version 1.11: BlockDeviceMapping <= version 1.10
    # Version 1.12: BlockDeviceMapping <= version 1.11
    # Version 1.13: BlockDeviceMapping <= version 1.12
    # Version 1.14: BlockDeviceMapping <= version 1.13
    # Version 1.15: BlockDeviceMapping <= version 1.14
    # Version 1.16: BlockDeviceMapping <= version 1.15
    # Version 1.17: Add get_by_instance_uuids()
    # Version 1.18: Add get_by_volume()
    # Version 1.19: BlockDeviceMapping <= version 1.22; add save() of all
    #               changed members in one transaction and
    #               get_all_with_driver_info() (this project)
    VERSION = '1.19'

    fields = {
        'objects': fields.ListOfObjectsField('BlockDeviceMapping'),
    }

    @classmethod
    @base.remotable
    def get_by_instance_uuid(cls, context, instance_uuid, use_slave=False):
        """The live mappings of one instance, in creation order.

        ``use_slave`` is upstream's (read from a replica); this project has
        no replica and reads the database.
        """
        return ovo_base.obj_make_list(
            context, cls(),
            db.block_device_mapping_get_all_by_instance_uuid(context,
                                                             instance_uuid))

    @classmethod
    @base.remotable
    def get_by_instance_uuids(cls, context, instance_uuids, use_slave=False):
        """The live mappings of these instances, in creation order."""
        return ovo_base.obj_make_list(
            context, cls(),
            db.block_device_mapping_get_all_by_instance_uuids(
                context, instance_uuids))

    @classmethod
    @base.remotable
    def get_by_volume(cls, context, volume_id, use_slave=False):
        """Every live mapping of a volume.

        :raises: VolumeBDMNotFound.
        """
        db_bdms = db.block_device_mapping_get_all_by_volume_id(context,
                                                               volume_id)
        if not db_bdms:
            raise exception.VolumeBDMNotFound(volume_id=volume_id)
        return ovo_base.obj_make_list(context, cls(), db_bdms)

    @classmethod
    @base.remotable
    def get_all_with_driver_info(cls, context):
        """Every live mapping that has a layout record (any instance)."""
        return ovo_base.obj_make_list(
            context, cls(),
            db.block_device_mapping_get_all_with_driver_info(context))

    @base.remotable
    def save(self):
        """Write every changed member in one transaction.

        Members without changes are skipped (no write at all when none
        changed). Afterwards each written member has no pending changes and
        carries the new ``updated_at``.

        :raises: ObjectActionError if a member is not created or had its
            ``instance`` changed; BDMNotFound if a member is gone (nothing
            is written then).
        """
        updates = {}
        changed = []
        for bdm in self.objects:
            member_updates = bdm._updates('save')
            if not member_updates:
                continue
            if not bdm.obj_attr_is_set('id'):
                raise exception.ObjectActionError(action='save',
                                                  reason='member not created')
            updates[bdm.id] = member_updates
            changed.append(bdm)
        if not updates:
            return
        updated_at = db.block_device_mapping_update_many(self._context,
                                                         updates)
        for bdm in changed:
            bdm.updated_at = updated_at
            bdm.obj_reset_changes()

    def save_first_records(self, require_all=False):
        """Write each member's ``driver_info`` only if its row has none.

        For FIRST records (a disk just planned or inferred): of processes
        that record one mapping at once, exactly one writes; the others
        read the winner's record. Every member must have a changed
        ``driver_info`` and no other change. One transaction for all.
        Not remotable (nothing calls it over RPC): it leaves the list's
        wire version alone.

        Afterwards each member carries the record that is stored (its own,
        or the one another process wrote first) with no pending changes.

        :returns: (lost, gone): the members whose row had a record
            already (the record in memory was replaced by the stored one),
            and the members whose row is gone (deleted meanwhile; nothing
            was written for them and they keep their change).
        :param require_all: all or nothing: if a member's row is gone,
            write none (BDMNotFound).
        :raises: ObjectActionError for a member that is not created or has
            changes other than driver_info; BDMNotFound with
            ``require_all``. Nothing is written then.
        """
        wanted = {}
        for bdm in self.objects:
            if not bdm.obj_attr_is_set('id'):
                raise exception.ObjectActionError(action='save_first_records',
                                                  reason='member not created')
            # The mapping's own changed fields (as Nova's objects read
            # them): obj_what_changed() also walks every field for nested
            # objects, which a bulk run of thousands cannot afford.
            changed = set(bdm._changed_fields)
            if changed != {'driver_info'}:
                raise exception.ObjectActionError(
                    action='save_first_records',
                    reason='mapping %s has changes other than its record: '
                           '%s' % (bdm.id, ', '.join(sorted(changed))))
            wanted[bdm.id] = bdm.driver_info
        if not wanted:
            return [], []
        stored = db.block_device_mapping_record_first(
            self._context, wanted, require_all=require_all)
        lost, gone = [], []
        for bdm in self.objects:
            if bdm.id not in stored:
                gone.append(bdm)
                continue
            driver_info, written = stored[bdm.id]
            if not written:
                bdm.driver_info = driver_info
                lost.append(bdm)
            bdm.obj_reset_changes(['driver_info'])
        return lost, gone

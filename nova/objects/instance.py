"""Instance: the minimal guest record this project needs.

A cut-down relative of upstream Nova's Instance (which is at 2.x and carries
flavors, metadata, NUMA and more); it is not meant to travel to an upstream
service. Its disks are BlockDeviceMappings, looked up by ``uuid``.
"""

from oslo_log import log as logging
from oslo_utils import uuidutils
from oslo_versionedobjects import base as ovo_base

from nova.db import api as db
from nova import exception
from nova.objects import base
from nova.objects import fields

LOG = logging.getLogger(__name__)


@base.NovaObjectRegistry.register
class Instance(base.NovaPersistentObject, base.NovaObject):
    # Version 1.0: Initial version: id, uuid, host, node, hostname,
    #              display_name, image_ref, root_gb, ephemeral_gb, swap,
    #              vm_state, task_state, power_state, launched_at,
    #              terminated_at
    VERSION = '1.0'

    fields = {
        'id': fields.IntegerField(),
        'uuid': fields.UUIDField(),
        'host': fields.StringField(nullable=True),
        'node': fields.StringField(nullable=True),
        'hostname': fields.StringField(nullable=True),
        'display_name': fields.StringField(nullable=True),
        'image_ref': fields.StringField(nullable=True),
        'root_gb': fields.NonNegativeIntegerField(default=0),
        'ephemeral_gb': fields.NonNegativeIntegerField(default=0),
        # MiB, as upstream's flavor.swap; 0 is no swap disk.
        'swap': fields.NonNegativeIntegerField(default=0),
        'vm_state': fields.StringField(nullable=True),
        'task_state': fields.StringField(nullable=True),
        'power_state': fields.IntegerField(nullable=True),
        'launched_at': fields.DateTimeField(nullable=True),
        'terminated_at': fields.DateTimeField(nullable=True),
    }

    @staticmethod
    def _from_db_object(context, instance, db_instance):
        """Fill ``instance`` from a ``nova.db.models.Instance`` row."""
        for name in instance.fields:
            value = db_instance[name]
            if name == 'deleted':
                # The column holds the row's id once deleted.
                value = bool(value)
            elif name in ('root_gb', 'ephemeral_gb', 'swap') and value is None:
                value = 0
            setattr(instance, name, value)
        instance._context = context
        instance.obj_reset_changes()
        return instance

    @base.remotable
    def create(self):
        """Insert this instance; ``uuid`` must be set and be a uuid.

        :raises: ObjectActionError if already created; InvalidUUID;
            InstanceExists.
        """
        if self.obj_attr_is_set('id'):
            raise exception.ObjectActionError(action='create',
                                              reason='already created')
        if not self.obj_attr_is_set('uuid'):
            raise exception.ObjectActionError(action='create',
                                              reason='uuid is not set')
        if not uuidutils.is_uuid_like(self.uuid):
            raise exception.InvalidUUID(uuid=self.uuid)
        self.obj_set_defaults()
        db_instance = db.instance_create(self._context, self.obj_get_changes())
        self._from_db_object(self._context, self, db_instance)

    @base.remotable
    def save(self):
        """Write the changed fields.

        :raises: ObjectActionError if the uuid changed; InstanceNotFound.
        """
        updates = self.obj_get_changes()
        if 'uuid' in updates:
            raise exception.ObjectActionError(action='save',
                                              reason='uuid changed')
        updates.pop('id', None)
        if not updates:
            return
        db_instance = db.instance_update(self._context, self.uuid, updates)
        self._from_db_object(self._context, self, db_instance)

    @base.remotable
    def destroy(self):
        """Soft-delete this instance and its block device mappings.

        :raises: InstanceNotFound if it is already deleted.
        """
        db_instance = db.instance_destroy(self._context, self.uuid)
        self._from_db_object(self._context, self, db_instance)

    @classmethod
    @base.remotable
    def get_by_uuid(cls, context, uuid):
        """:raises: InstanceNotFound."""
        return cls._from_db_object(context, cls(),
                                   db.instance_get_by_uuid(context, uuid))


@base.NovaObjectRegistry.register
class InstanceList(base.ObjectListBase, base.NovaObject):
    # Version 1.0: Initial version
    VERSION = '1.0'

    fields = {
        'objects': fields.ListOfObjectsField('Instance'),
    }

    @classmethod
    @base.remotable
    def get_all(cls, context):
        """Every instance visible under the context's read_deleted."""
        return ovo_base.obj_make_list(context, cls(),
                                      db.instance_get_all(context))

    @classmethod
    @base.remotable
    def get_by_host(cls, context, host):
        """The visible instances whose ``host`` is ``host``."""
        return ovo_base.obj_make_list(
            context, cls(), db.instance_get_all(context, host=host))

"""Instance: the guest record this project needs, wire-compatible with Nova 34.

Upstream Nova's Instance 2.8 carries many more fields (metadata, NUMA, PCI,
...). This one has the same name and version and a subset of the fields,
each of the same type, so that a primitive of either loads in the other
(ovo loads the fields a class knows and ignores the rest): a Nova 34 service
can read an instance nested in this project's BlockDeviceMapping, and this
project reads upstream's. Its disks are BlockDeviceMappings, looked up by
``uuid``.

The flavor lives where upstream keeps it, as JSON in
``instance_extra.flavor``: ``{"cur": <Flavor primitive>, "old": null,
"new": null}``. Its ``swap`` (MiB) sizes the swap disk.
"""

from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import uuidutils
from oslo_versionedobjects import base as ovo_base

from nova.db import api as db
from nova import exception
from nova.objects import base
from nova.objects import fields
from nova.objects import flavor as flavor_obj

LOG = logging.getLogger(__name__)


@base.NovaObjectRegistry.register
class Instance(base.NovaPersistentObject, base.NovaObject):
    # Version 2.8: Upstream Nova 34's version. This project's fields are a
    #              subset of upstream's 2.8 (id, uuid, user_id, project_id,
    #              host, node, hostname, display_name, image_ref, memory_mb,
    #              vcpus, root_gb, ephemeral_gb, vm_state, task_state,
    #              power_state, launched_at, terminated_at, flavor), so that
    #              primitives load on either side.
    VERSION = '2.8'

    fields = {
        'id': fields.IntegerField(),
        'uuid': fields.UUIDField(),
        'user_id': fields.StringField(nullable=True),
        'project_id': fields.StringField(nullable=True),
        'host': fields.StringField(nullable=True),
        'node': fields.StringField(nullable=True),
        'hostname': fields.StringField(nullable=True),
        'display_name': fields.StringField(nullable=True),
        'image_ref': fields.StringField(nullable=True),
        'memory_mb': fields.IntegerField(nullable=True),
        'vcpus': fields.IntegerField(nullable=True),
        'root_gb': fields.IntegerField(nullable=True),
        'ephemeral_gb': fields.IntegerField(nullable=True),
        'vm_state': fields.StringField(nullable=True),
        'task_state': fields.StringField(nullable=True),
        'power_state': fields.IntegerField(nullable=True),
        'launched_at': fields.DateTimeField(nullable=True),
        'terminated_at': fields.DateTimeField(nullable=True),
        # Not a column: instance_extra.flavor (see the module docstring).
        'flavor': fields.ObjectField('Flavor'),
    }

    @staticmethod
    def _from_db_object(context, instance, db_instance):
        """Fill ``instance`` from a ``nova.db.models.Instance`` row.

        The flavor is filled from the row's ``extra`` when it has one.
        """
        for name in instance.fields:
            if name == 'flavor':
                continue
            value = db_instance[name]
            if name == 'deleted':
                # The column holds the row's id once deleted.
                value = bool(value)
            setattr(instance, name, value)
        extra = db_instance['extra']
        if extra is not None and extra['flavor']:
            instance.flavor = _flavor_from_json(extra['flavor'])
        instance._context = context
        instance.obj_reset_changes(recursive=True)
        return instance

    def _extra_updates(self, updates):
        """Move ``flavor`` from ``updates`` to instance_extra's values."""
        flavor = updates.pop('flavor', None)
        if flavor is None:
            return None
        return {'flavor': _flavor_to_json(flavor)}

    def obj_load_attr(self, attrname):
        """Load ``flavor`` from the database; nothing else is lazy."""
        self._check_lazy_load(attrname, ('flavor',))
        loaded = self.get_by_uuid(self._context, self.uuid)
        if 'flavor' not in loaded:
            raise exception.ObjectActionError(
                action='obj_load_attr',
                reason='instance %s has no flavor in instance_extra' %
                       self.uuid)
        self.flavor = loaded.flavor
        self.obj_reset_changes(['flavor'])

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
        updates = self.obj_get_changes()
        extra = self._extra_updates(updates)
        db_instance = db.instance_create(self._context, updates, extra=extra)
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
        extra = self._extra_updates(updates)
        db_instance = db.instance_update(self._context, self.uuid, updates,
                                         extra=extra)
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


def _flavor_to_json(flavor):
    """instance_extra.flavor as upstream writes it (no resize in flight).

    Upstream does not persist a flavor's description with an instance.
    """
    primitive = flavor.obj_to_primitive()
    data = primitive['nova_object.data']
    if 'description' in data:
        data['description'] = None
    return jsonutils.dumps({'cur': primitive, 'old': None, 'new': None})


def _flavor_from_json(text):
    """The current Flavor from instance_extra.flavor.

    :raises: ObjectActionError for a document that is not upstream's.
    """
    try:
        document = jsonutils.loads(text)
        return flavor_obj.Flavor.obj_from_primitive(document['cur'])
    except (ValueError, TypeError, KeyError) as e:
        raise exception.ObjectActionError(
            action='load flavor',
            reason='instance_extra.flavor is not a flavor document: %s' % e)


@base.NovaObjectRegistry.register
class InstanceList(base.ObjectListBase, base.NovaObject):
    # Version 1.0: Initial version
    VERSION = '1.0'
    # (Not meant to travel: upstream's InstanceList is 2.x with other
    # methods.)

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

"""The base classes and registry of this project's versioned objects."""

from oslo_versionedobjects import base as ovo_base
from oslo_versionedobjects import fields

from nova import exception

remotable = ovo_base.remotable
remotable_classmethod = ovo_base.remotable_classmethod


class NovaObjectRegistry(ovo_base.VersionedObjectRegistry):
    """Registers each object class on ``nova.objects`` by its name.

    So that ``nova.objects.BlockDeviceMapping`` is always the newest
    registered version, as in upstream Nova.
    """

    def registration_hook(self, cls, index):
        import nova.objects
        version = tuple(int(x) for x in cls.VERSION.split('.'))
        current = getattr(nova.objects, cls.obj_name(), None)
        if current is None or version >= tuple(
                int(x) for x in current.VERSION.split('.')):
            setattr(nova.objects, cls.obj_name(), cls)


class NovaObject(ovo_base.VersionedObject):
    """Base of every object: the ``nova`` namespace and the registry."""

    OBJ_SERIAL_NAMESPACE = 'nova_object'
    OBJ_PROJECT_NAMESPACE = 'nova'

    def obj_attr_is_set(self, attrname):
        """Whether ``attrname`` has a value: oslo's answer, without the
        list of every field name that oslo builds for each call. Records
        ask it of each of their fields when they are validated and
        serialised, which a bulk run does for thousands of disks.

        :raises: AttributeError if the object has no such attribute.
        """
        if attrname not in self.fields and (
                attrname not in self.obj_extra_fields):
            raise AttributeError('%s object has no attribute %r' % (
                self.obj_name(), attrname))
        return hasattr(self, '_obj_' + attrname)

    def _check_lazy_load(self, attrname, lazy):
        """Refuse to lazy-load ``attrname`` unless it is one of ``lazy``
        and this object has a context to load it with.

        :raises: ObjectActionError; OrphanedObjectError.
        """
        if attrname not in lazy:
            raise exception.ObjectActionError(
                action='obj_load_attr',
                reason='attribute %s not lazy-loadable' % attrname)
        if not self._context:
            raise exception.OrphanedObjectError(method='obj_load_attr',
                                                objtype=self.obj_name())


class NovaPersistentObject(object):
    """Mixin for objects backed by a soft-deletable table row.

    Adds the timestamp and soft-delete columns that every such table has.
    """

    fields = {
        'created_at': fields.DateTimeField(nullable=True),
        'updated_at': fields.DateTimeField(nullable=True),
        'deleted_at': fields.DateTimeField(nullable=True),
        'deleted': fields.BooleanField(default=False),
    }


class ObjectListBase(ovo_base.ObjectListBase):
    pass


NovaObjectDictCompat = ovo_base.VersionedObjectDictCompat

"""Flavor: the sizes an instance was built with, as Nova 34 carries them.

The same object name, version and fields as upstream Nova's Flavor 1.2, so
that the flavor upstream stores with an instance (JSON of this object's
primitive in ``instance_extra.flavor``) loads here, and the one this project
stores loads there. This project has no flavor table: a flavor only travels
inside its instance. ``swap`` (MiB), ``root_gb`` and ``ephemeral_gb`` are the
fields the libvirt driver reads to size local disks.
"""

from nova.objects import base
from nova.objects import fields

# The name and id of a flavor made for one instance from its sizes alone,
# as ``nova-libvirt boot`` does (there is no flavor catalogue here).
CUSTOM = 'custom'


@base.NovaObjectRegistry.register
class Flavor(base.NovaPersistentObject, base.NovaObject,
             base.NovaObjectDictCompat):
    # Version 1.0: Initial version
    # Version 1.1: Added save_projects(), save_extra_specs(), removed
    #              remotable from save()
    # Version 1.2: Added description field. Note: this field should not be
    #              persisted with the embedded instance.flavor.
    # (Upstream's history; this project carries the fields of 1.2 and none
    # of its methods, which need upstream's API database.)
    VERSION = '1.2'

    fields = {
        'id': fields.IntegerField(),
        'name': fields.StringField(nullable=True),
        'memory_mb': fields.IntegerField(),
        'vcpus': fields.IntegerField(),
        'root_gb': fields.IntegerField(),
        'ephemeral_gb': fields.IntegerField(),
        'flavorid': fields.StringField(),
        # MiB; 0 is no swap disk.
        'swap': fields.IntegerField(),
        'rxtx_factor': fields.FloatField(nullable=True, default=1.0),
        'vcpu_weight': fields.IntegerField(nullable=True),
        'disabled': fields.BooleanField(),
        'is_public': fields.BooleanField(),
        'extra_specs': fields.DictOfStringsField(),
        'projects': fields.ListOfStringsField(),
        'description': fields.StringField(nullable=True),
    }

    @classmethod
    def from_sizes(cls, root_gb=0, ephemeral_gb=0, swap=0, memory_mb=512,
                   vcpus=1):
        """A flavor of one instance, made from the sizes it asks for.

        :param root_gb: root disk size in GiB (0: the image's size).
        :param ephemeral_gb: ephemeral disk size in GiB (0: none).
        :param swap: swap disk size in MiB (0: none).
        :returns: a Flavor named and identified ``custom``, with no extra
            specs, public and enabled, as upstream would load it.
        """
        return cls(id=0, name=CUSTOM, flavorid=CUSTOM, memory_mb=memory_mb,
                   vcpus=vcpus, root_gb=root_gb, ephemeral_gb=ephemeral_gb,
                   swap=swap, rxtx_factor=1.0, vcpu_weight=None,
                   disabled=False, is_public=True, extra_specs={},
                   projects=[], description=None)

"""Every registered object's fields and remotable methods, pinned.

A change to an object's fields or remotable methods changes its fingerprint
and fails this test until the object's VERSION is bumped (with a line in its
change history, and obj_make_compatible if fields were added) and the new
fingerprint is written here.

The objects that travel to Nova 34 services are also pinned to Nova 34's own
fingerprints (from its ``nova/tests/unit/objects/test_objects.py``): without
this project's additions they must be exactly upstream's.
"""

from oslo_versionedobjects import fixture

from nova import objects
from nova.objects import base

OBJECT_DATA = {
    'BlockDeviceMapping': '1.22-f19ffec48510c211d6413c7d9df7b77f',
    'BlockDeviceMappingList': '1.19-cf6be9a92ded10a66d483e14519080b1',
    'Flavor': '1.2-f204e50207d1e747ea1e71b1eb392d5e',
    'Instance': '2.8-5e6390a2f5115f99444bd33c817092cf',
    'InstanceList': '1.0-f21c30303a62979fc64bb6f9559686af',
    'LibvirtDiskMetadata': '1.3-abcf37a6380d557f1b750cfc5451b539',
}

# Nova 34.0.0's expected fingerprints.
NOVA_34 = {
    'BlockDeviceMapping': '1.21-220abb8aa1450e759b72fce8ec6ff955',
    'BlockDeviceMappingList': '1.18-73bcbbae5ef5e8adcedbc821db869306',
}


def test_versions():
    checker = fixture.ObjectVersionChecker(
        base.NovaObjectRegistry.obj_classes())
    expected, actual = checker.test_hashes(OBJECT_DATA)
    assert expected == actual, (
        'Some objects changed: bump their VERSION and update OBJECT_DATA '
        'with these fingerprints: %s' % actual)


def test_every_registered_object_is_pinned():
    assert set(base.NovaObjectRegistry.obj_classes()) == set(OBJECT_DATA)


def _as_upstream(cls, version, drop_fields=(), drop_methods=()):
    """``cls`` without this project's additions, at upstream's version."""
    fields = {name: field for name, field in cls.fields.items()
              if name not in drop_fields}
    namespace = {'fields': fields, 'VERSION': version}
    # A name bound to None is no method: the fingerprint skips it.
    namespace.update(dict.fromkeys(drop_methods))
    return type(cls.__name__, (cls,), namespace)


def _fingerprint(cls):
    checker = fixture.ObjectVersionChecker({cls.obj_name(): [cls]})
    return checker.get_hashes()[cls.obj_name()]


def test_bdm_without_driver_info_is_nova_34s_1_21():
    objects.register_all()
    old = _as_upstream(objects.BlockDeviceMapping, '1.21',
                       drop_fields=('driver_info',))
    assert _fingerprint(old) == NOVA_34['BlockDeviceMapping']


def test_bdm_list_without_our_methods_is_nova_34s_1_18():
    objects.register_all()
    old = _as_upstream(objects.BlockDeviceMappingList, '1.18',
                       drop_methods=('save', 'get_all_with_driver_info'))
    assert _fingerprint(old) == NOVA_34['BlockDeviceMappingList']

"""Every registered object's fields and remotable methods, pinned.

A change to an object's fields or remotable methods changes its fingerprint
and fails this test until the object's VERSION is bumped (with a line in its
change history, and obj_make_compatible if fields were added) and the new
fingerprint is written here.
"""

from oslo_versionedobjects import fixture

from nova.objects import base

OBJECT_DATA = {
    'BlockDeviceMapping': '1.22-aec57f13fe6be670bbde73945c97dd3e',
    'BlockDeviceMappingList': '1.18-ef41fc25b95c17e2e29a2a9703250a76',
    'Instance': '1.0-f33431b2259ea64122b6b574d1a9a103',
    'InstanceList': '1.0-f21c30303a62979fc64bb6f9559686af',
    'LibvirtDiskMetadata': '1.2-a8b400b10f858798ccc985592dc28ce0',
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

"""The backend specs and the registry agree with the record's enums."""

from nova.objects import fields
from nova.virt.libvirt import imagebackend
from nova.virt.libvirt.imagebackend import backends
from nova.virt.libvirt.imagebackend import specs


def test_every_recordable_backend_has_a_spec():
    assert set(specs.SPECS) == set(fields.DiskBackend.ALL)


def test_every_registered_class_serves_its_spec():
    for name, cls in backends.BACKENDS.items():
        assert cls.spec is specs.SPECS[name]


def test_the_registry_holds_the_local_backends():
    assert set(backends.BACKENDS) >= {'flat', 'qcow2', 'lvm', 'ploop'}


def test_spec_formats_are_record_formats_and_qemu_knows_them():
    for spec in specs.SPECS.values():
        assert set(spec.formats) <= set(fields.DiskFormat.ALL)
        assert spec.disk_format in spec.formats + (None,)
    assert set(specs.QEMU_FORMATS) == set(fields.DiskFormat.ALL)


def test_new_disk_formats_follow_the_spec():
    assert specs.FLAT.new_disk_format('qcow2') == 'qcow2'
    assert specs.QCOW2.new_backing_format('raw') == 'raw'
    assert specs.LVM.new_backing_format('qcow2') == 'qcow2'
    assert specs.LVM.new_backing_format('raw') is None
    assert specs.PLOOP.new_disk_format('qcow2') == 'ploop'


def test_package_names_resolve_lazily_to_the_modules():
    assert imagebackend.BACKENDS is backends.BACKENDS
    assert imagebackend.Lvm is backends.BACKENDS['lvm']
    assert 'Ploop' in dir(imagebackend)

"""End to end on libvirtd with QEMU/KVM: a guest booted from a ploop image.

An image declared ``ploop`` (qemu's ``parallels``) is verified by the
fetch with this project's ploop inspector, converted to raw on its way into
the image cache, and every backend builds the root disk from that raw base
(the Ploop backend a new ploop delta). The guest starts, and QEMU opens
the root disk with the recorded format and size (``blockInfo``) and the
image's bytes.

Needs ``NOVA_TEST_LIBVIRT_URI``, as test_driver_kvm.py.
"""

import subprocess

import pytest

from nova.virt.libvirt.imagebackend import backends as disk_backends
from nova.virt.libvirt.imagebackend import file as file_image
from nova.virt.libvirt.imagebackend import specs
from tests.functional.virt.libvirt import helpers

#: The image's first bytes (the rest of its virtual size is zeros).
DATA = b'ploop image ' * 4096


@pytest.fixture
def ploop_image(context, image_api, tmp_path):
    """(metadata, path) of a ploop image imported into the store."""
    path = helpers.make_image_file(str(tmp_path), 'parallels', data=DATA)
    meta = image_api.import_file(context, path, 'ploop', name='ploop')
    return meta, path


@pytest.mark.parametrize('backend', sorted(disk_backends.BACKENDS))
def test_kvm_guest_boots_from_a_ploop_image(kvm_driver,
                                            conf, context, ploop_image,
                                            backend, request):
    driver, spawned = kvm_driver
    image_meta, image_path = ploop_image
    spec = specs.SPECS[backend]
    conf.config(group='libvirt', images_type=backend)
    # A qcow2 node keeps qcow2 images as they are: a ploop image still
    # arrives raw.
    conf.config(force_raw_images=False, use_cow_images=backend == 'qcow2')
    if spec.container == ('volume_group', 'images_volume_group'):
        conf.config(group='libvirt',
                    images_volume_group=request.getfixturevalue(
                        'lvm_vg').vg)
    assert image_meta['disk_format'] == 'ploop'
    instance, bdms = helpers.create_instance(context, image_meta,
                                             ephemeral_gb=0, ephemerals=0,
                                             swap_mb=0)
    driver.spawn(context, instance, image_meta, bdms)
    spawned.append((context, instance))

    dom = driver.host.lookup_domain(instance)
    assert dom.isActive()
    record = helpers.records(context, instance)['disk']
    assert record.backend == backend
    assert record.image_id == image_meta['id']
    # The base is the raw conversion of the image, whatever the backend.
    assert record.backing_format in (None, 'raw')
    assert dom.blockInfo('vda')[0] == record.size
    assert helpers.live_disks(dom)['vda'][0] == record.format

    # What the guest reads is the image's content.
    disk = disk_backends.backend_for(instance, record)
    target = (disk.image_path if isinstance(disk, file_image.FileImage)
              else disk.path)
    driver.power_off(context, instance)
    compare = subprocess.run(
        ['qemu-img', 'compare', '-q', '-U', '-f', disk.qemu_format,
         '-F', 'parallels', target, image_path],
        capture_output=True, text=True)
    assert compare.returncode == 0, compare.stdout + compare.stderr

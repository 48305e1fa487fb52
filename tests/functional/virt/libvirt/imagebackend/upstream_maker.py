"""Make an instance's local disks with upstream Nova 34.0.0's own code.

Run by the tests with the upstream venv's python (NOVA_TEST_UPSTREAM_PYTHON,
``-P``, from a directory outside this tree, so that this project, also
called ``nova``, cannot shadow upstream's). Everything that lays a disk
out is upstream's, unmodified: ``LibvirtDriver._create_image`` (on a driver
object made without ``__init__``, so without a libvirt connection) with the
kwargs the driver gives it, hence ``Image.cache()``, ``Flat``/``Qcow2``
``create_image``, ``disk.info``, ``fetch_to_raw`` and ``_create_ephemeral``
/ ``_create_swap``. Glance and the privsep daemon, which cannot run here,
are replaced as tools/upstream/drive.py says (shared with the benchmarks);
everything above them is upstream's.

Input: one JSON document on stdin::

    {"instances_path": "...", "images_type": "qcow2", "use_cow_images": true,
     "force_raw_images": false, "image": "/path/img.qcow2",
     "disk_format": "qcow2", "image_id": "...", "uuid": "...",
     "root_gb": 1, "ephemerals": [{"size": 1, "guest_format": "vfat"}],
     "swap_mb": 64, "os_type": null}

and, for ``images_type`` lvm, ``"volume_group"`` and ``"pv"`` (the
group's one PV: see drive.emulate_lvm_devices, which stands in for
device-mapper, which this kernel lacks).

Output (stdout): {"uuid": ..., "disks": {name: path}, "disk_info": {...}}.
"""

import json
import os
import sys

# -P keeps this script's directory off sys.path; the shared driver of
# upstream's code (Glance and privsep stand-ins) is put there by hand. That
# directory holds no ``nova``: upstream's stays the one imported.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                *['..'] * 5, 'tools', 'upstream'))
import drive  # noqa: E402


def main():
    spec = json.load(sys.stdin)
    path = spec['instances_path']
    CONF = drive.configure(path, spec['images_type'],
                           spec['use_cow_images'], spec['force_raw_images'],
                           volume_group=spec.get('volume_group'))
    if spec['images_type'] == 'lvm':
        drive.emulate_lvm_devices(spec['pv'])

    from nova import context as nova_context
    from nova import objects
    from nova.virt.libvirt import driver as libvirt_driver
    from nova.virt.libvirt import imagebackend

    drive.serve_image(spec['image_id'], spec['image'], spec['disk_format'])
    objects.register_all()
    ctx = nova_context.get_admin_context()
    ephemerals = spec.get('ephemerals') or []
    instance = drive.instance(
        ctx, spec['uuid'], spec['image_id'], spec['root_gb'],
        sum(e['size'] for e in ephemerals), spec['swap_mb'],
        os_type=spec.get('os_type'), name='legacy')

    # What blockinfo.get_disk_mapping makes for virtio disks and the
    # block_device_info the compute manager passes (ephemeral mappings are
    # disk.eph<N>, swap is a mapping of its own).
    letters = iter('abcdefghij')
    disk_mapping = {'disk': {'bus': 'virtio', 'dev': 'vd' + next(letters),
                             'type': 'disk', 'boot_index': '1'}}
    bdi_ephemerals = []
    for index, eph in enumerate(ephemerals):
        dev = 'vd' + next(letters)
        disk_mapping['disk.eph%d' % index] = {'bus': 'virtio', 'dev': dev,
                                              'type': 'disk'}
        bdi_ephemerals.append({'size': eph['size'], 'num': index,
                               'guest_format': eph.get('guest_format'),
                               'device_name': '/dev/' + dev,
                               'disk_bus': 'virtio', 'device_type': 'disk'})
    swap = {'device_name': None, 'swap_size': 0}
    if spec['swap_mb']:
        dev = 'vd' + next(letters)
        disk_mapping['disk.swap'] = {'bus': 'virtio', 'dev': dev,
                                     'type': 'disk'}
        swap = {'device_name': '/dev/' + dev, 'swap_size': spec['swap_mb']}
    block_device_info = {'root_device_name': '/dev/vda', 'image': [],
                         'ephemerals': bdi_ephemerals, 'swap': swap,
                         'block_device_mapping': []}

    drv = libvirt_driver.LibvirtDriver.__new__(libvirt_driver.LibvirtDriver)
    drv.image_backend = imagebackend.Backend(CONF.use_cow_images)
    drv._create_image(ctx, instance, disk_mapping,
                      block_device_info=block_device_info)

    inst_dir = os.path.join(path, spec['uuid'])
    disk_info = None
    if os.path.exists(os.path.join(inst_dir, 'disk.info')):
        with open(os.path.join(inst_dir, 'disk.info')) as f:
            disk_info = json.loads(f.read() or '{}')
    if spec['images_type'] == 'lvm':
        # Upstream's Lvm.path: /dev/<vg>/<uuid>_<escaped disk name>.
        disks = {name: drv.image_backend.by_name(instance, name).path
                 for name in disk_mapping}
    else:
        # Not by_name: a Flat image object probes its disk and may write
        # disk.info, which must stay as _create_image left it.
        disks = {name: os.path.join(inst_dir, name) for name in disk_mapping}
    json.dump({'uuid': spec['uuid'], 'disks': disks,
               'disk_info': disk_info}, sys.stdout)
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Make an instance's local disks with upstream Nova 34.0.0's own code.

Run by the tests with the upstream venv's python (NOVA_TEST_UPSTREAM_PYTHON,
``-P``, from a directory outside this tree, so that this project, also
called ``nova``, cannot shadow upstream's). Everything that lays a disk
out is upstream's, unmodified: ``LibvirtDriver._create_image`` (on a driver
object made without ``__init__``, so without a libvirt connection) with the
kwargs the driver gives it, hence ``Image.cache()``, ``Flat``/``Qcow2``
``create_image``, ``disk.info``, ``fetch_to_raw`` and ``_create_ephemeral``
/ ``_create_swap``. Two things are replaced, because they cannot run here:

* Glance: ``nova.image.glance._glanceclient_from_endpoint`` returns a client
  whose ``images.get`` describes a local file and whose ``images.data``
  streams it; everything above it is upstream's.
* privsep: the sys_admin context runs in this (root) process instead of a
  daemon.

Input: one JSON document on stdin::

    {"instances_path": "...", "images_type": "qcow2", "use_cow_images": true,
     "force_raw_images": false, "image": "/path/img.qcow2",
     "disk_format": "qcow2", "image_id": "...", "uuid": "...",
     "root_gb": 1, "ephemerals": [{"size": 1, "guest_format": "vfat"}],
     "swap_mb": 64, "os_type": null}

Output (stdout): {"uuid": ..., "disks": {name: path}, "disk_info": {...}}.
"""

import hashlib
import json
import os
import sys


class _Image(dict):
    """What glanceclient's v2 ``images.get`` returns: a dict with
    attributes and a schema."""

    # Which keys are the image's own (not user properties) comes from the
    # schema, as from Glance's.
    schema = {'name': 'image',
              'properties': {k: {'type': 'string'} for k in (
                  'id', 'name', 'status', 'visibility', 'protected',
                  'checksum', 'os_hash_algo', 'os_hash_value', 'owner',
                  'size', 'virtual_size', 'min_ram', 'min_disk',
                  'disk_format', 'container_format', 'created_at',
                  'updated_at', 'tags', 'os_hidden')},
              'additionalProperties': {'type': 'string'}}

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)


class _Data:
    """glanceclient's iterable-with-length of an image's bytes."""

    def __init__(self, path):
        self.path = path
        self.wrapped = self

    def __len__(self):
        return os.path.getsize(self.path)

    def __iter__(self):
        with open(self.path, 'rb') as f:
            for chunk in iter(lambda: f.read(65536), b''):
                yield chunk


class _Images:
    def __init__(self, image, path):
        self.image = image
        self.path = path

    def get(self, image_id):
        from glanceclient import exc
        if image_id != self.image['id']:
            raise exc.HTTPNotFound(image_id)
        return _Image(self.image)

    def data(self, image_id):
        self.get(image_id)
        return _Data(self.path)


class _Client:
    def __init__(self, image, path):
        self.images = _Images(image, path)


def _glance_record(spec):
    path = spec['image']
    sha512 = hashlib.sha512()
    md5 = hashlib.md5(usedforsecurity=False)
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            sha512.update(chunk)
            md5.update(chunk)
    return {'id': spec['image_id'], 'name': 'legacy', 'status': 'active',
            'visibility': 'public', 'protected': False,
            'checksum': md5.hexdigest(), 'os_hash_algo': 'sha512',
            'os_hash_value': sha512.hexdigest(), 'owner': 'legacy',
            'size': os.path.getsize(path), 'virtual_size': None,
            'min_ram': 0, 'min_disk': 0,
            'disk_format': spec['disk_format'], 'container_format': 'bare',
            'created_at': '2026-01-01T00:00:00Z',
            'updated_at': '2026-01-01T00:00:00Z', 'tags': [],
            'os_hidden': False}, path


def main():
    spec = json.load(sys.stdin)
    os.environ['OS_NOVA_DISABLE_EVENTLET_PATCHING'] = '1'

    import nova.conf
    from nova import context as nova_context
    import nova.image.glance
    from nova import objects
    import nova.privsep
    from nova.virt.libvirt import driver as libvirt_driver
    from nova.virt.libvirt import imagebackend

    CONF = nova.conf.CONF
    CONF([], project='nova', default_config_files=[], default_config_dirs=[])
    path = spec['instances_path']
    CONF.set_override('instances_path', path)
    CONF.set_override('use_cow_images', spec['use_cow_images'])
    CONF.set_override('force_raw_images', spec['force_raw_images'])
    CONF.set_override('images_type', spec['images_type'], group='libvirt')
    CONF.set_override('lock_path', os.path.join(path, 'upstream-locks'),
                      group='oslo_concurrency')
    CONF.set_override('api_servers', ['http://glance.invalid'],
                      group='glance')
    nova.privsep.sys_admin_pctxt.set_client_mode(False)
    client = _Client(*_glance_record(spec))
    nova.image.glance._glanceclient_from_endpoint = (
        lambda context, endpoint, version: client)

    objects.register_all()
    ctx = nova_context.get_admin_context()
    ephemerals = spec.get('ephemerals') or []
    flavor = objects.Flavor(
        id=1, name='legacy', flavorid='legacy', memory_mb=64, vcpus=1,
        root_gb=spec['root_gb'],
        ephemeral_gb=sum(e['size'] for e in ephemerals),
        swap=spec['swap_mb'], extra_specs={})
    instance = objects.Instance(
        context=ctx, uuid=spec['uuid'], flavor=flavor,
        image_ref=spec['image_id'], kernel_id='', ramdisk_id='',
        os_type=spec.get('os_type'), vm_mode=None, task_state=None,
        vm_state='building', trusted_certs=None, system_metadata={},
        config_drive='', migration_context=None, ephemeral_key_uuid=None,
        project_id='legacy', user_id='legacy')

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
    json.dump({'uuid': spec['uuid'],
               'disks': {name: os.path.join(inst_dir, name)
                         for name in disk_mapping},
               'disk_info': disk_info}, sys.stdout)
    return 0


if __name__ == '__main__':
    sys.exit(main())

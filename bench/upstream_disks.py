#!/usr/bin/env python3
"""Upstream Nova 34.0.0 creating one instance's local disks, for the
benchmarks (run by bench_scaling.py; not part of the project).

Run with upstream's own python (``tools/upstream/venv.sh`` prints it), with
``-P`` or from a directory outside this checkout, whose ``nova`` package
would otherwise shadow upstream's::

    $UPSTREAM_PYTHON -P bench/upstream_disks.py --image IMG \\
        --disk-format qcow2 --images-type qcow2 --instances-path DIR \\
        [--root-gb 4] [--ephemerals 1] [--ephemeral-gb 1] [--swap-mb 512] \\
        [--fresh] [--drop-caches]

Upstream code that runs as it is: ``imagebackend.Backend.by_name(...)
.cache(...)`` per disk with the fetch and template functions
LibvirtDriver._create_image passes (``libvirt_utils.fetch_image``,
``LibvirtDriver._create_ephemeral``, ``LibvirtDriver._create_swap``), so
the fetch (nova.image.glance -> nova.virt.images.fetch_to_raw: inspection,
``qemu-img info``, ``qemu-img convert -t none``), mkfs, mkswap, qemu-img
create and resize are upstream's. What this harness replaces:

* the Glance transport: ``nova.image.glance._glanceclient_from_endpoint``
  returns a client whose ``images.get`` describes the local file and whose
  ``images.data`` streams it in 64 KiB chunks, as glanceclient does;
* privsep runs in this process (client mode off), as root;
* ``processutils.execute`` is wrapped to count commands (pass-through).

The ephemeral filesystem is upstream's default for an instance without
os_type (vfat) unless ``--os-type linux`` (ext4). Only the disk creation is
timed (after imports and configuration; after the page cache is dropped
when ``--drop-caches``). Prints one JSON object: ``disks_s``, ``commands``
(argv lists), ``fetches``.
"""

import argparse
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid

GLANCE_CHUNK = 64 * 1024


def parse_args(argv):
    p = argparse.ArgumentParser()
    p.add_argument('--image', required=True)
    p.add_argument('--disk-format', required=True, choices=['raw', 'qcow2'])
    p.add_argument('--images-type', default='qcow2',
                   choices=['qcow2', 'flat'])
    p.add_argument('--force-raw', default='true', choices=['true', 'false'])
    p.add_argument('--instances-path', required=True)
    p.add_argument('--root-gb', type=int, default=4)
    p.add_argument('--ephemerals', type=int, default=0)
    p.add_argument('--ephemeral-gb', type=int, default=1)
    p.add_argument('--swap-mb', type=int, default=0)
    p.add_argument('--os-type', default=None)
    p.add_argument('--fresh', action='store_true',
                   help='empty --instances-path first (cold image cache)')
    p.add_argument('--drop-caches', action='store_true',
                   help='sync and drop the page cache right before timing')
    return p.parse_args(argv)


_CORE = ('id', 'name', 'status', 'visibility', 'protected', 'checksum',
         'os_hash_algo', 'os_hash_value', 'owner', 'size', 'virtual_size',
         'min_ram', 'min_disk', 'disk_format', 'container_format',
         'created_at', 'updated_at', 'tags', 'os_hidden')


class _Image(dict):
    """Enough of a glanceclient v2 image (a warlock model). Its schema
    must name the core properties: nova.image.glance reads any key the
    schema does not name as a custom property (no disk_format then)."""
    schema = {'name': 'image',
              'properties': {k: {'type': 'string'} for k in _CORE},
              'additionalProperties': {'type': 'string'}}

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)


class _Data:
    """Like glanceclient's iterable-with-length of an image's bytes."""

    def __init__(self, path):
        self.path = path
        self.wrapped = self
        self.length = os.path.getsize(path)

    def __len__(self):
        return self.length

    def __iter__(self):
        with open(self.path, 'rb') as f:
            while True:
                chunk = f.read(GLANCE_CHUNK)
                if not chunk:
                    return
                yield chunk


class _Images:
    def __init__(self, record, path):
        self.record, self.path, self.fetches = record, path, 0

    def get(self, image_id):
        return _Image(self.record)

    def data(self, image_id):
        self.fetches += 1
        return _Data(self.path)


class _Client:
    def __init__(self, record, path):
        self.images = _Images(record, path)


def image_record(image_id, path, disk_format):
    # Upstream verifies os_hash_value while it downloads: give the real one.
    h = hashlib.sha512()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return {'id': image_id, 'name': 'bench', 'status': 'active',
            'visibility': 'public', 'protected': False, 'checksum': None,
            'os_hash_algo': 'sha512', 'os_hash_value': h.hexdigest(),
            'owner': 'bench', 'size': os.path.getsize(path),
            'virtual_size': None, 'min_ram': 0, 'min_disk': 0,
            'disk_format': disk_format, 'container_format': 'bare',
            'created_at': '2025-01-01T00:00:00Z',
            'updated_at': '2025-01-01T00:00:00Z', 'tags': [],
            'os_hidden': False}


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
    ipath = os.path.abspath(args.instances_path)
    if args.fresh:
        shutil.rmtree(ipath, ignore_errors=True)
    os.makedirs(ipath, exist_ok=True)

    from oslo_concurrency import processutils
    from oslo_utils import units
    import nova.conf
    from nova import context as nova_context
    import nova.image.glance as nova_glance
    from nova import objects
    import nova.privsep
    import nova.privsep.fs
    from nova.objects import fields
    from nova.virt.libvirt import driver as libvirt_driver
    from nova.virt.libvirt import imagebackend
    from nova.virt.libvirt import imagecache
    from nova.virt.libvirt import utils as libvirt_utils

    CONF = nova.conf.CONF
    CONF([], project='nova', default_config_files=[], default_config_dirs=[])
    CONF.set_override('instances_path', ipath)
    CONF.set_override('use_cow_images', args.images_type == 'qcow2')
    CONF.set_override('force_raw_images', args.force_raw == 'true')
    CONF.set_override('images_type', args.images_type, group='libvirt')
    CONF.set_override('lock_path', os.path.join(ipath, 'locks'),
                      group='oslo_concurrency')
    CONF.set_override('api_servers', ['http://glance.invalid'],
                      group='glance')
    nova.privsep.sys_admin_pctxt.set_client_mode(False)

    commands = []
    real_execute = processutils.execute

    @functools.wraps(real_execute)
    def execute(*cmd, **kwargs):
        commands.append([str(c) for c in cmd])
        return real_execute(*cmd, **kwargs)
    processutils.execute = execute

    image = os.path.abspath(args.image)
    image_id = str(uuid.uuid5(uuid.NAMESPACE_URL, 'file://' + image))
    client = _Client(image_record(image_id, image, args.disk_format), image)
    nova_glance._glanceclient_from_endpoint = (
        lambda context, endpoint, version: client)

    objects.register_all()
    ctx = nova_context.get_admin_context()
    backend = imagebackend.Backend(CONF.use_cow_images)
    flavor = objects.Flavor(
        id=1, name='bench', flavorid='bench', memory_mb=512, vcpus=1,
        root_gb=args.root_gb, ephemeral_gb=args.ephemeral_gb *
        args.ephemerals, swap=args.swap_mb, extra_specs={})
    instance = objects.Instance(
        context=ctx, uuid=str(uuid.uuid4()), flavor=flavor,
        image_ref=image_id, kernel_id='', ramdisk_id='',
        os_type=args.os_type, vm_mode=None, task_state=None,
        vm_state='building', trusted_certs=None, system_metadata={},
        config_drive='', migration_context=None, ephemeral_key_uuid=None,
        project_id='bench', user_id='bench')
    os_type = nova.privsep.fs.get_fs_type_for_os_type(instance.os_type)
    extension = nova.privsep.fs.get_file_extension_for_os_type(
        os_type, CONF.default_ephemeral_format)
    vm_mode = fields.VMMode.get_from_instance(instance)

    if args.drop_caches:
        subprocess.run(['sync'], check=True)
        with open('/proc/sys/vm/drop_caches', 'w') as f:
            f.write('3\n')

    t0 = time.perf_counter()
    os.makedirs(libvirt_utils.get_instance_path(instance), exist_ok=True)
    # The call sites of LibvirtDriver._create_image (root, then the
    # ephemerals of the block device info, then swap).
    root = backend.by_name(instance, 'disk', disk_info_mapping={
        'bus': 'virtio', 'dev': 'vda', 'type': 'disk', 'boot_index': '1'})
    root.cache(fetch_func=libvirt_utils.fetch_image, context=ctx,
               filename=imagecache.get_cache_fname(image_id),
               image_id=image_id, size=args.root_gb * units.Gi,
               trusted_certs=None)
    for n in range(args.ephemerals):
        disk = backend.by_name(instance, 'disk.eph%d' % n,
                               disk_info_mapping={'bus': 'virtio',
                                                  'dev': 'vd%s' % 'bcdefghijk'
                                                  'lmnopqrst'[n],
                                                  'type': 'disk'})
        func = functools.partial(
            libvirt_driver.LibvirtDriver._create_ephemeral,
            fs_label='ephemeral%d' % n, os_type=instance.os_type,
            is_block_dev=disk.is_block_dev, vm_mode=vm_mode)
        disk.cache(fetch_func=func, context=ctx,
                   filename='ephemeral_%d_%s' % (args.ephemeral_gb,
                                                 extension),
                   size=args.ephemeral_gb * units.Gi,
                   ephemeral_size=args.ephemeral_gb, safe=True)
    if args.swap_mb:
        swap = backend.by_name(instance, 'disk.swap', disk_info_mapping={
            'bus': 'virtio', 'dev': 'vdz', 'type': 'disk'})
        swap.cache(fetch_func=libvirt_driver.LibvirtDriver._create_swap,
                   context=ctx, filename='swap_%d' % args.swap_mb,
                   size=args.swap_mb * units.Mi, swap_mb=args.swap_mb,
                   safe=True)
    disks_s = time.perf_counter() - t0

    json.dump({'disks_s': disks_s, 'commands': commands,
               'fetches': client.images.fetches,
               'ephemeral_fs': os_type}, sys.stdout)
    print()
    return 0


if __name__ == '__main__':
    sys.exit(main())

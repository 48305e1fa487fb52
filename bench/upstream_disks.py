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
import json
import os
import shutil
import subprocess
import sys
import time
import uuid

# -P keeps this script's directory off sys.path; the shared Glance and
# privsep stand-ins (tools/upstream/drive.py) are put there by hand.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'tools', 'upstream'))
import drive  # noqa: E402


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
    from nova import objects
    import nova.privsep
    import nova.privsep.fs
    from nova.objects import fields
    from nova.virt.libvirt import driver as libvirt_driver
    from nova.virt.libvirt import imagebackend
    from nova.virt.libvirt import imagecache
    from nova.virt.libvirt import utils as libvirt_utils

    CONF = drive.configure(ipath, args.images_type,
                           args.images_type == 'qcow2',
                           args.force_raw == 'true',
                           lock_path=os.path.join(ipath, 'locks'))

    commands = []
    real_execute = processutils.execute

    @functools.wraps(real_execute)
    def execute(*cmd, **kwargs):
        commands.append([str(c) for c in cmd])
        return real_execute(*cmd, **kwargs)
    processutils.execute = execute

    image = os.path.abspath(args.image)
    image_id = str(uuid.uuid5(uuid.NAMESPACE_URL, 'file://' + image))
    client = drive.serve_image(image_id, image, args.disk_format)

    objects.register_all()
    ctx = nova_context.get_admin_context()
    backend = imagebackend.Backend(CONF.use_cow_images)
    instance = drive.instance(
        ctx, str(uuid.uuid4()), image_id, args.root_gb,
        args.ephemeral_gb * args.ephemerals, args.swap_mb,
        os_type=args.os_type, name='bench')
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

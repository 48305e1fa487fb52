#!/usr/bin/env python3
"""Benchmark of a snapshot against the bare qemu-img convert, one run.

A root disk holding 1 GiB of seeded random data (``NOVA_BENCH_SNAPSHOT_MIB``
to change it) is snapshotted through ``LibvirtDriver.snapshot`` (the guest
running on libvirt's test driver, so paused and resumed around the copy),
and the same disk is copied by a bare ``qemu-img convert -f <fmt> -O
<fmt>``. Printed, for the flat (raw) and the qcow2 (overlay on a raw base)
layouts:

(a) snapshot / bare convert: what the snapshot costs over the copy
    itself;
(b) snapshot / (bare convert + ``import_file`` of its output, in one
    cold run): the snapshot against the two steps it is made of.

Each run starts with the page cache dropped (as root); ours and the
baselines alternate per layout so that load from elsewhere falls on all.
Never asserts on time. Run::

    .venv/bin/python bench/bench_snapshot.py [--dir DIR]
"""

import argparse
import os
import random
import shutil
import time

from oslo_utils import uuidutils

import nova.conf
from nova import context as nova_context
from nova.db import migration
from nova import image
from nova import objects
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import host as libvirt_host
from nova.virt.libvirt.imagebackend import manager as disk_manager
from nova.virt import qemu_img

import benchutil

CONF = nova.conf.CONF

MiB = 1 << 20
DATA_MIB = int(os.environ.get('NOVA_BENCH_SNAPSHOT_MIB', '1024'))

#: label -> (images_type, use_cow_images)
LAYOUTS = {'flat ': ('flat', False), 'qcow2': ('qcow2', True)}


def make_image(work):
    """A raw image of DATA_MIB MiB, every byte seeded random data."""
    path = os.path.join(work, 'image.raw')
    rng = random.Random(42)
    with open(path, 'wb') as f:
        for _ in range(DATA_MIB):
            f.write(rng.randbytes(MiB))
    return path


def timed(func):
    benchutil.drop_caches()
    t0 = time.perf_counter()
    result = func()
    return time.perf_counter() - t0, result


def boot(driver, context, image_meta):
    instance = objects.Instance(
        context, uuid=uuidutils.generate_uuid(), display_name='bench',
        image_ref=image_meta['id'], root_gb=0, ephemeral_gb=0, swap=0,
        vm_state='building')
    instance.create()
    objects.BlockDeviceMapping(
        context, instance_uuid=instance.uuid, source_type='image',
        destination_type='local', boot_index=0, image_id=image_meta['id'],
        device_type='disk').create()
    driver.spawn(context, instance, image_meta)
    return instance


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dir', default=None,
                        help='work directory (default: a new one in '
                             '/var/tmp; not tmpfs)')
    args = parser.parse_args(argv)

    work = benchutil.start('bench-snapshot-', args.dir)
    try:
        CONF.set_override('state_path', work)
        CONF.set_override('connection', 'sqlite:///%s/nova.sqlite' % work,
                          group='database')
        CONF.set_override('force_raw_images', True)
        migration.db_sync()
        context = nova_context.get_admin_context()
        api = image.API()
        image_meta = api.import_file(context, make_image(work), 'raw')
        host = libvirt_host.Host('test:///default')
        driver = libvirt_driver.LibvirtDriver(
            host=host, disks=disk_manager.DiskManager())
        bare_dir = os.path.join(work, 'bare')
        os.mkdir(bare_dir)

        print('root disk with %d MiB of data; one run each, page cache '
              'dropped before each' % DATA_MIB)
        for label, (images_type, cow) in LAYOUTS.items():
            CONF.set_override('images_type', images_type, group='libvirt')
            CONF.set_override('use_cow_images', cow)
            instance = boot(driver, context, image_meta)
            backend = driver.disks.local_disks(
                instance, objects.BlockDeviceMappingList.
                get_by_instance_uuid(context, instance.uuid))[0].backend
            out = os.path.join(bare_dir, 'copy')

            def convert():
                # The disk as the snapshot reads it (a descriptor of the
                # checked file, the format pinned).
                with backend.snapshot_source() as (source, fmt):
                    qemu_img.convert(source, fmt, out, fmt)

            ours_s, meta = timed(lambda: driver.snapshot(
                context, instance, 'bench'))
            bare_s, _ = timed(convert)
            os.unlink(out)

            def convert_and_import():
                # As the snapshot does: the import reads the copy just
                # written (no cache drop in between).
                convert()
                return api.import_file(context, out, meta['disk_format'])

            both_s, bare_meta = timed(convert_and_import)
            os.unlink(out)
            for image_id in (meta['id'], bare_meta['id']):
                api.delete(context, image_id)
            driver.destroy(context, instance)

            print()
            print('%s  snapshot            %8.2f s' % (label, ours_s))
            print('       bare convert        %8.2f s' % bare_s)
            print('       bare convert+import %8.2f s' % both_s)
            print('   (a) snapshot / convert  %8.2f' % (ours_s / bare_s))
            print('   (b) snapshot / (convert + import) %8.2f' % (
                ours_s / both_s))
        host.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()

#!/usr/bin/env python3
"""Benchmark of the Lvm backend against bare tools, in one run.

Prints ratios against baselines measured in the same run (absolute times on
these machines are noise), never asserts on time:

(a) a cold Lvm root disk (an empty image cache: fetch, verify, then
    ``qemu-img convert -n`` into a new logical volume, renamed into place)
    divided by the bare ``qemu-img convert -n`` of the same stored image
    into the same volume's device (target: <= 1.1); and the same for a
    second disk from the warm cache (the backend's own cost);
(b) removing a 1 GiB volume with ``volume_clear = zero`` (the wipe, then
    lvremove) divided by ``dd`` of zeros over the same device.

Needs the test volume group of tools/services/lvm.sh and its harness
(this kernel has no device-mapper: volumes are reached through loop
devices over their extents, see tests/functional/lvm_harness.py)::

    tools/with-services.sh .venv/bin/python bench/bench_lvm.py [--reps 3]

The image: 1 GiB sparse raw with 64 MiB of seeded random data at the
start, and its qcow2; the root disk is as large as the image.
"""

import argparse
import logging as std_logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

import nova.conf  # noqa: E402
from nova import image  # noqa: E402
from nova.image import local  # noqa: E402
from nova.objects import libvirt_disk  # noqa: E402
from nova.virt.libvirt.imagebackend import backends  # noqa: E402
from nova.virt.libvirt.imagebackend import cache as image_cache  # noqa
from nova.virt.libvirt.imagebackend import policy  # noqa: E402
from nova.virt.libvirt.storage import lvm  # noqa: E402
from tests.functional import lvm_harness  # noqa: E402

from bench_backends import make_images  # noqa: E402

CONF = nova.conf.CONF

MiB = 1 << 20
GiB = 1 << 30
IMAGE_SIZE = 1 * GiB


class Instance:
    def __init__(self):
        self.uuid = str(uuid.uuid4())


def run(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def timed(func):
    t0 = time.perf_counter()
    func()
    return time.perf_counter() - t0


def fresh_instances(work):
    instances = os.path.join(work, 'instances')
    shutil.rmtree(instances, ignore_errors=True)
    os.makedirs(instances)
    CONF.set_override('instances_path', instances)
    CONF.set_override('lock_path', os.path.join(instances, 'locks'),
                      group='oslo_concurrency')


def lvm_disk(vg, api, size, image_id=None, base_format='raw'):
    instance = Instance()
    record = libvirt_disk.LibvirtDiskMetadata(
        backend='lvm', format='raw', size=size, disk_name='disk',
        volume_group=vg, volume_name=policy.volume_name(instance.uuid,
                                                        'disk'),
        image_id=image_id,
        backing_format=None if base_format == 'raw' else base_format)
    return backends.backend_for(instance, record,
                                cache=image_cache.ImageCache(image_api=api))


def bare_convert(vg, src, fmt):
    """qemu-img convert -n of ``src`` into a new volume's device."""
    name = 'bench_bare_%s' % uuid.uuid4().hex[:8]
    lvm.create_volume(vg, name, IMAGE_SIZE)
    try:
        device = lvm.device_path(vg, name)
        return timed(lambda: run('qemu-img', 'convert', '-q', '-n', '-f',
                                 fmt, '-O', 'raw', src, device))
    finally:
        lvm.remove_volume(vg, name)


def root_creates(work, vg, api, image_id, fmt):
    """(cold, warm) seconds of an Lvm root disk: the first create in an
    empty cache, then a second disk from the cache it filled."""
    fresh_instances(work)
    times = []
    for _ in range(2):
        disk = lvm_disk(vg, api, IMAGE_SIZE, image_id=image_id,
                        base_format=fmt)
        try:
            times.append(timed(lambda: disk.create_from_image(None,
                                                              image_id)))
        finally:
            CONF.set_override('volume_clear', 'none', group='libvirt')
            disk.remove()
            CONF.clear_override('volume_clear', group='libvirt')
    return tuple(times)


def wipe(vg, api):
    """(Lvm remove with volume_clear = zero, dd of zeros) of 1 GiB."""
    name = 'bench_dd_%s' % uuid.uuid4().hex[:8]
    lvm.create_volume(vg, name, IMAGE_SIZE)
    try:
        device = lvm.device_path(vg, name)
        bare = timed(lambda: run(
            'dd', 'if=/dev/zero', 'of=%s' % device, 'bs=1M',
            'count=%d' % (IMAGE_SIZE // MiB), 'oflag=direct',
            'conv=fsync,notrunc', 'status=none'))
    finally:
        lvm.remove_volume(vg, name)
    fresh_instances(os.path.dirname(CONF.instances_path))
    disk = lvm_disk(vg, api, IMAGE_SIZE)
    lvm.create_volume(vg, disk.record.volume_name, IMAGE_SIZE)
    CONF.set_override('volume_clear', 'zero', group='libvirt')
    return timed(disk.remove), bare


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--reps', type=int, default=3,
                        help='runs per case (median reported)')
    parser.add_argument('--dir', default=None,
                        help='work directory (default: a new one in '
                             '/var/tmp)')
    args = parser.parse_args(argv)
    if not lvm_harness.available():
        print('bench_lvm: no test volume group; run it under '
              'tools/with-services.sh (lvm service)', file=sys.stderr)
        return 2

    CONF([], project='nova', default_config_files=[],
         default_config_dirs=[])
    std_logging.basicConfig(level=std_logging.WARNING)
    aliases = lvm_harness.install()
    vg = os.environ[lvm_harness.ENV_VG]
    work = tempfile.mkdtemp(prefix='bench-lvm-', dir=args.dir or '/var/tmp')
    try:
        CONF.set_override('state_path', work)
        images = make_images(work)
        store = local.LocalImageService(root=os.path.join(work, 'store'))
        ids = {fmt: store.import_file(None, path, fmt)['id']
               for fmt, path in images.items()}
        api = image.API(service=store)
        stored = {fmt: os.path.join(store.image_dir(i), local.DATA_NAME)
                  for fmt, i in ids.items()}

        print('image: 1 GiB raw with 64 MiB of data, and its qcow2; root '
              'disk 1 GiB on LVM; %d runs per case (medians)' % args.reps)
        print()
        print('(a) cold Lvm root: create_from_image / bare qemu-img '
              'convert -n into the same device (target <= 1.1)')
        print('%-28s %7s %9s %9s %11s %9s' % (
            'case', 'ratio', 'ours s', 'bare s', 'warm ratio', 'warm s'))
        for fmt in ('raw', 'qcow2'):
            cold, warm, bare = [], [], []
            for _ in range(args.reps):
                bare.append(bare_convert(vg, stored[fmt], fmt))
                c, w = root_creates(work, vg, api, ids[fmt], fmt)
                cold.append(c)
                warm.append(w)
            c, w, b = (statistics.median(x) for x in (cold, warm, bare))
            print('%-28s %7.2f %9.3f %9.3f %11.2f %9.3f' % (
                '%s image -> %s base' % (fmt, fmt), c / b, c, b, w / b, w))
        print()
        print('(b) remove of a 1 GiB volume, volume_clear = zero / dd of '
              'zeros over the same device')
        ours, bare = [], []
        for _ in range(args.reps):
            o, b = wipe(vg, api)
            ours.append(o)
            bare.append(b)
        o, b = statistics.median(ours), statistics.median(bare)
        print('%-28s %7.2f %9.3f %9.3f' % ('zero wipe 1 GiB', o / b, o, b))
    finally:
        lvm_harness.uninstall()
        aliases.detach_all()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

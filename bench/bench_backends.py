#!/usr/bin/env python3
"""Benchmark of the Flat and Qcow2 backends against bare tools, one run.

Prints ratios against baselines measured in the same run (absolute times on
these machines are noise), never asserts on time:

(a) cold cache: ``create_from_image`` (fetch + verify + convert into the
    cache, then the disk) divided by the bare ``qemu-img convert`` of the
    same image to raw plus a sparse ``cp`` of the result (the least any
    cold path must do: turn the image into a raw base, then a disk);
(b) warm cache: a Qcow2 ``create_from_image`` divided by a bare
    ``qemu-img create -f qcow2 -b <base> -F <fmt>``.

Also, on the cold path: bytes written to storage (``write_bytes`` of
/proc/self/io, which includes reaped children such as qemu-img) per byte
of image data, and the root disk's allocation against the image's data.

Each cold run, ours and the baseline's, starts with the page cache
dropped (as root). The image is 1 GiB sparse raw with 64 MiB of seeded
random data at the start, and its qcow2. The root disk is 2 GiB. Run::

    .venv/bin/python bench/bench_backends.py [--reps 3] [--warm-reps 20]
"""

import argparse
import logging as std_logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from oslo_concurrency import processutils
from oslo_log import log as logging

import nova.conf
from nova import image
from nova.image import local
from nova.objects import libvirt_disk
from nova.virt.libvirt import imagebackend
from nova.virt.libvirt.imagebackend import cache as image_cache
from nova.virt import qemu_img

import benchutil

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

MiB = 1 << 20
GiB = 1 << 30
IMAGE_SIZE = 1 * GiB
IMAGE_DATA = 64 * MiB
ROOT_SIZE = 2 * GiB

#: (label, backend, image format, cache format): force_raw_images on for
#: the first four, off for the last (the qcow2 image kept as it is).
COLD_CASES = [
    ('flat  raw image   -> raw base  ', 'flat', 'raw', 'raw'),
    ('flat  qcow2 image -> raw base  ', 'flat', 'qcow2', 'raw'),
    ('qcow2 raw image   -> raw base  ', 'qcow2', 'raw', 'raw'),
    ('qcow2 qcow2 image -> raw base  ', 'qcow2', 'qcow2', 'raw'),
    ('qcow2 qcow2 image -> qcow2 base', 'qcow2', 'qcow2', 'qcow2'),
]


class Instance:
    def __init__(self):
        self.uuid = str(uuid.uuid4())


def write_bytes():
    """Bytes this process and its reaped children sent to storage."""
    with open('/proc/self/io') as f:
        for line in f:
            key, _, value = line.partition(':')
            if key == 'write_bytes':
                return int(value)
    raise RuntimeError('no write_bytes in /proc/self/io')


def measure(func):
    """Run func() with a cold page cache; return (seconds, bytes written
    to storage)."""
    # What earlier steps dirtied is not charged to this one, and nothing
    # is read from memory an earlier step left.
    benchutil.drop_caches()
    io0, t0 = write_bytes(), time.perf_counter()
    func()
    os.sync()  # and what this step dirtied is charged now
    return time.perf_counter() - t0, write_bytes() - io0


def run(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def make_images(directory):
    """img.raw (1 GiB, 64 MiB of data) and img.qcow2."""
    raw = os.path.join(directory, 'img.raw')
    with open(raw, 'wb') as f:
        f.truncate(IMAGE_SIZE)
        f.write(random.Random(20250101).randbytes(IMAGE_DATA))
    qcow2 = os.path.join(directory, 'img.qcow2')
    run('qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2)
    return {'raw': raw, 'qcow2': qcow2}


def configure(instances_path):
    CONF.set_override('instances_path', instances_path)
    CONF.set_override('lock_path', os.path.join(instances_path, 'locks'),
                      group='oslo_concurrency')


def record_for(backend, cache_format, image_id):
    fields = (dict(backend='flat', format=cache_format)
              if backend == 'flat' else
              dict(backend='qcow2', format='qcow2',
                   backing_format=cache_format))
    record = libvirt_disk.LibvirtDiskMetadata(
        size=ROOT_SIZE, disk_name='disk', image_id=image_id, **fields)
    record.validate()
    return record


class CommandCounter:
    """Counts external commands (a pass-through wrapper)."""

    def __init__(self):
        self.count = 0
        # qemu-img runs bounded by prlimit, not through processutils.
        for module in (processutils, qemu_img):
            self._count(module)

    def _count(self, module):
        real = module.execute

        def execute(*cmd, **kwargs):
            self.count += 1
            return real(*cmd, **kwargs)

        module.execute = execute


def baseline_cold(work, image_path, image_format):
    """Bare ``qemu-img convert`` to raw + sparse ``cp``: (s, bytes)."""
    base = os.path.join(work, 'baseline.raw')
    disk = os.path.join(work, 'baseline.disk')

    def convert_and_copy():
        run('qemu-img', 'convert', '-f', image_format, '-O', 'raw',
            image_path, base)
        run('cp', '--sparse=always', base, disk)
        os.truncate(disk, ROOT_SIZE)

    try:
        return measure(convert_and_copy)
    finally:
        for path in (base, disk):
            if os.path.exists(path):
                os.unlink(path)


def cold_create(work, api, backend, image_id, cache_format, commands):
    """One cold-cache create in a fresh instances_path.

    :returns: (seconds, bytes written, disk allocation, commands run).
    """
    instances = os.path.join(work, 'instances')
    shutil.rmtree(instances, ignore_errors=True)
    os.makedirs(instances)
    configure(instances)
    cache = image_cache.ImageCache(image_api=api)
    disk = imagebackend.backend_for(
        Instance(), record_for(backend, cache_format, image_id), cache=cache)
    before = commands.count
    seconds, written = measure(
        lambda: disk.create_from_image(None, image_id))
    allocated = os.stat(disk.path).st_blocks * 512
    return seconds, written, allocated, commands.count - before


def warm_creates(work, api, image_id, cache_format, reps, commands):
    """Warm Qcow2 creates vs bare qemu-img create: (ours, bare, cmds)."""
    instances = os.path.join(work, 'instances')
    shutil.rmtree(instances, ignore_errors=True)
    os.makedirs(instances)
    configure(instances)
    cache = image_cache.ImageCache(image_api=api)
    record = record_for('qcow2', cache_format, image_id)
    imagebackend.backend_for(Instance(), record, cache=cache) \
        .create_from_image(None, image_id)  # warm the cache
    base = cache.image_path(image_id, cache_format)
    ours, bare, cmds = [], [], []
    for n in range(reps):
        disk = imagebackend.backend_for(Instance(), record, cache=cache)
        before = commands.count
        t0 = time.perf_counter()
        disk.create_from_image(None, image_id)
        ours.append(time.perf_counter() - t0)
        cmds.append(commands.count - before)
        target = os.path.join(work, 'bare%d.qcow2' % n)
        t0 = time.perf_counter()
        run('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base, '-F',
            cache_format, target, str(ROOT_SIZE))
        bare.append(time.perf_counter() - t0)
        os.unlink(target)
    return statistics.median(ours), statistics.median(bare), max(cmds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--reps', type=int, default=3,
                        help='cold runs per case (median reported)')
    parser.add_argument('--warm-reps', type=int, default=20,
                        help='warm Qcow2 creates (median reported)')
    parser.add_argument('--dir', default=None,
                        help='work directory on the disk to measure '
                             '(default: a new one in /var/tmp; not tmpfs, '
                             'whose writes never reach storage)')
    args = parser.parse_args(argv)

    CONF([], project='nova', default_config_files=[],
         default_config_dirs=[])
    std_logging.basicConfig(level=std_logging.WARNING)
    work = tempfile.mkdtemp(prefix='bench-backends-', dir=args.dir or
                            '/var/tmp')
    try:
        CONF.set_override('state_path', work)
        images = make_images(work)
        store = local.LocalImageService(root=os.path.join(work, 'store'))
        ids = {fmt: store.import_file(None, path, fmt)['id']
               for fmt, path in images.items()}
        api = image.API(service=store)
        commands = CommandCounter()
        store_path = {fmt: os.path.join(store.image_dir(i), local.DATA_NAME)
                      for fmt, i in ids.items()}

        print('image: 1 GiB raw with 64 MiB of data, and its qcow2; root '
              'disk 2 GiB; %d cold runs, %d warm (medians)' % (
                  args.reps, args.warm_reps))
        print()
        print('(a) cold cache: create_from_image / (qemu-img convert + cp '
              '--sparse of the same image)')
        print('%-32s %7s %9s %7s %11s %12s %5s' % (
            'case', 'ratio', 'ours s', 'base s', 'written/', 'disk alloc/',
            'cmds'))
        print('%-32s %7s %9s %7s %11s %12s %5s' % (
            '', '', '', '', 'data byte', 'image data', ''))
        for label, backend, image_format, cache_format in COLD_CASES:
            ours, base, written, allocated, cmds = [], [], [], [], 0
            for _ in range(args.reps):
                b, _bw = baseline_cold(work, store_path[image_format],
                                       image_format)
                s, w, a, c = cold_create(work, api, backend,
                                         ids[image_format], cache_format,
                                         commands)
                ours.append(s)
                base.append(b)
                written.append(w)
                allocated.append(a)
                cmds = c
            o, b = statistics.median(ours), statistics.median(base)
            print('%-32s %7.2f %9.3f %7.3f %11.2f %12.2f %5d' % (
                label, o / b, o, b,
                statistics.median(written) / IMAGE_DATA,
                statistics.median(allocated) / IMAGE_DATA, cmds))

        print()
        print('(b) warm cache: Qcow2 create_from_image / bare qemu-img '
              'create -b -F')
        print('%-32s %7s %9s %9s %5s' % ('base', 'ratio', 'ours ms',
                                         'bare ms', 'cmds'))
        for cache_format in ('raw', 'qcow2'):
            o, b, c = warm_creates(work, api, ids['qcow2'], cache_format,
                                   args.warm_reps, commands)
            print('%-32s %7.2f %9.2f %9.2f %5d' % (
                cache_format + ' base', o / b, o * 1000, b * 1000, c))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

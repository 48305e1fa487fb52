#!/usr/bin/env python3
"""Benchmark of the Lvm backend against bare tools, in one run.

Prints ratios against baselines measured in the same run (absolute times on
these machines are noise), never asserts on time. Each case runs ``--reps``
times, the sides alternating which goes first; medians are printed.

(a) A cold Lvm root disk against the bare ``qemu-img convert`` of the same
    base into the same device (target: <= 1.1). Like with like:

    * "cold" means: the base is in the image cache already (it is "the
      same base" both sides convert), the page cache is dropped before
      each run of either side (``echo 3 > /proc/sys/vm/drop_caches``, as
      root), and the logical volume does not exist yet;
    * ours: ``check_available()`` then ``create_from_image()`` of a new
      disk, i.e. everything a boot runs for the disk (the volume group
      and free-space check, the create under a temporary name, the
      convert, the rename);
    * bare, as a human would type it: ``lvcreate`` of the volume, then
      ``qemu-img convert -t none -f <fmt> -O raw -n <base> <device>``
      (ratio "vs lvcreate+convert", the issue's case); and the convert
      alone into a volume made beforehand (ratio "vs convert").
      "convert -W" adds the out-of-order writes ours uses, for
      information.

    Also printed, for information: the create with the fetch into an empty
    image cache (download, verify, then as above), which the bare side
    does not do; LVM commands per create; the time of one LVM command.
(b) A zero wipe of a 1 GiB volume (filled with data first, untimed)
    against ``dd`` of zeros over it (``bs=1M oflag=direct conv=fsync``):
    the wipe alone, and ``remove()`` with ``volume_clear = zero`` (wipe,
    then lvremove).

Needs tools/services/lvm.sh and its harness (this kernel has no
device-mapper: volumes are reached through loop devices over their
extents, see tests/functional/lvm_harness.py; finding a volume's device
costs one lvs and a losetup, on both sides). The benchmark runs on a
volume group of its own (``lvm_harness.private_group``, with the
harness's lvm.conf), out of the way of tests using the shared one::

    tools/with-services.sh .venv/bin/python bench/bench_lvm.py [--reps 5]

The image: 1 GiB sparse raw with 64 MiB of seeded random data at the
start, and its qcow2; the root disk is as large as the image.
"""

import argparse
import os
import shutil
import statistics
import sys
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
from benchutil import drop_caches, run, start  # noqa: E402

CONF = nova.conf.CONF

MiB = 1 << 20
GiB = 1 << 30
IMAGE_SIZE = 1 * GiB
LVM_COMMANDS = frozenset(('lvm', 'lvs', 'vgs', 'pvs', 'lvcreate', 'lvrename',
                          'lvextend', 'lvremove'))


class Instance:
    def __init__(self):
        self.uuid = str(uuid.uuid4())


class LvmCommandCounter:
    """Counts the LVM commands storage.lvm runs (a pass-through)."""

    def __init__(self):
        self.count = 0
        real = lvm._execute

        def execute(*cmd):
            if cmd[0] in LVM_COMMANDS:
                self.count += 1
            return real(*cmd)

        lvm._execute = execute


def timed(func):
    t0 = time.perf_counter()
    func()
    return time.perf_counter() - t0


def cold(func):
    """Seconds of ``func`` from a dropped page cache."""
    drop_caches()
    return timed(func)


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


def remove_unwiped(disk):
    CONF.set_override('volume_clear', 'none', group='libvirt')
    try:
        disk.remove()
    finally:
        CONF.clear_override('volume_clear', group='libvirt')


def bench_name():
    return 'bench_%s' % uuid.uuid4().hex[:8]


def convert_cmd(base, fmt, device, out_of_order=False):
    return (['qemu-img', 'convert', '-q', '-t', 'none', '-f', fmt, '-O',
             'raw'] + (['-W'] if out_of_order else []) + ['-n', base, device])


def bare_create(vg, base, fmt):
    """lvcreate, then qemu-img convert into its device, from cold."""
    name = bench_name()

    def create_and_convert():
        lvm.create_volume(vg, name, IMAGE_SIZE)
        run(*convert_cmd(base, fmt, lvm.device_path(vg, name)))

    try:
        return cold(create_and_convert)
    finally:
        lvm.remove_volume(vg, name)


def bare_converts(vg, base, fmt):
    """(convert, convert -W) into a volume made beforehand, from cold."""
    name = bench_name()
    lvm.create_volume(vg, name, IMAGE_SIZE)
    try:
        device = lvm.device_path(vg, name)
        return tuple(cold(lambda: run(*convert_cmd(base, fmt, device, w)))
                     for w in (False, True))
    finally:
        lvm.remove_volume(vg, name)


def our_create(vg, api, image_id, fmt, counter):
    """(seconds, LVM commands) of check_available + create_from_image of
    a new disk, from cold."""
    disk = lvm_disk(vg, api, IMAGE_SIZE, image_id=image_id, base_format=fmt)
    before = counter.count

    def create():
        disk.check_available()
        disk.create_from_image(None, image_id)

    try:
        return cold(create), counter.count - before
    finally:
        remove_unwiped(disk)


def lvm_command_seconds(vg, reps=9):
    """Median seconds of one LVM command (a vgs of the group)."""
    return statistics.median(
        timed(lambda: lvm.volume_group_info(vg)) for _ in range(reps))


def root_disks(work, vg, api, ids, reps):
    counter = LvmCommandCounter()
    print('(a) cold Lvm root (base cached, page cache dropped, no volume '
          'yet): ours = check_available + create_from_image; target <= 1.1')
    print('%-24s %9s %9s %8s %8s %8s %8s %6s' % (
        'case', 'vs lvc+cv', 'vs convert', 'ours s', 'lvc+cv s',
        'conv s', 'conv-W s', 'lvm'))
    fetched = {}
    for fmt in ('raw', 'qcow2'):
        fresh_instances(work)
        # The fetch case (information): the first create fills the cache.
        disk = lvm_disk(vg, api, IMAGE_SIZE, image_id=ids[fmt],
                        base_format=fmt)
        fetched[fmt] = cold(lambda: (disk.check_available(),
                                     disk.create_from_image(None,
                                                            ids[fmt])))
        remove_unwiped(disk)
        base = disk.cache.image_path(ids[fmt], fmt)
        ours, commands, bare, conv, conv_w = [], [], [], [], []
        for rep in range(reps):
            sides = [
                lambda: ours.append(our_create(vg, api, ids[fmt], fmt,
                                               counter)),
                lambda: bare.append(bare_create(vg, base, fmt)),
                lambda: (lambda c: (conv.append(c[0]),
                                    conv_w.append(c[1])))(
                    bare_converts(vg, base, fmt)),
            ]
            for side in (sides if rep % 2 == 0 else reversed(sides)):
                side()
        commands = [c for _s, c in ours]
        o, b, c, cw = (statistics.median(x) for x in (
            [s for s, _c in ours], bare, conv, conv_w))
        print('%-24s %9.2f %9.2f %8.3f %8.3f %8.3f %8.3f %6d' % (
            '%s image, %s base' % (fmt, fmt), o / b, o / c, o, b, c, cw,
            max(commands)))
    print()
    print('information: with the fetch into an empty image cache (the '
          'bare side does not fetch), one run each')
    for fmt, seconds in fetched.items():
        print('%-24s %8.3f s' % ('%s image, %s base' % (fmt, fmt), seconds))
    print('one LVM command (vgs): %.1f ms' % (
        lvm_command_seconds(vg) * 1000))


def filled_volume(vg, data):
    """A new 1 GiB volume full of ``data``'s bytes: (name, device)."""
    name = bench_name()
    lvm.create_volume(vg, name, IMAGE_SIZE)
    device = lvm.device_path(vg, name)
    run('dd', 'if=%s' % data, 'of=%s' % device, 'bs=4M', 'oflag=direct',
        'conv=notrunc', 'status=none')
    return name, device


def wipes(work, vg, api, reps):
    """(b): zero wipe of 1 GiB against dd of zeros."""
    data = os.path.join(work, 'data.1g')
    chunk = os.urandom(64 * MiB)
    with open(data, 'wb') as f:
        for _ in range(IMAGE_SIZE // len(chunk)):
            f.write(chunk)
    dd, wipe, remove = [], [], []

    def bare():
        name, device = filled_volume(vg, data)
        try:
            dd.append(cold(lambda: run(
                'dd', 'if=/dev/zero', 'of=%s' % device, 'bs=1M',
                'count=%d' % (IMAGE_SIZE // MiB), 'oflag=direct',
                'conv=fsync,notrunc', 'status=none')))
        finally:
            lvm.remove_volume(vg, name)

    def ours_wipe():
        name, device = filled_volume(vg, data)
        try:
            wipe.append(cold(lambda: lvm.clear_volume(device, IMAGE_SIZE,
                                                      'zero')))
        finally:
            lvm.remove_volume(vg, name)

    def ours_remove():
        disk = lvm_disk(vg, api, IMAGE_SIZE)
        filled = filled_volume(vg, data)[0]
        lvm.rename_volume(vg, filled, disk.record.volume_name)
        CONF.set_override('volume_clear', 'zero', group='libvirt')
        try:
            remove.append(cold(disk.remove))
        finally:
            CONF.clear_override('volume_clear', group='libvirt')

    for rep in range(reps):
        sides = [bare, ours_wipe, ours_remove]
        for side in (sides if rep % 2 == 0 else reversed(sides)):
            side()
    d, w, r = (statistics.median(x) for x in (dd, wipe, remove))
    print('(b) zero wipe of a 1 GiB volume full of data / dd of zeros over '
          'it (dd: %.3f s)' % d)
    print('%-24s %9.2f %8.3f' % ('wipe (clear_volume)', w / d, w))
    print('%-24s %9.2f %8.3f' % ('remove(), zero', r / d, r))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--reps', type=int, default=5,
                        help='runs per case (median reported)')
    parser.add_argument('--dir', default=None,
                        help='work directory (default: a new one in '
                             '/var/tmp)')
    args = parser.parse_args(argv)
    if not lvm_harness.available():
        print('bench_lvm: no test volume group; run it under '
              'tools/with-services.sh (lvm service)', file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print('bench_lvm: must run as root (drops the page cache)',
              file=sys.stderr)
        return 2

    work = start('bench-lvm-', args.dir)
    try:
        with lvm_harness.private_group(4 * GiB, work) as private:
            os.environ.update(private)
            return bench(work, args.reps)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench(work, reps):
    aliases = lvm_harness.install()
    vg = os.environ[lvm_harness.ENV_VG]
    try:
        CONF.set_override('state_path', work)
        images = make_images(work)
        store = local.LocalImageService(root=os.path.join(work, 'store'))
        ids = {fmt: store.import_file(None, path, fmt)['id']
               for fmt, path in images.items()}
        api = image.API(service=store)
        print('image: 1 GiB raw with 64 MiB of data, and its qcow2; root '
              'disk 1 GiB on LVM; %d runs per case (medians)' % reps)
        print()
        root_disks(work, vg, api, ids, reps)
        print()
        wipes(work, vg, api, reps)
    finally:
        lvm_harness.uninstall()
        aliases.detach_all()
    return 0


if __name__ == '__main__':
    sys.exit(main())

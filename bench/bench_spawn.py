#!/usr/bin/env python3
"""Benchmark of a whole spawn with a warm cache, against bare tools and
against upstream Nova, all measured in one run.

Prints (medians of --reps warm spawns; never asserts on time):

(a) a 4-disk instance (root 2 GB from the image, two 1 GB vfat ephemerals,
    512 MB swap) spawned through LibvirtDriver (records planned and saved,
    disks created, guest XML built, domain defined and started on
    libvirt's test driver) divided by the same external commands run bare
    (the argv each spawn ran, e.g. ``qemu-img create -f qcow2 -b <base>
    -F raw <disk> <size>`` per disk, into a scratch directory; for the
    flat backend, which runs none, ``cp --sparse=always`` of each disk's
    cache entry);
(b) external commands and database round trips (statements, and write
    transactions) per spawn;
(c) upstream Nova 34.0.0's warm creation of the disks it makes (root,
    ephemeral, swap; bench/upstream_disks.py in upstream's own venv) on
    the same image, alternating with our creation of the same three disks
    within a spawn (disks against disks): the ratio, and both command
    counts;
(d) the same with a cold cache (ours: the cache emptied; upstream: a fresh
    instances path), the page cache dropped before each run on both
    sides, alternating, ``--cold-reps`` pairs.

Ephemeral disks are vfat on both sides: upstream's default for an
instance without os_type. The image is 1 GiB sparse raw with 64 MiB of
seeded random data, and its qcow2, made here. Run (as root, for the cold
runs)::

    .venv/bin/python bench/bench_spawn.py [--reps 5] [--backend qcow2|flat]
"""

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

from oslo_concurrency import processutils
from oslo_utils import uuidutils
import sqlalchemy as sa

import nova.conf
from nova import context as nova_context
from nova.db import api as db_api
from nova.db import migration
from nova import image
from nova import objects
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import host as libvirt_host
from nova.virt.libvirt.imagebackend import cache as image_cache
from nova.virt.libvirt.imagebackend import manager as disk_manager
from nova.virt import qemu_img
from nova.virt import staging

import benchutil

CONF = nova.conf.CONF

MiB = 1 << 20
GiB = 1 << 30
#: backend -> image format
CONFIGS = {'qcow2': 'qcow2', 'flat': 'raw'}


class Recorder:
    """External commands (argv, seconds) and SQL statements of a spawn.

    processutils.execute and qemu_img.execute are wrapped (pass-through)
    because every tool this project runs goes through one of them;
    statements are counted by the engine's own events.
    """

    def __init__(self, engine):
        self.commands = []
        self.statements = []
        self.write_transactions = 0
        self._pending_write = False
        self._spy(processutils, 'execute')
        # qemu-img runs bounded by prlimit, not through processutils.
        self._spy(qemu_img, 'execute', ('qemu-img',))
        sa.event.listen(engine, 'before_cursor_execute', self._on_execute)
        sa.event.listen(engine, 'commit', self._on_commit)

    def _spy(self, module, name, prefix=()):
        real = getattr(module, name)

        def execute(*cmd, **kwargs):
            # Tools get files as /proc/<pid>/fd/<n>: keep the name each
            # stands for, to run the same command bare afterwards.
            named = tuple(_name_of(a) for a in cmd)
            t0 = time.perf_counter()
            try:
                return real(*cmd, **kwargs)
            finally:
                self.commands.append((prefix + named,
                                      time.perf_counter() - t0))

        setattr(module, name, execute)

    def _on_execute(self, conn, cursor, statement, params, ctx, many):
        verb = statement.split(None, 1)[0].upper()
        self.statements.append(verb)
        if verb in ('INSERT', 'UPDATE', 'DELETE'):
            self._pending_write = True

    def _on_commit(self, conn):
        if self._pending_write:
            self.write_transactions += 1
        self._pending_write = False

    def reset(self):
        self.commands.clear()
        self.statements.clear()
        self.write_transactions = 0


def _name_of(arg):
    """The file a descriptor path (staging.fd_path) names, else ``arg``."""
    if isinstance(arg, str) and staging.is_fd_path(arg):
        return os.readlink(arg)
    return arg


def make_images(directory):
    """img.raw (1 GiB, 64 MiB of data at the start) and its qcow2."""
    raw = os.path.join(directory, 'img.raw')
    with open(raw, 'wb') as f:
        f.truncate(GiB)
        f.write(random.Random(20250101).randbytes(64 * MiB))
    qcow2 = os.path.join(directory, 'img.qcow2')
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw,
                    qcow2], check=True)
    return {'raw': raw, 'qcow2': qcow2}


def create_instance(context, image_meta, ephemerals, swap=512):
    """An instance with root 2 GB, ``ephemerals`` x 1 GB vfat, then swap
    of ``swap`` MB (0: none)."""
    instance = objects.Instance(
        context, uuid=uuidutils.generate_uuid(), image_ref=image_meta['id'],
        root_gb=2, ephemeral_gb=1 if ephemerals else 0, vm_state='building',
        flavor=objects.Flavor.from_sizes(2, 1 if ephemerals else 0, swap))
    instance.create()
    mappings = [dict(source_type='image', destination_type='local',
                     boot_index=0, image_id=image_meta['id'])]
    mappings += [dict(source_type='blank', destination_type='local',
                      boot_index=-1, guest_format='vfat', volume_size=1)
                 ] * ephemerals
    if swap:
        mappings.append(dict(source_type='blank', destination_type='local',
                             boot_index=-1, guest_format='swap',
                             volume_size=swap))
    for values in mappings:
        objects.BlockDeviceMapping(context, instance_uuid=instance.uuid,
                                   **values).create()
    return instance


def bare_baseline(commands, instance_dir, disks, scratch):
    """Seconds to run the spawn's own commands bare (no Python around
    them), into ``scratch`` instead of the instance directory; for a spawn
    that ran none (flat), ``cp --sparse=always`` of each disk's source."""
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    argvs = [[a.replace(instance_dir, scratch) if isinstance(a, str)
              else str(a) for a in cmd] for cmd, _ in commands]
    if not argvs:
        argvs = [['cp', '--sparse=always', src, os.path.join(scratch, name)]
                 for name, src in disks]
    total = 0.0
    for argv in argvs:
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True,
                       env=dict(os.environ, LC_ALL='C', LANG='C'))
        total += time.perf_counter() - t0
    return total, argvs


def disk_sources(driver, context, instance):
    """[(disk name, cache entry path)] of a spawned instance's disks."""
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        context, instance.uuid)
    cache = image_cache.get_cache()
    result = []
    for disk in driver.disks.local_disks(instance, bdms):
        record = disk.record
        src = (cache.image_path(record.image_id,
                                record.backing_format or record.format)
               if record.image_id else cache.template_path(record.cache_name))
        result.append((record.disk_name, src))
    return result


def spawn_once(driver, context, instance, image_meta, recorder, scratch,
               timer):
    """One warm spawn of ``instance``, then the same commands bare; the
    instance is destroyed afterwards (not timed)."""
    recorder.reset()
    timer.seconds = 0.0
    t0 = time.perf_counter()
    driver.spawn(context, instance, image_meta)
    spawn_s = time.perf_counter() - t0
    result = {'spawn_s': spawn_s, 'disks_s': timer.seconds,
              'commands': len(recorder.commands),
              'statements': len(recorder.statements),
              'write_transactions': recorder.write_transactions}
    instance_dir = os.path.join(CONF.instances_path, instance.uuid)
    result['bare_s'], result['argvs'] = bare_baseline(
        list(recorder.commands), instance_dir,
        disk_sources(driver, context, instance), scratch)
    driver.destroy(context, instance)
    return result


def summarize(runs):
    """Medians of the times, maxima of the counts."""
    return {'spawn_s': statistics.median(r['spawn_s'] for r in runs),
            'disks_s': statistics.median(r['disks_s'] for r in runs),
            'bare_s': statistics.median(r['bare_s'] for r in runs),
            'commands': max(r['commands'] for r in runs),
            'statements': max(r['statements'] for r in runs),
            'write_transactions': max(r['write_transactions'] for r in runs),
            'argvs': runs[-1]['argvs']}


class Upstream:
    """Upstream Nova 34.0.0 creating root, ephemeral and swap
    (bench/upstream_disks.py), one instance per call, on one instances
    path kept warm."""

    def __init__(self, backend, image_path, work):
        self.backend = backend
        self.image_path = image_path
        self.work = work
        self.instances = os.path.join(work, 'upstream-instances')
        self.cold_instance()  # the cold instance warms the cache

    def _run(self, fresh):
        report = benchutil.upstream_disks(
            self.work, self.image_path, CONFIGS[self.backend],
            self.instances, fresh, backend=self.backend, ephemerals=1,
            swap_mb=512, root_gb=2)
        return {'total_s': report['disks_s'],
                'commands': len(report['commands'])}

    def warm_instance(self):
        return self._run(fresh=False)

    def cold_instance(self):
        return self._run(fresh=True)


def cold_spawn(driver, context, image_meta, recorder, timer):
    """One 3-disk spawn with the image cache emptied and the page cache
    dropped first (the image store keeps the image, as Glance would);
    destroyed afterwards."""
    shutil.rmtree(image_cache.get_cache().base_dir, ignore_errors=True)
    instance = create_instance(context, image_meta, 1)
    recorder.reset()
    timer.seconds = 0.0
    benchutil.drop_caches()
    t0 = time.perf_counter()
    driver.spawn(context, instance, image_meta)
    result = {'spawn_s': time.perf_counter() - t0, 'disks_s': timer.seconds,
              'commands': len(recorder.commands)}
    driver.destroy(context, instance)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--reps', type=int, default=5,
                        help='warm spawns per series (medians reported)')
    parser.add_argument('--backend', choices=sorted(CONFIGS),
                        default='qcow2', help='images_type of the spawns')
    parser.add_argument('--cold-reps', type=int, default=3,
                        help='cold spawns of ours and upstream (pairs)')
    parser.add_argument('--dir', default=None,
                        help='work directory (default: a new one in '
                             '/var/tmp; not tmpfs)')
    args = parser.parse_args(argv)

    work = benchutil.start('bench-spawn-', args.dir)
    try:
        image_format = CONFIGS[args.backend]
        CONF.set_override('state_path', work)
        CONF.set_override('connection', 'sqlite:///%s/nova.sqlite' % work,
                          group='database')
        CONF.set_override('images_type', args.backend, group='libvirt')
        CONF.set_override('use_cow_images', args.backend == 'qcow2')
        CONF.set_override('force_raw_images', True)
        migration.db_sync()
        context = nova_context.get_admin_context()
        images = make_images(work)
        image_meta = image.API().import_file(context, images[image_format],
                                             image_format)
        host = libvirt_host.Host('test:///default')
        manager = disk_manager.DiskManager()
        driver = libvirt_driver.LibvirtDriver(host=host, disks=manager)
        timer = benchutil.DiskTimer(manager)
        recorder = Recorder(db_api.get_engine())
        scratch = os.path.join(work, 'bare')

        # Cold: fetch, convert, mkfs, mkswap once; the cache is then warm.
        cold = create_instance(context, image_meta, 2)
        recorder.reset()
        t0 = time.perf_counter()
        driver.spawn(context, cold, image_meta)
        cold_s = time.perf_counter() - t0
        cold_cmds = len(recorder.commands)
        driver.destroy(context, cold)

        # Ours and upstream's alternate, so that load from anything else
        # on the machine falls on both alike.
        upstream = Upstream(args.backend, images[image_format], work)
        four_runs, three_runs, upstream_runs = [], [], []
        for _ in range(args.reps):
            four_runs.append(spawn_once(
                driver, context, create_instance(context, image_meta, 2),
                image_meta, recorder, scratch, timer))
            three_runs.append(spawn_once(
                driver, context, create_instance(context, image_meta, 1),
                image_meta, recorder, scratch, timer))
            upstream_runs.append(upstream.warm_instance())
        cold_runs, upstream_cold_runs = [], []
        for _ in range(args.cold_reps):
            cold_runs.append(cold_spawn(driver, context, image_meta,
                                        recorder, timer))
            upstream_cold_runs.append(upstream.cold_instance())
        host.close()
        four, three = summarize(four_runs), summarize(three_runs)

        print('backend %s (force_raw_images=True), %s image of 1 GiB with '
              '64 MiB of data; medians of %d warm spawns' % (
                  args.backend, image_format, args.reps))
        print()
        print('(a) warm 4-disk spawn (root 2 GB, 2 x ephemeral 1 GB, swap '
              '512 MB) / its commands run bare')
        print('    spawn           %8.1f ms' % (four['spawn_s'] * 1000))
        print('    bare commands   %8.1f ms  (%s)' % (
            four['bare_s'] * 1000, '; '.join(
                ' '.join(a[:3]) + ' ...' for a in four['argvs'])))
        print('    ratio           %8.2f' % (four['spawn_s'] /
                                             four['bare_s']))
        print()
        print('(b) per warm 4-disk spawn: %d external commands, %d SQL '
              'statements (the mappings read, one UPDATE of the 4 '
              'records), %d write transaction(s)' % (
                  four['commands'], four['statements'],
                  four['write_transactions']))
        print('    cold 4-disk spawn (fetch + convert + mkfs + mkswap): '
              '%.2f s, %d commands' % (cold_s, cold_cmds))
        print()
        up_s = statistics.median(r['total_s'] for r in upstream_runs)
        print('(c) warm 3-disk spawn (root 2 GB, ephemeral 1 GB, swap 512 '
              'MB), our disks vs upstream Nova 34.0.0 creating the same '
              'disks')
        print('    ours            %8.1f ms of disks, %d commands (the whole '
              'spawn: %.1f ms)' % (three['disks_s'] * 1000,
                                   three['commands'],
                                   three['spawn_s'] * 1000))
        print('    upstream        %8.1f ms, %d commands' % (
            up_s * 1000, max(r['commands'] for r in upstream_runs)))
        print('    ratio           %8.2f  (ours / upstream; per pair: %s)' % (
            three['disks_s'] / up_s, ' '.join(
                '%.2f' % (o['disks_s'] / u['total_s'])
                for o, u in zip(three_runs, upstream_runs))))
        print()
        print('(d) cold 3-disk spawn (fetch, convert if needed, templates), '
              'our disks vs upstream Nova 34.0.0, page cache dropped '
              'before each, %d alternating pairs' % args.cold_reps)
        ours_cold = statistics.median(r['disks_s'] for r in cold_runs)
        up_cold = statistics.median(r['total_s'] for r in upstream_cold_runs)
        print('    ours            %8.1f ms, %d commands' % (
            ours_cold * 1000, max(r['commands'] for r in cold_runs)))
        print('    upstream        %8.1f ms, %d commands' % (
            up_cold * 1000, max(r['commands'] for r in upstream_cold_runs)))
        print('    ratio           %8.2f  (ours / upstream; per pair: %s)' % (
            ours_cold / up_cold, ' '.join(
                '%.2f' % (o['disks_s'] / u['total_s'])
                for o, u in zip(cold_runs, upstream_cold_runs))))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python3
"""How the cost of disks scales with data, disks and instances, against
upstream Nova 34.0.0 and against the bare commands, all in one run.

Prints ratios against baselines measured in the same run (medians of
--reps; never asserts on time). Every cold measure, on every side, starts
with ``sync; echo 3 > /proc/sys/vm/drop_caches`` (needs root), so that no
side reads the image from memory another side left there.

data
    A 4 GiB image holding 64 MiB, 256 MiB (and with NOVA_BENCH_FULL=1
    also 1 GiB and 4 GiB) of data, raw and qcow2. Cold root disk (4 GiB,
    Qcow2 backend, force_raw_images: fetch, verify, convert to a raw
    base, overlay) through our backend, against upstream's own
    imagebackend creating the same root disk in its own venv
    (bench/upstream_disks.py; disks against disks), and against the bare
    commands: ``qemu-img convert -t none`` of the image to raw,
    ``cp --sparse=always`` of the image, and hashlib over the image. Both
    sides verify the same hash, sha512 (Glance's default ``os_hash_algo``;
    upstream is handed it, the local store is set to it). Both sides
    return with their files on storage: ours fsyncs the base, upstream
    fsyncs its download and converts with ``-t none``. cpu/up is hashlib
    over the image's bytes from memory against upstream, the lowest ratio
    any verified fetch can reach.

disks
    Warm spawns of 1, 4 and 16 disks (root, vfat ephemerals, swap; vfat
    is upstream's default for an instance without os_type, so both sides
    run the same mkfs): our whole spawn through LibvirtDriver (libvirt's
    test driver) against its own commands run bare plus one database
    write transaction; our disk creation alone against upstream's creation
    of the same disks. Our spawn makes the disks
    ``[libvirt]/disk_create_concurrency`` at a time; the same spawn with 1
    shows its overhead over the same commands run one after the other.

instances
    1, 4 and 16 concurrent cold boots of one image (``nova-libvirt boot``,
    separate processes, one state directory): wall time against one cold
    boot plus that many warm boots run one after the other, and the number
    of fetches (the processes' "Fetched image" log lines), which must be 1.

reflink
    Warm root disks over a 1 GiB raw base holding 1 GiB of data, in an
    instances path on a reflink XFS (NOVA_TEST_XFS_DIR, made by
    tools/services/xfs.sh) and on the work directory's filesystem: a Flat
    disk (a reflink on XFS, a sparse copy elsewhere) against a Qcow2
    overlay on the same filesystem.

NOVA_BENCH_FULL=1 measures every data size of the issue (4 GiB of data
takes minutes per side); NOVA_BENCH_DATA_MIB=64,1024 picks sizes.

Run (as root; upstream's venv from ``bash tools/upstream/venv.sh``, or
NOVA_TEST_UPSTREAM_PYTHON)::

    .venv/bin/python bench/bench_scaling.py [data disks instances] \\
        [--reps 1] [--backend qcow2|flat]
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import sqlalchemy as sa

import nova.conf
from nova import context as nova_context
from nova.db import api as db_api
from nova.db import migration
from nova import image
from nova.image import local
from nova.objects import libvirt_disk
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import host as libvirt_host
from nova.virt.libvirt import imagebackend
from nova.virt.libvirt.imagebackend import cache as image_cache
from nova.virt.libvirt.imagebackend import manager as disk_manager
from nova.virt import qemu_img

import bench_spawn
import benchutil
from benchutil import drop_caches
from benchutil import run
from benchutil import upstream_disks

CONF = nova.conf.CONF
MiB = 1 << 20
GiB = 1 << 30
FULL = os.environ.get('NOVA_BENCH_FULL', '') not in ('', '0')
DATA_SIZES = ([64 * MiB, 256 * MiB, GiB, 4 * GiB] if FULL
              else [64 * MiB, 256 * MiB])
if os.environ.get('NOVA_BENCH_DATA_MIB'):
    DATA_SIZES = [int(n) * MiB
                  for n in os.environ['NOVA_BENCH_DATA_MIB'].split(',')]
IMAGE_SIZE = 4 * GiB
DISK_COUNTS = (1, 4, 16)
INSTANCE_COUNTS = (1, 4, 16)


# ---------------------------------------------------------------- helpers

def timed(func, cold=True):
    if cold:
        drop_caches()
    t0 = time.perf_counter()
    func()
    return time.perf_counter() - t0


def make_image(directory, data, fmt):
    """A 4 GiB raw image with ``data`` bytes of random data spread in
    64 MiB runs (or its qcow2); returns its path."""
    raw = os.path.join(directory, 'img-%d.raw' % (data // MiB))
    if not os.path.exists(raw):
        run_size = min(data, 64 * MiB)
        block = random.Random(data).randbytes(run_size)
        runs = data // run_size
        stride = IMAGE_SIZE // runs
        with open(raw, 'wb') as f:
            f.truncate(IMAGE_SIZE)
            for n in range(runs):
                f.seek(n * stride)
                f.write(block)
    if fmt == 'raw':
        return raw
    qcow2 = raw[:-len('raw')] + 'qcow2'
    if not os.path.exists(qcow2):
        run('qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2)
    return qcow2


#: The image's os_hash_algo on both sides (see the module docstring).
#: (bench/upstream_disks.py gives upstream's image record sha512.)
HASH_ALGO = 'sha512'


def hash_file(path):
    h = hashlib.new(HASH_ALGO)
    with open(path, 'rb', buffering=0) as f:
        for chunk in iter(lambda: f.read(8 * MiB), b''):
            h.update(chunk)
    return h.hexdigest()


def median(values):
    return statistics.median(values) if values else float('nan')


# ------------------------------------------------------------------- data

class Instance:
    def __init__(self):
        self.uuid = str(uuid.uuid4())


def our_cold_root(work, api, image_id, backend):
    """Our cold root disk (4 GiB, raw base) in a fresh instances_path."""
    instances = os.path.join(work, 'ours')
    shutil.rmtree(instances, ignore_errors=True)
    os.makedirs(instances)
    CONF.set_override('instances_path', instances)
    CONF.set_override('lock_path', os.path.join(instances, 'locks'),
                      group='oslo_concurrency')
    fields = (dict(backend='flat', format='raw') if backend == 'flat' else
              dict(backend='qcow2', format='qcow2', backing_format='raw'))
    record = libvirt_disk.LibvirtDiskMetadata(
        size=IMAGE_SIZE, disk_name='disk', image_id=image_id, **fields)
    record.validate()
    disk = imagebackend.backend_for(
        Instance(), record, cache=image_cache.ImageCache(image_api=api))
    return timed(lambda: disk.create_from_image(None, image_id))


def bare_cold(work, path, fmt):
    """{command: seconds} of the bare commands on the image, each cold."""
    out = os.path.join(work, 'bare.out')
    result = {}

    def convert():
        run('qemu-img', 'convert', '-q', '-t', 'none', '-f', fmt, '-O', 'raw',
            path, out)
        os.sync()

    def copy():
        run('cp', '--sparse=always', path, out)
        os.sync()

    for name, func in (('convert', convert), ('cp', copy),
                       ('hash', lambda: hash_file(path))):
        if os.path.exists(out):
            os.unlink(out)
        result[name] = timed(func)
    if os.path.exists(out):
        os.unlink(out)
    return result


def cpu_hash_seconds(size):
    """Seconds hashlib takes over ``size`` bytes already in memory: the
    least time any fetch that verifies the image's hash can take."""
    block = bytes(64 * MiB)
    h = hashlib.new(HASH_ALGO)
    t0 = time.perf_counter()
    for _ in range(size // len(block)):
        h.update(block)
    return time.perf_counter() - t0


def section_data(work, reps, backend, formats):
    CONF.set_override('hashing_algorithm', HASH_ALGO, group='image_store')
    store = local.LocalImageService(root=os.path.join(work, 'store'))
    api = image.API(service=store)
    images = os.path.join(work, 'images')
    os.makedirs(images, exist_ok=True)
    print('data: cold root disk of 4 GiB from a 4 GiB image, backend %s '
          '(force_raw_images), medians of %d; page cache dropped before '
          'every run' % (backend, reps))
    print('  cpu/up: hashlib over the image from memory, against upstream: '
          'no verified fetch can go below it')
    print('%6s %5s %8s %8s %8s %8s %8s %8s %8s %9s %8s %8s' % (
        'data', 'fmt', 'ours s', 'upstr s', 'ours/up', 'convert', 'cp',
        HASH_ALGO, 'floor', 'ours/flr', 'flr/up', 'cpu/up'))
    for data in DATA_SIZES:
        for fmt in formats:
            path = make_image(images, data, fmt)
            meta = store.import_file(None, path, fmt)
            stored = os.path.join(store.image_dir(meta['id']),
                                  local.DATA_NAME)
            if fmt == 'qcow2':
                os.unlink(path)  # the store holds its copy
            ours, ups, bares = [], [], []
            for _ in range(reps):
                ours.append(our_cold_root(work, api, meta['id'], backend))
                ups.append(upstream_disks(
                    work, stored, fmt, os.path.join(work, 'upstream'),
                    fresh=True, backend=backend)['disks_s'])
                bares.append(bare_cold(work, stored, fmt))
            o, u = median(ours), median(ups)
            cpu = cpu_hash_seconds(os.path.getsize(stored))
            bare = {k: median([b[k] for b in bares]) for k in bares[0]}
            # The least a verified fetch does: hash every byte, and write
            # the data (a raw copy, or the conversion of a qcow2).
            floor = max(bare['hash'],
                        bare['cp'] if fmt == 'raw' else bare['convert'])
            # flr/up: the best ratio to upstream a verified fetch can have.
            print('%5dM %5s %8.3f %8.3f %8.2f %8.3f %8.3f %8.3f %8.3f %9.2f '
                  '%8.2f %8.2f' % (
                      data // MiB, fmt, o, u, o / u, bare['convert'],
                      bare['cp'], bare['hash'], floor, o / floor, floor / u,
                      cpu / u))
            shutil.rmtree(store.image_dir(meta['id']), ignore_errors=True)
        os.unlink(os.path.join(images, 'img-%d.raw' % (data // MiB)))
    print()


# ------------------------------------------------------------------ disks

def create_instance(context, image_meta, disks):
    """An instance of ``disks`` disks: root 2 GB, then vfat ephemerals of
    1 GB, then swap 512 MB (one disk: root only)."""
    return bench_spawn.create_instance(context, image_meta,
                                       max(0, disks - 2),
                                       swap=512 if disks >= 2 else 0)


def one_transaction(engine, instance_uuid):
    """Seconds of one write transaction on the spawn's database (an
    UPDATE of the instance's mappings, as a spawn saves its records)."""
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text('UPDATE block_device_mapping SET updated_at = '
                             'CURRENT_TIMESTAMP WHERE instance_uuid = :u'),
                     {'u': instance_uuid})
    return time.perf_counter() - t0


def section_disks(work, reps, backend):
    CONF.set_override('connection', 'sqlite:///%s/nova.sqlite' % work,
                      group='database')
    CONF.set_override('instances_path', os.path.join(work, 'instances'))
    CONF.set_override('lock_path', os.path.join(work, 'locks'),
                      group='oslo_concurrency')
    CONF.set_override('images_type', backend, group='libvirt')
    CONF.set_override('use_cow_images', backend == 'qcow2')
    CONF.set_override('force_raw_images', True)
    migration.db_sync()
    context = nova_context.get_admin_context()
    stored = bench_spawn.make_images(work)['qcow2']
    image_meta = image.API().import_file(context, stored, 'qcow2')
    host = libvirt_host.Host('test:///default')
    manager = disk_manager.DiskManager()
    driver = libvirt_driver.LibvirtDriver(host=host, disks=manager)
    timer = benchutil.DiskTimer(manager)
    recorder = bench_spawn.Recorder(db_api.get_engine())
    scratch = os.path.join(work, 'bare')
    up_instances = os.path.join(work, 'upstream')
    # Both caches warm: the image base and every template.
    warm = create_instance(context, image_meta, max(DISK_COUNTS))
    driver.spawn(context, warm, image_meta)
    driver.destroy(context, warm)
    upstream_disks(work, stored, 'qcow2', up_instances, fresh=True,
                   backend=backend, ephemerals=max(DISK_COUNTS) - 2,
                   swap_mb=512, root_gb=2)

    concurrency = CONF.libvirt.disk_create_concurrency
    print('disks: warm spawn, backend %s, root 2 GB from a 1 GiB qcow2 '
          'image (64 MiB of data), vfat ephemerals 1 GB, swap 512 MB; '
          'medians of %d' % (backend, reps))
    print('  spawn: disk_create_concurrency %d; one-by-one: the same '
          'spawn with 1 (its overhead over the bare commands, run one '
          'after the other)' % concurrency)
    print('%5s %9s %9s %7s %9s %7s %6s %7s %9s %9s %7s %7s' % (
        'disks', 'spawn ms', 'bare+tx', 'ratio', '1-by-1 ms', 'ratio',
        'cmds', 'w-tx', 'disks ms', 'upstr ms', 'ours/up', 'up cmd'))
    for count in DISK_COUNTS:
        rows = []
        for _ in range(reps):
            instance = create_instance(context, image_meta, count)
            tx_s = one_transaction(db_api.get_engine(), instance.uuid)
            ours = bench_spawn.spawn_once(driver, context, instance,
                                          image_meta, recorder, scratch,
                                          timer)
            CONF.set_override('disk_create_concurrency', 1, group='libvirt')
            try:
                serial = bench_spawn.spawn_once(
                    driver, context, create_instance(context, image_meta,
                                                     count),
                    image_meta, recorder, scratch, timer)
            finally:
                CONF.clear_override('disk_create_concurrency',
                                    group='libvirt')
            row = {'spawn': ours['spawn_s'], 'disks': ours['disks_s'],
                   'cmds': ours['commands'],
                   'wtx': ours['write_transactions'],
                   'bare': ours['bare_s'] + tx_s,
                   'serial': serial['spawn_s'],
                   'serial_bare': serial['bare_s'] + tx_s}
            up = upstream_disks(work, stored, 'qcow2', up_instances,
                                fresh=False, backend=backend,
                                ephemerals=max(0, count - 2),
                                swap_mb=512 if count >= 2 else 0, root_gb=2)
            row['up'] = up['disks_s']
            row['up_cmds'] = len(up['commands'])
            rows.append(row)
        m = {k: median([r[k] for r in rows]) for k in rows[0]}
        print('%5d %9.1f %9.1f %7.2f %9.1f %7.2f %6d %7d %9.1f %9.1f %7.2f '
              '%7d' % (
                  count, m['spawn'] * 1000, m['bare'] * 1000,
                  m['spawn'] / m['bare'], m['serial'] * 1000,
                  m['serial'] / m['serial_bare'], m['cmds'], m['wtx'],
                  m['disks'] * 1000, m['up'] * 1000, m['disks'] / m['up'],
                  m['up_cmds']))
    host.close()
    print()


# -------------------------------------------------------------- instances

def cli(state, *args):
    return [os.path.join(os.path.dirname(sys.executable), 'nova-libvirt'),
            '--state_path', state, '--libvirt-connection_uri',
            'test:///default', '--debug', '--format', 'json'] + list(args)


def boot(state, image_id):
    """One ``boot`` process: (seconds, fetches it made, failure or None)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cli(state, 'boot', '--image', image_id,
                              '--root-gb', '2', '--ephemeral-gb', '0',
                              '--swap-mb', '0'),
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    fetches = proc.stderr.count('Fetched image')
    if proc.returncode:
        # The exception's own line (e.g. sqlite3.OperationalError: database
        # is locked), else the last one.
        lines = [line.strip() for line in proc.stderr.splitlines()
                 if line.strip()]
        errors = [line for line in lines if 'Error:' in line] or lines[-1:]
        return seconds, fetches, errors[-1][-200:]
    return seconds, fetches, None


def new_state(work, image_path):
    state = tempfile.mkdtemp(prefix='state-', dir=work)
    out = run(*cli(state, 'image-import', image_path, '--disk-format',
                   'qcow2'))
    return state, json.loads(out.stdout)['id']


def section_instances(work, reps):
    images = os.path.join(work, 'instances-images')
    os.makedirs(images)
    path = bench_spawn.make_images(images)['qcow2']
    print('instances: concurrent cold boots (nova-libvirt boot, one state '
          'directory, qcow2 image of 1 GiB with 64 MiB of data, root 2 GB) '
          '/ (one cold boot + the rest warm, in sequence); medians '
          'of %d' % reps)
    print('%9s %8s %9s %7s %8s %7s' % ('instances', 'wall s', 'baseline',
                                       'ratio', 'fetches', 'failed'))
    for count in INSTANCE_COUNTS:
        rows = []
        for _ in range(reps):
            # Baseline: one cold boot (a fetch and a boot), then the
            # other ``count - 1`` boots warm.
            state, image_id = new_state(work, path)
            drop_caches()
            base = boot(state, image_id)[0]
            base += sum(boot(state, image_id)[0] for _ in range(count - 1))
            shutil.rmtree(state)
            state, image_id = new_state(work, path)
            drop_caches()
            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(count) as pool:
                results = list(pool.map(lambda _: boot(state, image_id),
                                        range(count)))
            wall = time.perf_counter() - t0
            shutil.rmtree(state)
            failed = [r[2] for r in results if r[2] is not None]
            rows.append({'wall': wall, 'base': base,
                         'fetches': sum(r[1] for r in results),
                         'failed': len(failed), 'why': failed[:1]})
        m = {k: median([r[k] for r in rows])
             for k in ('wall', 'base', 'fetches', 'failed')}
        print('%9d %8.2f %9.2f %7.2f %8d %7d%s' % (
            count, m['wall'], m['base'], m['wall'] / m['base'],
            max(r['fetches'] for r in rows), max(r['failed'] for r in rows),
            ''.join('\n    a failure: %s' % r['why'][0] for r in rows
                    if r['why'])))
    print()


def warm_root(instances, api, image_id, backend, reps):
    """Median seconds of warm root disks (2 GiB) over a raw base."""
    CONF.set_override('instances_path', instances)
    CONF.set_override('lock_path', os.path.join(instances, 'locks'),
                      group='oslo_concurrency')
    cache = image_cache.ImageCache(image_api=api)
    fields = (dict(backend='flat', format='raw') if backend == 'flat' else
              dict(backend='qcow2', format='qcow2', backing_format='raw'))

    def one():
        record = libvirt_disk.LibvirtDiskMetadata(
            size=2 * GiB, disk_name='disk', image_id=image_id, **fields)
        record.validate()
        disk = imagebackend.backend_for(Instance(), record, cache=cache)
        t0 = time.perf_counter()
        disk.create_from_image(None, image_id)
        return time.perf_counter() - t0
    one()  # the cache entry
    return median([one() for _ in range(reps)])


def section_reflink(work, reps):
    xfs = os.environ.get('NOVA_TEST_XFS_DIR')
    store = local.LocalImageService(root=os.path.join(work, 'store'))
    api = image.API(service=store)
    raw = os.path.join(work, 'full.raw')
    block = random.Random(3).randbytes(64 * MiB)
    with open(raw, 'wb') as f:
        for _ in range(GiB // len(block)):
            f.write(block)
    image_id = store.import_file(None, raw, 'raw')['id']
    os.unlink(raw)
    reps = max(reps, 5)
    print('reflink: warm root disk (2 GiB) over a 1 GiB raw base holding '
          '1 GiB of data; medians of %d' % reps)
    print('%-26s %9s %9s %7s' % ('filesystem', 'flat ms', 'qcow2 ms',
                                 'ratio'))
    places = [('work dir (%s)' % fs_type(work), work)]
    if xfs:
        places.insert(0, ('XFS reflink=1', xfs))
    else:
        print('(no NOVA_TEST_XFS_DIR: run under tools/with-services.sh)')
    for label, top in places:
        instances = tempfile.mkdtemp(prefix='reflink-', dir=top)
        try:
            flat = warm_root(instances, api, image_id, 'flat', reps)
            qcow2 = warm_root(instances, api, image_id, 'qcow2', reps)
        finally:
            shutil.rmtree(instances, ignore_errors=True)
        print('%-26s %9.1f %9.1f %7.2f' % (label, flat * 1000, qcow2 * 1000,
                                           flat / qcow2))
    print()


def fs_type(path):
    return run('stat', '-f', '-c', '%T', path).stdout.strip()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('sections', nargs='*',
                        choices=['data', 'disks', 'instances', 'reflink'],
                        help='what to measure (default: all)')
    parser.add_argument('--reps', type=int, default=1,
                        help='runs per point (medians reported)')
    parser.add_argument('--backend', choices=['qcow2', 'flat'],
                        default='qcow2')
    parser.add_argument('--formats', default='raw,qcow2',
                        help='image formats of the data section')
    parser.add_argument('--buffered', action='store_true',
                        help='our qemu-img convert without -t none (the '
                             'code before it probed O_DIRECT), to compare')
    parser.add_argument('--dir', default=None,
                        help='work directory (default: a new one in '
                             '/var/tmp; not tmpfs)')
    args = parser.parse_args(argv)
    sections = args.sections or ['data', 'disks', 'instances', 'reflink']
    if os.geteuid() != 0:
        parser.error('cold runs drop the page cache: run as root')

    if args.buffered:
        qemu_img.supports_direct_io = lambda *a, **kw: False
    work = benchutil.start('bench-scaling-', args.dir)
    try:
        CONF.set_override('state_path', work)
        if 'data' in sections:
            section_data(work, args.reps, args.backend,
                         args.formats.split(','))
        if 'disks' in sections:
            section_disks(work, args.reps, args.backend)
        if 'instances' in sections:
            section_instances(work, args.reps)
        if 'reflink' in sections:
            section_reflink(work, args.reps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

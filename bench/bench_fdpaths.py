#!/usr/bin/env python3
"""What the descriptor-based file paths cost: this tree against the code
before them, measured in one run.

The "before" tree is a ``git worktree`` of the commit this change started
from (the parent of the first commit that added ``nova/virt/staging.py``,
or ``--base``), made in a temporary directory and removed afterwards.
Both trees run the same two operations, each in worker processes of its
own (both are the package ``nova``), alternating tree by tree (and which
goes first, round by round):

* warm spawn: a 3-disk instance (qcow2 root over a raw base, an ext4
  ephemeral, swap) on libvirt's test driver, its cache already filled;
  the spawn is timed, the destroy is not;
* cold fetch: ``fetch_verified`` of a 256 MiB qcow2 image (16 MiB of
  data) converted to raw into an empty directory.

Prints the median and the fastest seconds of each and the ratios
this/before (the target is <= 1.02); never asserts on time. Run::

    .venv/bin/python bench/bench_fdpaths.py [--rounds 5] [--reps 3]
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1 << 20


def worker(tree, op, reps, work):
    """Run ``op`` ``reps`` times with the code of ``tree``; print JSON."""
    sys.path.insert(0, tree)
    from oslo_utils import uuidutils

    import nova.conf
    from nova import context as nova_context
    from nova.db import migration
    from nova import image
    from nova import objects
    from nova.virt import images
    from nova.virt.libvirt import driver as libvirt_driver
    from nova.virt.libvirt import host as libvirt_host

    assert nova.__file__.startswith(tree), nova.__file__
    conf = nova.conf.CONF
    conf([], project='nova', default_config_files=[])
    objects.register_all()
    state = os.path.join(work, 'state')
    os.makedirs(state, mode=0o700)
    conf.set_override('state_path', state)
    conf.set_override('connection', 'sqlite:///%s/nova.sqlite' % state,
                      group='database')
    conf.set_override('images_type', 'qcow2', group='libvirt')
    conf.set_override('use_cow_images', True)
    conf.set_override('force_raw_images', True)
    migration.db_sync()
    ctx = nova_context.get_admin_context()
    api = image.API()
    meta = api.import_file(ctx, os.path.join(work, 'img.qcow2'), 'qcow2')
    times = []
    if op == 'fetch':
        for n in range(reps):
            target_dir = os.path.join(work, 'fetch%d' % n)
            os.mkdir(target_dir)
            t0 = time.perf_counter()
            images.fetch_verified(ctx, api, meta['id'],
                                  os.path.join(target_dir, 'base'), 'raw')
            times.append(time.perf_counter() - t0)
    else:
        host = libvirt_host.Host('test:///default')
        driver = libvirt_driver.LibvirtDriver(host=host)

        def spawn():
            # The "before" tree predates Flavor (swap was an instance
            # column then).
            sizes = (dict(flavor=objects.Flavor.from_sizes(1, 1, 64))
                     if hasattr(objects, 'Flavor') else dict(swap=64))
            instance = objects.Instance(
                ctx, uuid=uuidutils.generate_uuid(), image_ref=meta['id'],
                root_gb=1, ephemeral_gb=1, vm_state='building', **sizes)
            instance.create()
            for values in (
                    dict(source_type='image', destination_type='local',
                         boot_index=0, image_id=meta['id']),
                    dict(source_type='blank', destination_type='local',
                         boot_index=-1, guest_format='ext4', volume_size=1),
                    dict(source_type='blank', destination_type='local',
                         boot_index=-1, guest_format='swap',
                         volume_size=64)):
                objects.BlockDeviceMapping(ctx, instance_uuid=instance.uuid,
                                           **values).create()
            t0 = time.perf_counter()
            driver.spawn(ctx, instance, meta)
            elapsed = time.perf_counter() - t0
            driver.destroy(ctx, instance)
            return elapsed

        spawn()  # fills the cache: what follows is warm
        times = [spawn() for _ in range(reps)]
        host.close()
    print(json.dumps(times))


def make_image(work):
    raw = os.path.join(work, 'img.raw')
    with open(raw, 'wb') as f:
        f.truncate(256 * MiB)
        f.write(random.Random(20260101).randbytes(16 * MiB))
    qcow2 = os.path.join(work, 'img.qcow2')
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw,
                    qcow2], check=True)
    os.unlink(raw)


def base_commit():
    out = subprocess.run(
        ['git', '-C', ROOT, 'log', '--diff-filter=A', '--format=%H', '--',
         'nova/virt/staging.py'], check=True, capture_output=True,
        text=True).stdout.split()
    if not out:
        sys.exit('no commit adds nova/virt/staging.py: give --base')
    return out[-1] + '^'


def run_worker(tree, op, reps, scratch, image_dir):
    work = tempfile.mkdtemp(dir=scratch)
    os.link(os.path.join(image_dir, 'img.qcow2'),
            os.path.join(work, 'img.qcow2'))
    try:
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), '--worker', tree,
             '--op', op, '--reps', str(reps), '--work', work],
            check=True, capture_output=True, text=True, cwd=scratch,
            env=dict(os.environ, PYTHONPATH=tree)).stdout
    finally:
        shutil.rmtree(work)
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--base', help='the "before" commit (default: the '
                        'parent of the commit that added staging.py)')
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--reps', type=int, default=3)
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    parser.add_argument('--op', help=argparse.SUPPRESS)
    parser.add_argument('--work', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.op, args.reps, args.work)

    scratch = tempfile.mkdtemp(prefix='bench-fdpaths-')
    os.chmod(scratch, 0o700)
    before = os.path.join(scratch, 'before')
    base = args.base or base_commit()
    subprocess.run(['git', '-C', ROOT, 'worktree', 'add', '--detach', '-q',
                    before, base], check=True)
    try:
        image_dir = os.path.join(scratch, 'image')
        os.mkdir(image_dir)
        make_image(image_dir)
        trees = {'this': ROOT, 'before': before}
        results = {(tree, op): [] for tree in trees
                   for op in ('spawn', 'fetch')}
        for n in range(args.rounds):
            # Alternate which tree goes first: neither gets a warmer host.
            order = list(trees.items())[::(-1) ** n]
            for op in ('spawn', 'fetch'):
                for name, tree in order:
                    results[(name, op)] += run_worker(
                        tree, op, args.reps, scratch, image_dir)
        print('descriptor-based paths: this tree vs. %s (%d rounds x %d '
              'reps)' % (base, args.rounds, args.reps))
        for op, label in (('spawn', 'warm spawn (3 disks)'),
                          ('fetch', 'cold fetch (qcow2 -> raw)')):
            # The median, and the fastest run of each: on a shared host
            # the fastest is the one least slowed by other work, the
            # closest to what the code itself costs.
            for stat in (statistics.median, min):
                this = stat(results[('this', op)])
                old = stat(results[('before', op)])
                print('  %-28s %-6s this %.4f s  before %.4f s  ratio '
                      '%.3f' % (label, stat.__name__, this, old, this / old))
    finally:
        subprocess.run(['git', '-C', ROOT, 'worktree', 'remove', '--force',
                        before], check=False)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == '__main__':
    main()

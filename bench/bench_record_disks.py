#!/usr/bin/env python3
"""Benchmark of recording the disks of older instances in bulk.

For each database (SQLite always; PostgreSQL when NOVA_TEST_POSTGRESQL_URL
names a server, as ``tools/with-services.sh`` exports it), on a fresh
database: ``--mappings`` unrecorded local mappings (instances of four Flat
raw disks each, as Nova 34 left them: sparse files and a disk.info) are
recorded by ``nova-manage libvirt record_disks``'s loop, and the same
mappings (their records cleared) by the same loop saving one mapping at a
time (``bdm.save()``, the baseline). Inference is the same in both; only
the writes differ. The two take turns chunk by chunk (see
``_interleaved``), so that load drifting on a shared machine hits both
alike. Prints mappings per second of each and the ratio, measured in this
one run (never asserts on time)::

    .venv/bin/python bench/bench_record_disks.py [--mappings 10000]
"""

import argparse
import os
import sys
import tempfile
import time

from oslo_utils import units
from oslo_utils import uuidutils
import sqlalchemy as sa

import nova.conf
from nova.cmd import manage_libvirt
from nova import context as nova_context
from nova.db import models
from nova import objects
from nova.virt.libvirt.imagebackend import manager as disk_manager

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..'))
from tests import fixtures  # noqa: E402

CONF = nova.conf.CONF

HOST = 'bench-host'
DISKS_PER_INSTANCE = 4   # disk, disk.eph0, disk.eph1, disk.swap
SWAP_MB = 64
#: Instances per chunk of the interleaved measurement (1,000 mappings):
#: 10,000 mappings make ten chunks, five begun by each way.
CHUNK_INSTANCES = 250


class OneAtATime(disk_manager.DiskManager):
    """The baseline: each inferred record saved by its own bdm.save()."""

    @staticmethod
    def _save_inferred(context, inferred):
        for result in inferred:
            result.bdm.driver_info = result.record.to_driver_info()
            result.bdm.save()


def _populate(engine, instances_path, count):
    """``count`` instances of Nova 34 Flat raw disks, without records.

    Rows are inserted in bulk (setup only, not measured).
    """
    now = sa.func.now()
    instance_rows, bdm_rows = [], []
    for _ in range(count):
        uuid = uuidutils.generate_uuid()
        image_id = uuidutils.generate_uuid()
        instance_rows.append(dict(
            uuid=uuid, host=HOST, node=HOST, display_name='bench',
            image_ref=image_id, root_gb=1, ephemeral_gb=2, swap=SWAP_MB,
            vm_state='active', deleted=0))
        # executemany needs the same keys in every row.
        common = dict(instance_uuid=uuid, destination_type='local',
                      device_type='disk', deleted=0, image_id=None,
                      guest_format=None, volume_size=None)
        bdm_rows.append(dict(common, source_type='image', boot_index=0,
                             image_id=image_id, device_name='/dev/vda'))
        for dev in ('vdb', 'vdc'):
            bdm_rows.append(dict(common, source_type='blank', boot_index=-1,
                                 volume_size=1, device_name='/dev/' + dev))
        bdm_rows.append(dict(common, source_type='blank', boot_index=-1,
                             guest_format='swap', volume_size=SWAP_MB,
                             device_name='/dev/vdd'))
        inst_dir = os.path.join(instances_path, uuid)
        os.makedirs(inst_dir)
        sizes = {'disk': units.Gi, 'disk.eph0': units.Gi,
                 'disk.eph1': units.Gi, 'disk.swap': SWAP_MB * units.Mi}
        for name, size in sizes.items():
            with open(os.path.join(inst_dir, name), 'wb') as f:
                f.truncate(size)
        with open(os.path.join(inst_dir, 'disk.info'), 'w') as f:
            f.write('{%s}\n' % ', '.join(
                '"%s": "raw"' % os.path.join(inst_dir, name)
                for name in sizes))
    with engine.begin() as conn:
        conn.execute(sa.insert(models.Instance).values(created_at=now),
                     instance_rows)
        conn.execute(sa.insert(models.BlockDeviceMapping).values(
            created_at=now), bdm_rows)


def _clear(engine, uuids):
    with engine.begin() as conn:
        conn.execute(sa.update(models.BlockDeviceMapping)
                     .where(models.BlockDeviceMapping.instance_uuid.in_(
                         uuids))
                     .values(driver_info=None))


def _timed_run(manager, instances):
    context = nova_context.get_admin_context()
    start = time.perf_counter()
    summary = manage_libvirt.run(context, instances, manager=manager)
    elapsed = time.perf_counter() - start
    if summary.refused or summary.remaining:
        raise SystemExit('bench: refused %r' % summary.refused[:3])
    return len(summary.recorded), elapsed


def _interleaved(engine, chunk_instances):
    """Record every chunk of instances both ways, in turn.

    This machine's load drifts over a run of minutes: measuring all of
    one way, then all of the other, lets the drift decide the ratio. So
    each chunk is recorded by one way, cleared and recorded by the other,
    the first way alternating from chunk to chunk (the first pass over a
    chunk also pays its cold page cache).

    :returns: {'bulk': (mappings, seconds), 'one': (mappings, seconds)}.
    """
    context = nova_context.get_admin_context()
    instances = list(objects.InstanceList.get_by_host(context, HOST))
    ways = {'bulk': disk_manager.DiskManager(), 'one': OneAtATime()}
    totals = {way: [0, 0.0] for way in ways}
    for index, start in enumerate(range(0, len(instances),
                                        chunk_instances)):
        chunk = instances[start:start + chunk_instances]
        order = ('bulk', 'one') if index % 2 == 0 else ('one', 'bulk')
        for position, way in enumerate(order):
            if position:
                _clear(engine, [i.uuid for i in chunk])
            count, seconds = _timed_run(ways[way], chunk)
            totals[way][0] += count
            totals[way][1] += seconds
    return {way: tuple(total) for way, total in totals.items()}


def bench(name, db_fixture, mappings):
    db_fixture.setUp()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            conf = fixtures.ConfOverrides()
            conf.config(instances_path=os.path.join(tmp, 'instances'))
            conf.config(group='libvirt', images_type='flat')
            conf.config(use_cow_images=False)
            try:
                _populate(db_fixture.engine, CONF.instances_path,
                          mappings // DISKS_PER_INSTANCE)
                totals = _interleaved(db_fixture.engine, CHUNK_INSTANCES)
                bulk_n, bulk_s = totals['bulk']
                one_n, one_s = totals['one']
            finally:
                conf.undo()
    finally:
        db_fixture.cleanUp()
    assert bulk_n == one_n == mappings, (bulk_n, one_n)
    bulk_rate, one_rate = bulk_n / bulk_s, one_n / one_s
    print('%-10s %6d mappings: bulk %8.0f/s (%.2f s), one save() at a '
          'time %8.0f/s (%.2f s): %.1fx' % (
              name, mappings, bulk_rate, bulk_s, one_rate, one_s,
              bulk_rate / one_rate))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--mappings', type=int, default=10000)
    # tools/run-benchmarks.sh passes every benchmark the same arguments.
    args, _ = parser.parse_known_args(argv)
    objects.register_all()
    CONF([], project='nova', default_config_files=[], default_config_dirs=[])
    databases = [('sqlite', fixtures.Database())]
    pg_admin = fixtures.server_admin_url('postgresql')
    if pg_admin:
        server = fixtures.ServerDatabase('postgresql')
        server.setUp()
        databases.append(('postgresql',
                          fixtures.Database(connection=server.url)))
    else:
        print('postgresql: skipped (%s)' % fixtures.not_configured(
            'postgresql'))
    try:
        for name, db_fixture in databases:
            bench(name, db_fixture, args.mappings)
    finally:
        if pg_admin:
            server.cleanUp()
    return 0


if __name__ == '__main__':
    sys.exit(main())

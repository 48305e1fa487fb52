"""A disk's first record is written exactly once, however many processes
race to write it.

Real processes (record_once_worker.py) on the same database, SQLite,
PostgreSQL and MariaDB: each imports and configures itself, then all start
at once on the same unrecorded mappings. Every mapping must end with one
record, written by one process, and every process must end up obeying
that record.
"""

import collections
import json
import re
import subprocess

import pytest

from nova.db import api as db
from nova import objects
from tests import fixtures
from tests.functional import helpers as func_helpers
from tests.functional.virt.libvirt.imagebackend import nova34_disks

PROCESSES = 6
INSTANCES = 12
WORKER = 'tests.functional.db.record_once_worker'
RECORDED = re.compile(r'Recorded the inferred layout of disks (\S+) of '
                      r'instance (\S+),')


@pytest.fixture
def conf(database):
    """CONF overrides on top of ``database`` (the functional ``conf``
    fixture would bring an SQLite database of its own)."""
    overrides = fixtures.ConfOverrides()
    yield overrides
    overrides.undo()


def _race(tmp_path, database, specs):
    """Start one worker per spec, let them go at once, return their
    [(JSON output, stderr)]."""
    go = tmp_path / 'go'
    procs = []
    for spec in specs:
        spec = dict(spec, connection=database.url, go=str(go),
                    instances_path=str(tmp_path / 'instances'))
        procs.append(subprocess.Popen(
            func_helpers.module_argv(WORKER, json.dumps(spec)),
            cwd=func_helpers.ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    go.touch()
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        out = {int(k): v for k, v in json.loads(stdout).items()}
        results.append((out, stderr))
    return results


def _flat_instances(conf, ctx, tmp_path):
    conf.config(instances_path=str(tmp_path / 'instances'))
    conf.config(group='libvirt', images_type='flat')
    conf.config(use_cow_images=False)
    return nova34_disks.make_flat_raw_instances(ctx, INSTANCES)


def _stored(ctx, ids):
    return {bdm_id: db.block_device_mapping_get(ctx, bdm_id).driver_info
            for bdm_id in ids}


def test_one_writer_per_mapping_and_all_agree(database, ctx, conf,
                                              tmp_path):
    instances = _flat_instances(conf, ctx, tmp_path)
    ids = [bdm.id for i in instances
           for bdm in nova34_disks.bdms_of(ctx, i)]
    results = _race(tmp_path, database, [
        {'mode': 'db', 'ids': ids, 'tag': 'process-%d' % n}
        for n in range(PROCESSES)])

    stored = _stored(ctx, ids)
    writers = collections.Counter()
    for out, _ in results:
        assert sorted(out) == sorted(ids)
        for bdm_id, (ended_with, wrote) in out.items():
            # Every process ends with what the database holds...
            assert ended_with == stored[bdm_id]
            writers[bdm_id] += wrote
    # ...and exactly one of them wrote it.
    assert writers == {bdm_id: 1 for bdm_id in ids}
    assert all(json.loads(stored[i])['id'] == i for i in ids)


def test_deleted_mapping_is_not_written(database, ctx, conf, tmp_path):
    instances = _flat_instances(conf, ctx, tmp_path)
    bdms = [bdm for i in instances[:2]
            for bdm in nova34_disks.bdms_of(ctx, i)]
    gone, live = [bdm.id for bdm in bdms]
    bdms[0].destroy()
    result = db.block_device_mapping_record_first(
        ctx, {gone: '{"x": 1}', live: '{"x": 2}'})
    assert result == {live: ('{"x": 2}', True)}
    ctx.read_deleted = 'yes'
    assert db.block_device_mapping_get(ctx, gone).driver_info is None
    # A second call writes nothing and returns what is stored.
    ctx.read_deleted = 'no'
    again = db.block_device_mapping_record_first(ctx, {live: '{}'})
    assert again == {live: ('{"x": 2}', False)}


def test_first_touch_races_record_disks(database, ctx, conf, tmp_path):
    instances = _flat_instances(conf, ctx, tmp_path)
    uuids = [i.uuid for i in instances]
    results = _race(tmp_path, database, [
        {'mode': 'lazy' if n % 2 else 'bulk', 'uuids': uuids}
        for n in range(PROCESSES)])

    bdms = {bdm.id: bdm for i in instances
            for bdm in nova34_disks.bdms_of(ctx, i)}
    stored = {bdm_id: bdm.driver_info for bdm_id, bdm in bdms.items()}
    assert all(stored.values())
    recorded = collections.Counter()
    for out, stderr in results:
        for bdm_id, (ended_with, _) in out.items():
            assert ended_with == stored[bdm_id], bdm_id
        for names, uuid in RECORDED.findall(stderr):
            for name in names.split(','):
                recorded[(uuid, name)] += 1
    # Each disk was recorded by exactly one process.
    assert recorded == {(uuid, 'disk'): 1 for uuid in uuids}
    for instance in instances:
        record = objects.BlockDeviceMappingList.get_by_instance_uuid(
            ctx, instance.uuid)[0].get_disk_metadata()
        nova34_disks.assert_record_matches_storage(instance, record)

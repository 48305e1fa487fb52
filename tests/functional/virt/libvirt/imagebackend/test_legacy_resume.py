"""record_disks killed midway: the next run completes, and nothing that
the killed run recorded is written again."""

import logging
import signal
import subprocess

from nova.db import api as db
from nova.virt.libvirt.imagebackend import manager as disk_manager
from tests.functional.virt.libvirt import helpers as libvirt_helpers
from tests.functional.virt.libvirt.imagebackend import nova34_disks

COUNT = 450   # three batches of manage_libvirt.BATCH_INSTANCES (200)


def test_killed_run_is_completed_by_the_next(conf, context, tmp_path):
    conf.config(group='libvirt', images_type='flat')
    conf.config(use_cow_images=False)
    instances = nova34_disks.make_flat_raw_instances(context, COUNT)
    proc = subprocess.Popen(
        nova34_disks.manage_command(tmp_path, 'libvirt', 'record_disks',
                                    '--host', 'legacy-host'),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # Killed as soon as its first batch is committed.
        for line in proc.stderr:
            if line.startswith('record_disks: 200/%d' % COUNT):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    def state():
        return {i.uuid: [(b.driver_info, b.updated_at)
                         for b in nova34_disks.bdms_of(context, i)]
                for i in instances}

    first = state()
    done = {uuid for uuid, rows in first.items() if rows[0][0]}
    assert 200 <= len(done) < COUNT

    result = nova34_disks.manage(tmp_path, 'libvirt', 'record_disks', '--host',
                                 'legacy-host')
    assert result.returncode == 0, result.stderr
    assert '| recorded         | %-5d |' % (COUNT - len(done)) in \
        result.stdout
    assert '| already recorded | %-5d |' % len(done) in result.stdout
    second = state()
    assert all(rows[0][0] for rows in second.values())
    # What the killed run recorded was not written again.
    assert {u: second[u] for u in done} == {u: first[u] for u in done}
    for instance in instances[:3]:
        record = libvirt_helpers.records(context, instance)['disk']
        nova34_disks.assert_record_matches_storage(instance, record)


def test_loser_obeys_the_record_stored_first(conf, context, caplog):
    """A run holding mappings read before another process recorded them
    does not overwrite that record: it obeys it, and says so when it
    differs from its own inference."""
    caplog.set_level(logging.INFO)
    conf.config(group='libvirt', images_type='flat')
    conf.config(use_cow_images=False)
    same, other = nova34_disks.make_flat_raw_instances(context, 2)
    stale = {i.uuid: list(nova34_disks.bdms_of(context, i))
             for i in (same, other)}
    # Another process got there first: for ``same`` with the record this
    # one infers, for ``other`` with one that differs (a source it would
    # not infer).
    manager = disk_manager.DiskManager()
    manager.record_legacy_disks(
        context, [(same, nova34_disks.bdms_of(context, same))])
    theirs = libvirt_helpers.records(context, same)['disk']
    first = theirs.obj_clone()
    first.image_id = '0d7b1b16-4b54-4a0c-9a54-6d1f0e9a3b21'
    db.block_device_mapping_update(context, stale[other.uuid][0].id, {
        'driver_info': first.to_driver_info()})
    before = {b.id: (b.driver_info, b.updated_at) for i in (same, other)
              for b in nova34_disks.bdms_of(context, i)}
    caplog.clear()

    results = manager.record_legacy_disks(
        context, [(i, stale[i.uuid]) for i in (same, other)])

    after = {b.id: (b.driver_info, b.updated_at) for i in (same, other)
             for b in nova34_disks.bdms_of(context, i)}
    assert after == before
    by_instance = {r.bdm.instance_uuid: r for r in results}
    assert by_instance[same.uuid].record.image_id == same.image_ref
    assert by_instance[other.uuid].record.image_id == first.image_id
    for instance in (same, other):
        assert stale[instance.uuid][0].driver_info == before[
            stale[instance.uuid][0].id][0]
    assert 'recorded by another process first, as this one would have' in (
        caplog.text)
    assert ('Disk disk of instance %s was recorded by another process '
            'first, differently' % other.uuid) in caplog.text
    assert 'Recorded the inferred layout' not in caplog.text

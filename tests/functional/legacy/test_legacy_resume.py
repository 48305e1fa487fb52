"""record_disks killed midway: the next run completes, and nothing that
the killed run recorded is written again."""

import signal
import subprocess

from tests.functional.legacy import legacy_helpers as helpers

COUNT = 450   # three batches of manage_libvirt.BATCH_INSTANCES (200)


def test_killed_run_is_completed_by_the_next(conf, context, tmp_path):
    conf.config(group='libvirt', images_type='flat')
    conf.config(use_cow_images=False)
    instances = helpers.make_flat_raw_instances(context, COUNT)
    proc = subprocess.Popen(
        helpers.manage_command(tmp_path, 'libvirt', 'record_disks',
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
                         for b in helpers.bdms_of(context, i)]
                for i in instances}

    first = state()
    done = {uuid for uuid, rows in first.items() if rows[0][0]}
    assert 200 <= len(done) < COUNT

    result = helpers.manage(tmp_path, 'libvirt', 'record_disks', '--host',
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
        record = helpers.records(context, instance)['disk']
        helpers.assert_record_matches_storage(instance, record)

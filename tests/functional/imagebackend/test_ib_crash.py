"""A process SIGKILLed while it fills a cache entry; then a retry.

The entry's lock dies with the process (a kernel file lock), and the retry
finds only leftovers it may remove: it makes the entry as if nothing had
happened, and nothing of the dead attempt stays in the cache.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import nova.conf
from nova import objects
from nova.virt import staging
from nova.virt.libvirt import disk_funcs
from nova.virt.libvirt.imagebackend import manager

import ib_func_helpers as helpers

CONF = nova.conf.CONF
HERE = os.path.dirname(os.path.abspath(__file__))
MiB = helpers.MiB


def _kill_when_ready(args):
    with subprocess.Popen(
            [sys.executable, os.path.join(HERE, 'ib_crash_worker.py'),
             json.dumps(args)], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.monotonic() + 60
        while not os.path.exists(args['ready']):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, 'worker never got ready'
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _args(tmp_path, **kw):
    return dict(instances_path=CONF.instances_path,
                lock_path=CONF.oslo_concurrency.lock_path,
                ready=str(tmp_path / 'ready'), **kw)


def test_killed_template_then_retry(cache, base_dir, tmp_path):
    _kill_when_ready(_args(tmp_path, template='swap_16', size=16 * MiB))
    # The dead attempt's private part.
    assert [staging.part_target(n) for n in os.listdir(base_dir)] == [
        'swap_16']

    entry = cache.ensure_template('swap_16', disk_funcs.make_swap(),
                                  16 * MiB)

    assert helpers.blkid_type(entry.path) == 'swap'
    assert sorted(os.listdir(base_dir)) == ['swap_16', 'swap_16.info']


def test_killed_fetch_then_retry(cache, base_dir, image_service, image_files,
                                 tmp_path):
    image_id = image_service.ids['qcow2']
    _kill_when_ready(_args(tmp_path, service=image_service.spec(),
                           image_id=image_id, format='raw'))
    leftovers = os.listdir(base_dir)
    assert len(leftovers) == 1 and leftovers[0].endswith('.part')

    entry = cache.ensure_image(None, image_id, 'raw')

    assert sorted(os.listdir(base_dir)) == [entry.name, entry.name + '.info']
    assert image_service.counted_downloads(image_id) == 2
    assert helpers.same_content(entry.path, 'raw', image_files['raw'], 'raw')


@pytest.mark.parametrize('backend,cache_format', [
    ('qcow2', 'raw'), ('flat', 'raw'), ('flat', 'qcow2')])
def test_killed_disk_create_then_retry(cache, image_service, image_files,
                                       tmp_path, backend, cache_format):
    """The spawn's retry after a SIGKILL half way through a disk: the
    DiskManager keeps a recorded disk that exists, so a half-made one must
    never be at the disk's name."""
    image_id = image_service.ids[cache_format]
    instance = helpers.Instance()
    record = helpers.make_record(backend, cache_format, 64 * MiB,
                                 image_id=image_id)
    _kill_when_ready(_args(tmp_path, disk=record.to_driver_info(),
                           uuid=instance.uuid,
                           service=image_service.spec()))
    instance_dir = os.path.join(CONF.instances_path, instance.uuid)
    [leftover] = os.listdir(instance_dir)  # the dead attempt, not 'disk'
    assert re.match(r'^\.disk\.[0-9a-f]{16}\.part$', leftover), leftover

    bdm = objects.BlockDeviceMapping(
        instance_uuid=instance.uuid, source_type='image',
        destination_type='local', boot_index=0, image_id=image_id,
        device_name='/dev/vda', id=1, driver_info=record.to_driver_info())
    [disk] = manager.DiskManager(cache=cache).create_local_disks(
        None, instance, None, [bdm])

    assert os.listdir(instance_dir) == ['disk']
    info = helpers.qemu_info(disk.backend.path, record.format)
    assert info['virtual-size'] == record.size
    assert info.get('backing-filename-format') == record.backing_format
    assert helpers.same_content(disk.backend.path, record.format,
                                image_files['raw'], 'raw')

    # remove() takes a dead attempt's part with the disk.
    with open(os.path.join(instance_dir, leftover), 'wb') as f:
        f.write(b'half a disk')
    disk.backend.remove()
    assert os.listdir(instance_dir) == []

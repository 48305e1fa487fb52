"""A process SIGKILLed while it fills a cache entry; then a retry.

The entry's lock dies with the process (a kernel file lock), and the retry
finds only leftovers it may remove: it makes the entry as if nothing had
happened, and nothing of the dead attempt stays in the cache. (A disk's
create killed half way is part of the backend contract:
test_backends_contract.py.)
"""

import os

import nova.conf
from nova.virt import staging
from nova.virt.libvirt import disk_funcs
from tests.functional.virt.libvirt.imagebackend import helpers

CONF = nova.conf.CONF
WORKER = 'tests.functional.virt.libvirt.imagebackend.crash_worker'
MiB = helpers.MiB


def _kill_when_ready(args):
    helpers.kill_when_ready(WORKER, args)


def _args(tmp_path, **kw):
    return dict(instances_path=CONF.instances_path,
                lock_path=CONF.oslo_concurrency.lock_path,
                ready=str(tmp_path / 'ready'), **kw)


def test_killed_template_then_retry(cache, base_dir, tmp_path):
    _kill_when_ready(_args(tmp_path, template='swap_16', size=16 * MiB))
    # The dead attempt's private part.
    assert [staging.part_target(n) for n in os.listdir(base_dir)] == [
        'swap_16.raw']

    entry = cache.ensure_template('swap_16', disk_funcs.make_swap(),
                                  16 * MiB)

    assert helpers.blkid_type(entry.path) == 'swap'
    assert sorted(os.listdir(base_dir)) == ['swap_16.raw',
                                            'swap_16.raw.info']


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

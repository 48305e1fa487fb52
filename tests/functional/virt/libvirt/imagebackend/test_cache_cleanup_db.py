"""Cache cleanup against the disk records in a real (SQLite) database.

``ImageCache.cleanup(context)`` without ``in_use`` asks nova.db.api for
every live mapping with a ``driver_info`` and keeps what those records
name; everything else unused for longer than the configured age goes.
"""

from concurrent import futures
import os
import time
import uuid

import pytest

from nova import context as nova_context
from nova.db import api as db_api
from nova import exception
from nova import objects
from nova.virt.libvirt import disk_funcs
from nova.virt.libvirt import imagebackend
from nova.virt.libvirt.imagebackend import cache as image_cache
from nova.virt import staging
from tests.functional import helpers as func_helpers
from tests.functional.virt.libvirt.imagebackend import helpers

MiB = helpers.MiB


def _instance(ctx):
    instance = objects.Instance(context=ctx, uuid=str(uuid.uuid4()),
                                host='compute1', node='compute1')
    instance.create()
    return instance


def _recorded_disk(ctx, instance, record, cache, **bdm_fields):
    """Persist the record first (as the DiskManager does), then create."""
    bdm = objects.BlockDeviceMapping(
        context=ctx, instance_uuid=instance.uuid, destination_type='local',
        driver_info=record.to_driver_info(), **bdm_fields)
    bdm.create()
    return bdm, imagebackend.backend_for(instance, record, cache=cache)


def test_cleanup_keeps_what_persisted_records_name(db, conf, cache,
                                                   image_service):
    conf.config(remove_unused_original_minimum_age_seconds=0,
                group='image_cache')
    ctx = nova_context.get_admin_context()
    instance = _instance(ctx)
    qcow2_id, raw_id = image_service.ids['qcow2'], image_service.ids['raw']

    root_record = helpers.make_record('qcow2', 'qcow2', helpers.IMAGE_SIZE,
                                      image_id=qcow2_id)
    root_bdm, root = _recorded_disk(ctx, instance, root_record, cache,
                                    source_type='image', boot_index=0,
                                    image_id=qcow2_id)
    root.create_from_image(ctx, qcow2_id)
    swap_record = helpers.make_record('qcow2', 'raw', 16 * MiB,
                                      disk_name='disk.swap',
                                      cache_name='swap_16')
    _swap_bdm, swap = _recorded_disk(ctx, instance, swap_record, cache,
                                     source_type='blank', guest_format='swap')
    swap.create_from_func(ctx, disk_funcs.make_swap(), 'swap_16', 16 * MiB)
    # A base no record names (its instance is gone).
    cache.ensure_image(ctx, raw_id, 'raw')

    removed = cache.cleanup(ctx, now=time.time() + 10)

    assert removed == [image_cache.image_entry_name(raw_id, 'raw')]
    assert os.path.exists(cache.image_path(qcow2_id, 'qcow2'))
    assert os.path.exists(cache.template_path('swap_16'))
    assert helpers.same_content(root.path, 'qcow2',
                                cache.image_path(qcow2_id, 'qcow2'), 'qcow2')

    # Once the mapping is deleted, nothing keeps the base.
    db_api.block_device_mapping_destroy(ctx, root_bdm.id)
    root.remove()
    assert cache.cleanup(ctx, now=time.time() + 10) == [
        image_cache.image_entry_name(qcow2_id, 'qcow2')]


def test_unreadable_record_stops_cleanup(db, conf, cache, image_service):
    conf.config(remove_unused_original_minimum_age_seconds=0,
                group='image_cache')
    ctx = nova_context.get_admin_context()
    instance = _instance(ctx)
    raw_id = image_service.ids['raw']
    record = helpers.make_record('flat', 'raw', helpers.IMAGE_SIZE,
                                 image_id=raw_id)
    bdm, _disk = _recorded_disk(ctx, instance, record, cache,
                                source_type='image', boot_index=0,
                                image_id=raw_id)
    entry = cache.ensure_image(ctx, raw_id, 'raw')
    db_api.block_device_mapping_update(ctx, bdm.id,
                                       {'driver_info': '{"not": "a record"'})

    # Nobody can tell what that record's disk stands on: remove nothing.
    with pytest.raises(exception.CacheEntryInvalid):
        cache.cleanup(ctx, now=time.time() + 10)
    assert os.path.exists(entry.path)


def test_entry_recorded_while_cleanup_runs_is_kept(db, conf, cache,
                                                   image_service):
    # A spawn records its disk over an entry after the cleanup read the
    # records: with an age of 0 (or a clock behind the file server's),
    # the entry's mtime does not save it; the records, read again under
    # its lock, do.
    conf.config(remove_unused_original_minimum_age_seconds=0,
                group='image_cache')
    ctx = nova_context.get_admin_context()
    raw_id = image_service.ids['raw']
    entry = cache.ensure_image(ctx, raw_id, 'raw')
    name = image_cache.image_entry_name(raw_id, 'raw')
    lock_file = os.path.join(cache.lock_path, image_cache._LOCK_PREFIX + name)
    with futures.ThreadPoolExecutor(1) as pool:
        with staging.open_root(cache.lock_path) as locks:
            with locks.lock(image_cache._LOCK_PREFIX + name):
                cleanup = pool.submit(cache.cleanup, ctx,
                                      now=time.time() + 10)
                # It read the records (none) and waits for the entry.
                func_helpers.wait_for_a_waiter(lock_file, cleanup)
                record = helpers.make_record('flat', 'raw',
                                             helpers.IMAGE_SIZE,
                                             image_id=raw_id)
                _recorded_disk(ctx, _instance(ctx), record, cache,
                               source_type='image', boot_index=0,
                               image_id=raw_id)
        assert cleanup.result() == []
    assert os.path.exists(entry.path)

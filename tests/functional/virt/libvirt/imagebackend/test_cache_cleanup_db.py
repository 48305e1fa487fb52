"""Cache cleanup against the disk records in a real (SQLite) database.

``ImageCache.cleanup(context)`` without ``in_use`` asks nova.db.api for
every live mapping with a ``driver_info`` and keeps what those records
name; everything else unused for longer than the configured age goes.
"""

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

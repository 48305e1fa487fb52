"""Hostile images through create_from_image, on both backends.

Every fetch case of tests/functional/hostile_images.py (SECURITY.md's
list) is planted in a real local image store and created as a Flat and a
Qcow2 disk, with the cache asked for raw (force_raw_images) and, for images
declared qcow2, for qcow2 (kept as is). Each must raise the fetch's typed
error unchanged, and leave no file in the cache or the instance directory.
"""

import os

import pytest

import nova.conf
from nova import exception
from nova import image
from nova.image import local
from nova.virt.libvirt import imagebackend
from nova.virt.libvirt.imagebackend import cache as image_cache

from tests.functional import hostile_images as hostile

import ib_func_helpers as helpers

CONF = nova.conf.CONF


def _params():
    params = []
    for case in hostile.CASES:
        formats = ['raw'] + (['qcow2'] if case.declared == 'qcow2' else [])
        for backend in ('flat', 'qcow2'):
            for fmt in formats:
                params.append(pytest.param(case, backend, fmt,
                                           id='%s-%s-%s' % (
                                               case.name, backend, fmt)))
    return params


@pytest.mark.parametrize('case,backend,cache_format', _params())
def test_hostile_image_leaves_nothing(case, backend, cache_format, conf,
                                      tmp_path):
    store = local.LocalImageService(root=str(tmp_path / 'store'))
    os.makedirs(store.root)
    src = case.build(str(tmp_path / ('src-' + case.name)))
    image_id = hostile.plant(store, src, case.declared, **case.meta)
    if case.after:
        case.after(store, image_id)
    cache = image_cache.ImageCache(image_api=image.API(service=store))
    size = case.max_virtual_size or 64 * helpers.MiB
    record = helpers.make_record(backend, cache_format, size,
                                 image_id=image_id)
    instance = helpers.Instance()
    disk = imagebackend.backend_for(instance, record, cache=cache)

    with pytest.raises(case.error) as e:
        disk.create_from_image(None, image_id)

    assert image_id in str(e.value)
    assert helpers.files_under(cache.base_dir) == []
    assert not os.path.exists(os.path.join(CONF.instances_path,
                                           instance.uuid))
    # Nothing was recorded as fetched: a retry fetches (and fails) again.
    with pytest.raises(case.error):
        disk.create_from_image(None, image_id)
    assert helpers.files_under(cache.base_dir) == []


def test_raw_with_qcow2_header_is_just_data(conf, tmp_path):
    """A raw image whose bytes start with a qcow2 header naming a host
    file is refused at the fetch (declared raw, detected qcow2)."""
    store = local.LocalImageService(root=str(tmp_path / 'store'))
    os.makedirs(store.root)
    src = hostile.raw_with_qcow2_header(str(tmp_path / 'evil.raw'))
    image_id = hostile.plant(store, src, 'raw')
    cache = image_cache.ImageCache(image_api=image.API(service=store))
    record = helpers.make_record('flat', 'raw', 64 * helpers.MiB,
                                 image_id=image_id)
    disk = imagebackend.backend_for(helpers.Instance(), record, cache=cache)
    with pytest.raises(exception.ImageFormatMismatch):
        disk.create_from_image(None, image_id)
    assert helpers.files_under(cache.base_dir) == []

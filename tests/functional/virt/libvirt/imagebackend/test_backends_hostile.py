"""Hostile images through create_from_image: what is not the contract.

Every fetch case of tests/functional/hostile_images.py is run against
every registered backend by the contract suite
(test_backends_contract.py); this module keeps the cases that name one
backend on purpose.
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
from tests.functional.virt.libvirt.imagebackend import helpers

CONF = nova.conf.CONF


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

"""fetch_verified's memory does not grow with the image's size.

A header that keeps a format inspector waiting until the end of the file
(a VMDK grain directory "at the end", a VHDX metadata region far away)
must not make the fetch hold the download in memory: past
images.MAX_PENDING the stream goes to its private part file, the verdict
comes at the end, and nothing is left behind.
"""

import os
import tracemalloc

import pytest

from nova import exception
from nova.virt import images
from tests.functional import hostile_images as hostile
from tests.functional.virt import helpers

# Fixtures, by name (no conftest here).
ctx = helpers.ctx
store = helpers.store
image_api = helpers.image_api
base_dir = helpers.base_dir

MiB = hostile.MiB
KiB = hostile.KiB

SIZE = 64 * MiB
CHUNK = 64 * KiB


class SmallChunks:
    """The store's download in Glance-sized chunks (64 KiB), so that what
    a fetch holds is measured in chunks this small."""

    def __init__(self, api):
        self.api = api

    def get(self, context, image_id):
        return self.api.get(context, image_id)

    def download(self, context, image_id):
        chunks = self.api.download(context, image_id)

        def small():
            try:
                for chunk in chunks:
                    for i in range(0, len(chunk), CHUNK):
                        yield chunk[i:i + CHUNK]
            finally:
                chunks.close()
        return small()


@pytest.fixture
def held(monkeypatch):
    """Bytes held in ImageStream._pending after each write()."""
    seen = []
    write = images.ImageStream.write

    def counting_write(self, chunk):
        try:
            return write(self, chunk)
        finally:
            seen.append(sum(len(c) for c in self._pending))
    monkeypatch.setattr(images.ImageStream, 'write', counting_write)
    return seen


@pytest.mark.parametrize('build,declared,error,max_virtual_size', [
    (hostile.vmdk_grain_directory_at_end, 'raw',
     exception.ImageFormatMismatch, None),
    (hostile.vhdx_far_metadata, 'raw', exception.ImageFormatMismatch, None),
    (hostile.raw_with_vhdx_region_table, 'raw', None, None),
    (hostile.qcow2_bomb_undecided, 'qcow2', exception.ImageTooLarge,
     1 << 30),
], ids=['vmdk-gd-at-end', 'vhdx-far-metadata', 'honest-raw',
        'qcow2-bomb'])
def test_memory_does_not_grow_with_the_image(ctx, store, image_api, src_dir,
                                             base_dir, held, build,
                                             declared, error,
                                             max_virtual_size):
    src = build(os.path.join(src_dir, 'img'), size=SIZE)
    assert os.path.getsize(src) == SIZE
    image_id = hostile.plant(store, src, declared)
    api = SmallChunks(image_api)
    target = os.path.join(base_dir, 'base')

    tracemalloc.start()
    try:
        if error is None:
            images.fetch_verified(ctx, api, image_id, target, 'raw',
                                  max_virtual_size=max_virtual_size)
        else:
            with pytest.raises(error):
                images.fetch_verified(ctx, api, image_id, target, 'raw',
                                      max_virtual_size=max_virtual_size)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert max(held) <= images.MAX_PENDING + CHUNK
    # A few MiB of chunks in flight (the hash thread's queue, the one
    # being written), never the image: before MAX_PENDING, 64 MiB.
    assert peak < 8 * MiB, peak
    if error is None:
        assert helpers.leftovers(base_dir) == ['base']
        assert helpers.same_content(src, 'raw', target, 'raw')
    else:
        assert helpers.leftovers(base_dir) == []

"""Helpers of the imagebackend unit tests."""

import collections
import os
import struct
import threading
import time

from nova import exception
from nova.virt.libvirt.imagebackend import cache as image_cache


class VerifiedImage(collections.namedtuple(
        'VerifiedImage', 'format virtual_size disk_format size')):
    """What images.fetch_verified returns."""


class DictFetchCache(image_cache.ImageCache):
    """An ImageCache whose fetch writes ``images[image_id]`` to the target.

    ``images``: {image_id: (fmt, bytes, virtual_size)}. Counts fetches per
    image in ``fetches``; ``delay`` makes each fetch slow so that
    concurrent callers overlap.
    """

    def __init__(self, images, delay=0.0, **kwargs):
        super().__init__(**kwargs)
        self.images = images
        self.delay = delay
        self.fetches = collections.Counter()
        self._count_lock = threading.Lock()

    def _fetch(self, context, image_id, target, fmt, max_virtual_size,
               directory=None):
        with self._count_lock:
            self.fetches[image_id] += 1
        if image_id not in self.images:
            raise exception.ImageNotFound(image_id=image_id)
        img_fmt, data, virtual_size = self.images[image_id]
        if max_virtual_size is not None and virtual_size > max_virtual_size:
            raise exception.ImageTooLarge(image_id=image_id,
                                          virtual_size=virtual_size,
                                          disk_size=max_virtual_size)
        time.sleep(self.delay)
        part = target + '.part'
        with open(part, 'xb') as f:
            f.write(data)
            if img_fmt == 'raw':
                f.truncate(virtual_size)
        os.rename(part, target)
        return VerifiedImage(img_fmt, virtual_size, img_fmt, len(data))


def qcow2_header(virtual_size, backing_file=None, version=3):
    """The first bytes of a qcow2 file, enough for the format inspector."""
    header = bytearray(512)
    bf_offset = 0
    if backing_file:
        bf_offset = 256
        header[256:256 + len(backing_file)] = backing_file.encode()
    struct.pack_into('>4sIQIIQ', header, 0, b'QFI\xfb', version, bf_offset,
                     len(backing_file or ''), 16, virtual_size)
    if version == 3:
        struct.pack_into('>I', header, 100, 104)  # header length
    return bytes(header)

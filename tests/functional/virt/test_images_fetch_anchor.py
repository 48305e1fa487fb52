"""Bytes written by a cold fetch of the anchor image, measured.

The anchor image (the benchmarks' reference image, made here): a 1 GiB
sparse raw image whose first 64 MiB are seeded random bytes, and its qcow2.
Storage writes are read from /proc/self/io, which also counts reaped
children (qemu-img): ``write_bytes`` is counted when pages are dirtied,
``cancelled_write_bytes`` when dirty pages are dropped by a truncate or
unlink before they reach the disk (the qcow2 download, deleted right after
its conversion).

Run with ``-s`` to see the numbers.
"""

import os
import random
import subprocess
import threading

import pytest

from nova import context as nova_context
from nova import image
from nova.image import local
from nova.virt import images
from tests.functional.virt import helpers

MiB = 1 << 20
GiB = 1 << 30
DATA = 64 * MiB


def _io():
    with open('/proc/self/io') as f:
        return {k: int(v) for k, v in (line.split(':') for line in f)}


@pytest.fixture(scope='module')
def anchor(tmp_path_factory):
    """(api, {'raw': image_id, 'qcow2': image_id}, {fmt: source path})."""
    d = tmp_path_factory.mktemp('anchor')
    raw = str(d / 'img.raw')
    with open(raw, 'xb') as f:
        f.truncate(GiB)
        f.write(random.Random(20250101).randbytes(DATA))
    qcow2 = str(d / 'img.qcow2')
    subprocess.run(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2',
                    raw, qcow2], check=True)
    api = image.API(local.LocalImageService(root=str(d / 'store')))
    ctx = nova_context.get_admin_context()
    ids = {fmt: api.import_file(ctx, path, fmt)['id']
           for fmt, path in (('raw', raw), ('qcow2', qcow2))}
    return api, ids, {'raw': raw, 'qcow2': qcow2}


@pytest.mark.parametrize('declared,output_format', [
    ('raw', 'raw'), ('qcow2', 'raw'), ('qcow2', 'qcow2')])
def test_cold_fetch_writes(anchor, tmp_path, declared, output_format):
    api, ids, sources = anchor
    ctx = nova_context.get_admin_context()
    target = str(tmp_path / 'base')
    image_bytes = os.path.getsize(sources[declared])

    before = _io()
    result = images.fetch_verified(ctx, api, ids[declared], target,
                                   output_format)
    # The converted download's last close (which drops its dirty pages)
    # runs in a thread of its own: count what it cancels.
    for thread in threading.enumerate():
        if thread.name == 'close-part':
            thread.join()
    after = _io()

    written = after['write_bytes'] - before['write_bytes']
    cancelled = (after['cancelled_write_bytes'] -
                 before['cancelled_write_bytes'])
    net = written - cancelled
    allocated = helpers.allocated(target)
    print('\nanchor %s->%s: image %d bytes (%d of data); write_bytes %d '
          '(%.3f per data byte, %.3f per image byte), cancelled %d, net %d '
          '(%.3f per data byte); target st_blocks*512 %d (%.3f of data)' % (
              declared, output_format, image_bytes, DATA, written,
              written / DATA, written / image_bytes, cancelled, net,
              net / DATA, allocated, allocated / DATA))

    assert result.virtual_size == GiB
    assert helpers.same_content(sources[declared], declared, target,
                                output_format)
    if output_format == 'raw':
        assert abs(allocated - DATA) <= 0.05 * DATA
    if declared == output_format:
        # One pass, no conversion: each byte of data written once.
        assert written <= 1.1 * DATA
    else:
        # The download, then qemu-img writing only data; the download is
        # deleted before writeback, so the disk sees the data once.
        assert written <= 2.1 * DATA
        assert net <= 1.1 * DATA

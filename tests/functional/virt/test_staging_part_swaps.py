"""Part files swapped for links while they are being made.

Each test runs the operation many times with a ``Racer`` replacing every
part of it by a symlink the moment the part appears. Each run must fail
closed (a typed error, nothing published) or succeed with its own bytes,
and the host file the links point at must stay untouched. (The parts of
the disks themselves: test_staging_disk_swaps.py.)
"""

import os
import subprocess

import pytest

from nova import exception
from nova.virt import images
from nova.virt.libvirt import disk_funcs
from tests.functional.virt.libvirt import helpers as libvirt_helpers
from tests.functional.virt import racer

ROUNDS = 12
MiB = 1024 * 1024
_FAILED_CLOSED = (exception.ImageUnacceptable, exception.ImageFetchFailed,
                  exception.CacheEntryInvalid, exception.ProcessFailed,
                  exception.UnsafePath, OSError)


def _evil_qcow2(outside, victim):
    """A qcow2 whose data-file is the host file: reading it reads that."""
    path = os.path.join(outside, 'evil.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-o',
                    'data_file=%s,data_file_raw=on' % victim.path, path,
                    str(len(victim.CONTENT))], check=True)
    victim.arm()
    return path


def _same_image(path, fmt, expected, expected_fmt):
    return subprocess.run(['qemu-img', 'compare', '-q', '-f', fmt, '-F',
                           expected_fmt, path, expected]).returncode == 0


@pytest.mark.parametrize('link_to', ['host-file', 'qcow2-with-data-file'])
@pytest.mark.parametrize('fmt', ['raw', 'qcow2'])
def test_fetch_parts_swapped(context, image_api, src_dir, outside, victim,
                             tmp_path, fmt, link_to):
    source = libvirt_helpers.make_image_file(src_dir, fmt)
    image_id = image_api.import_file(context, source, fmt)['id']
    base_dir = tmp_path / 'base'
    base_dir.mkdir()
    target = victim.path if link_to == 'host-file' else _evil_qcow2(
        outside, victim)
    published = 0
    with racer.Racer(str(base_dir), r'^\..*\.part$', target) as race:
        for n in range(ROUNDS):
            dest = str(base_dir / ('base%d' % n))
            try:
                # qcow2 -> raw converts: two parts, qemu-img on both.
                images.fetch_verified(context, image_api, image_id, dest,
                                      'raw')
            except _FAILED_CLOSED:
                assert not os.path.lexists(dest)
                continue
            published += 1
            assert not os.path.islink(dest)
            assert _same_image(dest, 'raw', source, fmt)
    assert race.swaps > 0
    victim.assert_untouched()
    # Whatever was published is the image, never the host file's bytes.
    for name in os.listdir(base_dir):
        path = base_dir / name
        if not name.startswith('.') and not path.is_symlink():
            assert victim.CONTENT[:64] not in path.read_bytes()


def test_template_part_swapped(cache, victim):
    # mkfs -F formats whatever its target names: it is handed the part's
    # descriptor, never a name in _base.
    func = disk_funcs.make_ephemeral('ext4', 'ephemeral0')
    base_dir = cache.base_dir
    os.makedirs(base_dir)
    made = 0
    with racer.Racer(base_dir, r'^\.ephemeral_.*\.part$',
                     victim.path) as race:
        for n in range(ROUNDS):
            name = 'ephemeral_%d_ext4' % (n + 1)
            try:
                entry = cache.ensure_template(name, func, 16 * MiB)
            except _FAILED_CLOSED:
                assert not os.path.lexists(os.path.join(base_dir,
                                                        name + '.raw'))
                continue
            made += 1
            assert os.path.getsize(entry.path) == 16 * MiB
            assert not os.path.islink(entry.path)
    assert race.swaps > 0
    victim.assert_untouched()

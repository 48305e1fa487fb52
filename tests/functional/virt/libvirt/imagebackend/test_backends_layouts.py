"""Layouts of Flat and Qcow2 disks on real qemu-img, against upstream's.

Every case creates a disk through the real cache and the real verified
fetch, then reads it back with ``qemu-img info -f <recorded format>``: the
layout must equal the record and upstream Nova 34.0.0's layout for the
same case (as measured on upstream Nova 34.0.0; the table is below).
"""

import os
import shutil
import subprocess

import pytest

import nova.conf
from nova.virt.libvirt import imagebackend
from nova.virt.libvirt.imagebackend import cache as image_cache
from nova.virt.libvirt import disk_funcs
from tests.functional import helpers as func_helpers
from tests.functional.virt.libvirt.imagebackend import helpers

CONF = nova.conf.CONF
MiB = helpers.MiB
IMAGE_SIZE = helpers.IMAGE_SIZE

# Upstream's layout per case, from the anchor's measurements:
# (backend, image disk_format, force_raw_images) ->
#     (disk format, format of the base under the disk or None if standalone)
#
# * flat: a `cp` of the base, extended; the base is raw when
#   force_raw_images is on or the image is raw, else the qcow2 image itself,
#   and the disk has the base's format (resolve_driver_format).
# * qcow2: an overlay over the base in _base: raw when force_raw_images is
#   on (or the image is raw), the qcow2 image itself when it is off.
UPSTREAM_LAYOUTS = {
    ('flat', 'raw', True): ('raw', None),
    ('flat', 'raw', False): ('raw', None),
    ('flat', 'qcow2', True): ('raw', None),
    ('flat', 'qcow2', False): ('qcow2', None),
    ('qcow2', 'raw', True): ('qcow2', 'raw'),
    ('qcow2', 'raw', False): ('qcow2', 'raw'),
    ('qcow2', 'qcow2', True): ('qcow2', 'raw'),
    ('qcow2', 'qcow2', False): ('qcow2', 'qcow2'),
}

# size argument -> (record.size, what create_from_image is passed).
# "absent" is a root disk of root_gb=0: upstream makes it the image's
# virtual size, so the plan records that size.
SIZES = {
    'absent': (IMAGE_SIZE, None),
    'equal': (IMAGE_SIZE, IMAGE_SIZE),
    'larger': (2 * IMAGE_SIZE + 5 * MiB, 2 * IMAGE_SIZE + 5 * MiB),
}


def cache_format(image_format, force_raw):
    """What policy.py records: raw if forced or already raw."""
    return 'raw' if force_raw or image_format == 'raw' else image_format


@pytest.mark.parametrize('size_case', sorted(SIZES))
@pytest.mark.parametrize('force_raw', [True, False],
                         ids=['force_raw', 'keep_format'])
@pytest.mark.parametrize('image_format', ['raw', 'qcow2'])
@pytest.mark.parametrize('backend', ['flat', 'qcow2'])
def test_layout_from_image(backend, image_format, force_raw, size_case,
                           cache, image_service, image_files, base_dir):
    image_id = image_service.ids[image_format]
    base_fmt = cache_format(image_format, force_raw)
    record_size, size_arg = SIZES[size_case]
    record = helpers.make_record(backend, base_fmt, record_size,
                                 image_id=image_id)
    disk = imagebackend.backend_for(helpers.Instance(), record, cache=cache)

    disk.create_from_image(None, image_id, size_arg)

    disk_fmt, backing_fmt = UPSTREAM_LAYOUTS[backend, image_format,
                                             force_raw]
    base_name = image_cache.image_entry_name(image_id, base_fmt)
    base_path = os.path.join(os.path.realpath(base_dir), base_name)
    expected = {
        'format': disk_fmt,
        'virtual_size': record_size,
        'backing_file': base_path if backing_fmt else None,
        'backing_format': backing_fmt,
    }
    # What is on disk equals upstream's layout ...
    assert helpers.layout(disk.path, disk_fmt) == expected
    # ... and the record (format, size, backing format).
    assert (record.format, record.size, record.backing_format) == (
        expected['format'], expected['virtual_size'], backing_fmt)
    inspected = disk.inspect()
    assert inspected.pop('allocated') > 0
    assert inspected == dict(expected, data_file=None)
    disk.verify()

    # The base: sha1(image id) (+.qcow2 when kept qcow2), no backing file,
    # the image's virtual size; next to it its sidecar only.
    assert helpers.layout(base_path, base_fmt) == {
        'format': base_fmt, 'virtual_size': IMAGE_SIZE,
        'backing_file': None, 'backing_format': None}
    assert sorted(os.listdir(base_dir)) == [base_name, base_name + '.info']

    # The guest sees the image's bytes, then zeros.
    assert helpers.same_content(disk.path, disk_fmt, image_files['raw'],
                                'raw')
    # Holes stay holes: the disk holds about the image's data (4 MiB),
    # never its zeros (upstream's flat copy holds the full raw base).
    allocated = os.stat(disk.path).st_blocks * 512
    assert allocated < 8 * MiB

    assert disk.libvirt_info('vda').driver_format == disk_fmt


@pytest.mark.parametrize('backend', ['flat', 'qcow2'])
@pytest.mark.parametrize('kind', ['ephemeral', 'swap'])
def test_layout_from_func(backend, kind, cache, base_dir):
    if kind == 'ephemeral':
        func, name, size, fs = (disk_funcs.make_ephemeral('ext4', 'eph0'),
                                'ephemeral_test_ext4', 64 * MiB, 'ext4')
    else:
        func, name, size, fs = (disk_funcs.make_swap(), 'swap_16', 16 * MiB,
                                'swap')
    disks = []
    for _ in range(2):
        record = helpers.make_record(backend, 'raw', size,
                                     disk_name='disk.' + kind,
                                     cache_name=name)
        disk = imagebackend.backend_for(helpers.Instance(), record,
                                        cache=cache)
        disk.create_from_func(None, func, name, size)
        disks.append(disk)

    entry = name + '.raw'
    template = os.path.join(os.path.realpath(base_dir), entry)
    assert helpers.blkid_type(template) == fs
    assert helpers.layout(template, 'raw')['virtual_size'] == size
    assert sorted(os.listdir(base_dir)) == [entry, entry + '.info']
    for disk in disks:
        if backend == 'flat':
            # upstream: a raw copy of the template
            assert helpers.layout(disk.path, 'raw') == {
                'format': 'raw', 'virtual_size': size, 'backing_file': None,
                'backing_format': None}
            assert helpers.blkid_type(disk.path) == fs
        else:
            # upstream: an overlay over the raw template in _base
            assert helpers.layout(disk.path, 'qcow2') == {
                'format': 'qcow2', 'virtual_size': size,
                'backing_file': template, 'backing_format': 'raw'}
            assert helpers.same_content(disk.path, 'qcow2', template, 'raw')


def test_flat_qcow2_from_template(cache, base_dir):
    record = helpers.make_record('flat', 'qcow2', 16 * MiB,
                                 disk_name='disk.swap', cache_name='swap_16')
    disk = imagebackend.backend_for(helpers.Instance(), record, cache=cache)
    disk.create_from_func(None, disk_funcs.make_swap(), 'swap_16', 16 * MiB)
    assert helpers.layout(disk.path, 'qcow2') == {
        'format': 'qcow2', 'virtual_size': 16 * MiB, 'backing_file': None,
        'backing_format': None}
    assert helpers.same_content(disk.path, 'qcow2',
                                os.path.join(base_dir, 'swap_16.raw'), 'raw')


def test_guest_written_qcow2_header_never_reaches_the_host(
        cache, image_service, tmp_path):
    """OSSA-2026-002: a raw Flat disk stays raw through a resize.

    The guest writes a qcow2 header naming a host file as backing file
    into its own raw disk. Anything that probed the disk would now see a
    qcow2 over the host file; the resize and every later read pin raw.
    """
    secret = tmp_path / 'host-secret'
    secret.write_bytes(b'host secret\n' * 1000)
    image_id = image_service.ids['raw']
    record = helpers.make_record('flat', 'raw', IMAGE_SIZE,
                                 image_id=image_id)
    disk = imagebackend.backend_for(helpers.Instance(), record, cache=cache)
    disk.create_from_image(None, image_id)

    # The guest's write: a real qcow2 header with a backing file.
    evil = str(tmp_path / 'evil.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b',
                    str(secret), '-F', 'raw', evil, str(IMAGE_SIZE)],
                   check=True)
    with open(evil, 'rb') as src, open(disk.path, 'r+b') as dst:
        dst.write(src.read(64 * 1024))
    # This is what a probe would see (why nothing here may probe).
    probed = subprocess.run(['qemu-img', 'info', '--output=json', disk.path],
                            capture_output=True, text=True).stdout
    assert '"qcow2"' in probed and str(secret) in probed
    atime = os.stat(secret).st_atime_ns

    disk.resize(2 * IMAGE_SIZE)

    assert helpers.layout(disk.path, 'raw') == {
        'format': 'raw', 'virtual_size': 2 * IMAGE_SIZE,
        'backing_file': None, 'backing_format': None}
    assert disk.inspect()['backing_file'] is None
    info = disk.libvirt_info('vda')
    assert (info.driver_format, info.backing_store) == ('raw', [])
    assert str(secret) not in info.to_xml()
    assert os.stat(secret).st_atime_ns == atime


@pytest.mark.parametrize('backend', ['flat', 'qcow2'])
def test_qcow2_of_a_size_not_whole_sectors_grows_to_it_again(
        backend, cache, image_service):
    """Qcow2 files only: qemu-img makes a qcow2's size whole 512-byte
    sectors, so the disk is a little larger than its record (a root disk
    of root_gb 0 is as large as its image, whatever that is). Growing it
    to the record's size again is not a shrink."""
    image_id = image_service.ids['qcow2']
    size = IMAGE_SIZE + 1
    record = helpers.make_record(backend, 'qcow2', size, image_id=image_id)
    disk = imagebackend.backend_for(helpers.Instance(), record, cache=cache)
    disk.create_from_image(None, image_id)

    disk.resize(size)

    assert func_helpers.qemu_info(disk.path, 'qcow2')['virtual-size'] == (
        IMAGE_SIZE + 512)


def test_preallocated_record(conf, cache, image_service):
    """Flat and Qcow2 only: the preallocatable backends (specs.py)."""
    # The record decides, not preallocate_images (left at 'none' here).
    image_id = image_service.ids['raw']
    for backend in ('flat', 'qcow2'):
        record = helpers.make_record(backend, 'raw', IMAGE_SIZE,
                                     image_id=image_id)
        record.preallocated = True
        disk = imagebackend.backend_for(helpers.Instance(), record,
                                        cache=cache)
        disk.create_from_image(None, image_id)
        assert os.stat(disk.path).st_blocks * 512 >= IMAGE_SIZE
        assert helpers.layout(disk.path, record.format)['virtual_size'] == \
            IMAGE_SIZE


def test_tools_present():
    for tool in ('qemu-img', 'mkfs.ext4', 'mkswap', 'blkid'):
        assert shutil.which(tool), tool

"""Disks whose file is not what their record says qcow2 is.

A record that says qcow2 for a file that is really raw, and whose guest
wrote a qcow2 header into it (naming a host file as backing file or as
data-file), or a qcow2 file whose chain differs from the record's: before
anything opens such a disk as qcow2 (``qemu-img resize -f qcow2``, a guest
started from the records), ``verify()`` compares ``qemu-img info -f qcow2``
(which opens neither the backing file nor the data-file) with the record
and refuses with DiskLayoutMismatch, touching nothing. Raw disks need no
check: raw has no metadata, and growing one is a truncate.
"""

import hashlib
import json
import os
import subprocess

import pytest

import nova.conf
from nova import exception
from nova.virt.libvirt import imagebackend
from tests.functional import helpers as func_helpers
from tests.functional.virt.libvirt.imagebackend import helpers

CONF = nova.conf.CONF
MiB = helpers.MiB


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def qcow2_header(path, size=MiB, **options):
    """A small qcow2 file made by qemu-img with ``options`` (-o ...), or a
    backing file (``backing``, ``backing_fmt``)."""
    cmd = ['qemu-img', 'create', '-q', '-u', '-f', 'qcow2']
    backing = options.pop('backing', None)
    if backing:
        cmd += ['-b', backing, '-F', options.pop('backing_fmt', 'raw')]
    if options:
        cmd += ['-o', ','.join('%s=%s' % kv for kv in options.items())]
    subprocess.run(cmd + [path, str(size)], check=True)
    with open(path, 'rb') as f:
        return f.read()


@pytest.fixture
def host_file(tmp_path):
    """Stands for a host file of nova's that a guest would like to read
    or grow."""
    path = tmp_path / 'host-file'
    path.write_bytes(b'host data\n' * 100)
    return str(path)


def plant(instance, disk_name, content, size=64 * MiB):
    """A raw file of ``size`` bytes at the disk's path, starting with
    ``content`` (what a guest can write into its own raw disk)."""
    d = os.path.join(CONF.instances_path, instance.uuid)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, disk_name)
    with open(path, 'wb') as f:
        f.truncate(size)
        f.write(content)
    return path


def guest_header(tmp_path, host_file, kind):
    hdr = str(tmp_path / 'hdr.qcow2')
    if kind == 'data-file':
        content = qcow2_header(hdr, data_file=host_file)
        # qemu-img create sized the data file: put the host file back.
        os.truncate(host_file, 1000)
        return content
    return qcow2_header(hdr, backing=host_file)


@pytest.mark.parametrize('kind', ['data-file', 'backing-file'])
def test_raw_file_recorded_as_flat_qcow2_is_never_resized(
        conf, cache, tmp_path, host_file, kind):
    instance = helpers.Instance()
    header = guest_header(tmp_path, host_file, kind)
    path = plant(instance, 'disk', header)
    host_before = (os.path.getsize(host_file), sha256(host_file))
    disk_before = sha256(path)
    record = helpers.make_record('flat', 'qcow2', MiB)
    disk = imagebackend.backend_for(instance, record, cache=cache)

    with pytest.raises(exception.DiskLayoutMismatch) as e:
        disk.resize(512 * MiB)
    assert instance.uuid in str(e.value) and 'disk' in str(e.value)
    assert host_file in str(e.value)
    # Nothing was opened as qcow2 for writing: the host file and the
    # guest's bytes are as they were.
    assert (os.path.getsize(host_file), sha256(host_file)) == host_before
    assert sha256(path) == disk_before
    assert os.path.getsize(path) == 64 * MiB

    # `show` sees what the header names.
    found = disk.inspect()
    if kind == 'data-file':
        assert found['data_file'] == host_file
    else:
        assert found['backing_file'] == host_file
        assert found['data_file'] is None


def test_plain_raw_file_recorded_as_qcow2_is_refused(conf, cache):
    instance = helpers.Instance()
    path = plant(instance, 'disk', b'just a guest\'s data')
    record = helpers.make_record('flat', 'qcow2', MiB)
    disk = imagebackend.backend_for(instance, record, cache=cache)
    with pytest.raises(exception.DiskLayoutMismatch, match='qcow2'):
        disk.resize(2 * MiB)
    assert os.path.getsize(path) == 64 * MiB


@pytest.mark.parametrize('backing,backing_fmt,data_file', [
    ('host', 'raw', False),      # another backing file
    ('base', 'qcow2', False),    # the base, in another format
    (None, None, False),         # no backing file at all
    ('base', 'raw', True),       # the right base, and a data-file
])
def test_qcow2_overlay_must_have_the_recorded_chain(
        conf, cache, tmp_path, host_file, backing, backing_fmt, data_file):
    instance = helpers.Instance()
    record = helpers.make_record('qcow2', 'raw', MiB, image_id='img-1')
    disk = imagebackend.backend_for(instance, record, cache=cache)
    base = cache.image_path('img-1', 'raw')
    options = {}
    if backing:
        options = dict(backing=host_file if backing == 'host' else base,
                       backing_fmt=backing_fmt)
    if data_file:
        options['data_file'] = host_file
    os.makedirs(os.path.dirname(disk.path))
    qcow2_header(disk.path, **options)
    before = sha256(disk.path)

    with pytest.raises(exception.DiskLayoutMismatch) as e:
        disk.resize(2 * MiB)
    assert base in str(e.value)  # what was expected
    assert sha256(disk.path) == before


@pytest.mark.parametrize('backend,cache_format', [
    ('qcow2', 'raw'), ('qcow2', 'qcow2'), ('flat', 'qcow2'), ('flat', 'raw')])
def test_disks_as_recorded_pass_and_grow(conf, cache, image_service,
                                         backend, cache_format):
    image_id = image_service.ids[cache_format]
    record = helpers.make_record(backend, cache_format, 64 * MiB,
                                 image_id=image_id)
    disk = imagebackend.backend_for(helpers.Instance(), record, cache=cache)
    disk.create_from_image(None, image_id)
    disk.verify()
    disk.resize(96 * MiB)
    info = func_helpers.qemu_info(disk.path, record.format)
    assert info['virtual-size'] == 96 * MiB
    assert disk.inspect()['data_file'] is None


def test_verify_of_a_missing_disk(conf, cache):
    record = helpers.make_record('qcow2', 'raw', MiB, image_id='img-1')
    disk = imagebackend.backend_for(helpers.Instance(), record, cache=cache)
    with pytest.raises(exception.DiskNotFound):
        disk.verify()


def test_link_at_a_qcow2_disk_is_refused_unread(conf, cache, tmp_path):
    instance = helpers.Instance()
    target = str(tmp_path / 'elsewhere.qcow2')
    qcow2_header(target)
    d = os.path.join(CONF.instances_path, instance.uuid)
    os.makedirs(d)
    os.symlink(target, os.path.join(d, 'disk'))
    record = helpers.make_record('flat', 'qcow2', MiB)
    disk = imagebackend.backend_for(instance, record, cache=cache)
    with pytest.raises(exception.DiskLayoutMismatch, match='regular file'):
        disk.resize(2 * MiB)


def _swap_after(disk, method, evil):
    """Make ``disk.<method>`` swap the disk for ``evil`` once it returned
    (the disk itself moves to ``.moved``)."""
    real = getattr(disk, method)

    def then_swap(*args):
        result = real(*args)
        os.rename(disk.path, disk.path + '.moved')
        os.rename(evil, disk.path)
        return result

    setattr(disk, method, then_swap)


@pytest.fixture
def qcow2_disk_and_evil(conf, cache, image_service, tmp_path, host_file,
                        request):
    """A qcow2 disk of the given backend, and beside it a qcow2 file
    whose data-file is a host file, ready to take the disk's name."""
    image_id = image_service.ids['qcow2']
    record = helpers.make_record(request.param, 'qcow2', 64 * MiB,
                                 image_id=image_id)
    disk = imagebackend.backend_for(helpers.Instance(), record, cache=cache)
    disk.create_from_image(None, image_id)
    evil = str(tmp_path / 'evil.qcow2')
    qcow2_header(evil, data_file=host_file)
    os.truncate(host_file, 1000)
    return disk, evil


@pytest.mark.parametrize('qcow2_disk_and_evil', ['flat', 'qcow2'],
                         indirect=True)
def test_disk_swapped_before_its_check_is_refused(qcow2_disk_and_evil,
                                                  host_file):
    # The swap lands after the resize started and before it opens the
    # disk (_existing_image makes the opener, which opens on entry): what
    # it opens is checked, and refused.
    disk, evil = qcow2_disk_and_evil
    host_before = (os.path.getsize(host_file), sha256(host_file))
    _swap_after(disk, '_existing_image', evil)

    with pytest.raises(exception.DiskLayoutMismatch) as e:
        disk.resize(96 * MiB)
    assert host_file in str(e.value)
    assert (os.path.getsize(host_file), sha256(host_file)) == host_before


@pytest.mark.parametrize('qcow2_disk_and_evil', ['flat', 'qcow2'],
                         indirect=True)
def test_disk_swapped_after_its_check_is_never_resized(qcow2_disk_and_evil,
                                                       host_file):
    # A writer of the instance directory swaps the disk for the evil file
    # right after the resize checked the disk. No thread hits that window
    # reliably: the swap is made by the check itself, once it has passed.
    # The resize works on the file that was checked (now at .moved),
    # never on the one now at the name.
    disk, evil = qcow2_disk_and_evil
    host_before = (os.path.getsize(host_file), sha256(host_file))
    evil_before = sha256(evil)
    _swap_after(disk, '_check_layout', evil)

    disk.resize(96 * MiB)

    grown = subprocess.run(
        ['qemu-img', 'info', '-f', 'qcow2', '--output=json',
         disk.path + '.moved'], check=True, capture_output=True, text=True)
    assert json.loads(grown.stdout)['virtual-size'] == 96 * MiB
    assert sha256(disk.path) == evil_before
    assert (os.path.getsize(host_file), sha256(host_file)) == host_before

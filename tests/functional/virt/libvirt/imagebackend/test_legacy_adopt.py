"""Nova 34's files in ``_base``: adopted under the overlays it made, never
replaced by this project's own entries, and kept by cleanup while any disk
may still sit on them.

Every disk and base here is made by upstream Nova 34.0.0's own code (see
nova34_disks.py); the guests are defined on libvirt's test driver.
"""

import hashlib
import json
import os
import subprocess
from xml.etree import ElementTree as etree

from oslo_utils import uuidutils
import pytest

from nova import image
from nova.objects import libvirt_disk
from nova.virt.libvirt.imagebackend import cache as image_cache
from nova.virt.libvirt.imagebackend import manager as disk_manager
from tests.functional import helpers as func_helpers
from tests.functional.virt.libvirt import helpers as libvirt_helpers
from tests.functional.virt.libvirt.imagebackend import nova34_disks

pytestmark = pytest.mark.usefixtures('upstream')

EPHEMERALS = ({'size': 1, 'guest_format': None},)


def _base_dir():
    return os.path.join(os.path.abspath(nova34_disks.CONF.instances_path),
                        '_base')


def _state(path):
    """What must not change of a file Nova 34 made: inode, mtime, bytes."""
    st = os.stat(path)
    with open(path, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return st.st_ino, st.st_mtime_ns, digest


def _sidecar(name):
    with open(os.path.join(_base_dir(), name + '.info')) as f:
        return json.load(f)


def _upstream_instance(context, layout, nova34_image_files, image_format,
                       image_id=None):
    return nova34_disks.make_upstream_instance(
        context, layout, nova34_image_files, image_format,
        ephemerals=EPHEMERALS, swap_mb=64, image_id=image_id)


#: (layout, image format) -> the format of Nova 34's base of the image.
BASES = {('qcow2-keep', 'qcow2'): 'qcow2',
         ('qcow2-forceraw', 'raw'): 'raw',
         ('qcow2-forceraw', 'qcow2'): 'raw'}


@pytest.mark.parametrize('case', sorted(BASES), ids='-'.join)
def test_upstream_overlay_boots_and_a_new_boot_leaves_its_base_alone(
        conf, context, nova34_image_files, driver, case):
    layout, image_format = case
    base_format = BASES[case]
    nova34_disks.configure(conf, layout)
    meta = image.API().import_file(context, nova34_image_files[image_format],
                                   image_format, name='legacy')
    instance, made = _upstream_instance(context, layout, nova34_image_files,
                                        image_format, image_id=meta['id'])
    sha1 = libvirt_disk.upstream_base_name(meta['id'])
    upstream_files = sorted(os.listdir(_base_dir()))
    assert sha1 in upstream_files and 'swap_64' in upstream_files
    before = {name: _state(os.path.join(_base_dir(), name))
              for name in upstream_files}

    # Booted under this driver: every disk recorded on first touch, over
    # the adopted file Nova 34 made, and defined over exactly that file.
    driver.power_on(context, instance)
    records = libvirt_helpers.records(context, instance)
    root = records['disk']
    assert (root.backend, root.format, root.backing_format,
            root.base_name) == ('qcow2', 'qcow2', base_format, sha1)
    for record in records.values():
        nova34_disks.assert_record_matches_storage(instance, record)
        # The base is exactly what qemu-img sees: no further layer.
        base = os.path.join(_base_dir(), record.base_name)
        info = func_helpers.qemu_info(base, record.backing_format)
        assert info['format'] == record.backing_format
        assert 'backing-filename' not in info
        assert _sidecar(record.base_name)['adopted'] is True
        assert _sidecar(record.base_name)['format'] == record.backing_format
    assert _sidecar(sha1)['image_id'] == meta['id']
    assert _sidecar('swap_64')['template'] == 'swap_64'
    xml = etree.fromstring(
        driver.host.lookup_domain(instance).XMLDesc(0))
    stores = {d.find('source').get('file'):
              (d.find('backingStore/source').get('file'),
               d.find('backingStore/format').get('type'))
              for d in xml.findall('devices/disk')}
    assert stores[made['disks']['disk']] == (
        os.path.join(_base_dir(), sha1), base_format)

    # A new boot of the same image with this project's code makes its own
    # entries and leaves every file Nova 34 made as it was.
    new = nova34_disks.create_instance_rows(
        context, uuidutils.generate_uuid(), meta['id'],
        ephemerals=EPHEMERALS, swap_mb=64)
    driver.spawn(context, new, meta)
    new_root = libvirt_helpers.records(context, new)['disk']
    own = image_cache.image_entry_name(meta['id'], new_root.backing_format)
    assert own == sha1 + '.' + new_root.backing_format
    assert new_root.base_name is None
    listing = os.listdir(_base_dir())
    assert own in listing and 'swap_64.raw' in listing
    assert before == {name: _state(os.path.join(_base_dir(), name))
                      for name in upstream_files}
    info = func_helpers.qemu_info(
        os.path.join(nova34_disks.CONF.instances_path, new.uuid, 'disk'),
        'qcow2')
    assert info['backing-filename'] == os.path.join(_base_dir(), own)

    # Both destroyed under this driver; the cache files stay for cleanup.
    for inst in (instance, new):
        driver.destroy(context, inst)
        assert driver.host.lookup_domain(inst) is None
        assert not os.path.exists(os.path.join(
            nova34_disks.CONF.instances_path, inst.uuid))
    assert before == {name: _state(os.path.join(_base_dir(), name))
                      for name in upstream_files}


def test_cleanup_keeps_adopted_files_while_disks_are_unrecorded(
        conf, context, nova34_image_files):
    conf.config(group='image_cache',
                remove_unused_original_minimum_age_seconds=0)
    nova34_disks.configure(conf, 'qcow2-forceraw')
    recorded, _ = _upstream_instance(context, 'qcow2-forceraw',
                                     nova34_image_files, 'raw')
    unrecorded, _ = _upstream_instance(context, 'qcow2-forceraw',
                                       nova34_image_files, 'qcow2')
    disk_manager.DiskManager().local_disks(
        recorded, nova34_disks.bdms_of(context, recorded))
    # A base of Nova 34's that no disk sits on any more: never adopted.
    stray = libvirt_disk.upstream_base_name('an-image-long-gone')
    with open(os.path.join(_base_dir(), stray), 'wb') as f:
        f.truncate(1 << 20)
    adopted = libvirt_disk.upstream_base_name(recorded.image_ref)
    other = libvirt_disk.upstream_base_name(unrecorded.image_ref)
    cache = image_cache.ImageCache()
    # As if no record named the recorded instance's base any more.
    in_use = lambda: image_cache.names_in_use(context) - {adopted}  # noqa
    listing = sorted(os.listdir(_base_dir()))
    assert adopted + '.info' in listing and other + '.info' not in listing

    # A disk without a record may sit on any adopted file: nothing goes.
    assert image_cache.unrecorded_disks_exist(context)
    assert cache.cleanup(context, in_use=in_use()) == []
    assert sorted(os.listdir(_base_dir())) == listing

    # Once every disk has its record, an adopted file no record names
    # goes; Nova 34's files nobody adopted stay.
    disk_manager.DiskManager().local_disks(
        unrecorded, nova34_disks.bdms_of(context, unrecorded))
    assert not image_cache.unrecorded_disks_exist(context)
    assert cache.cleanup(context, in_use=in_use()) == [adopted]
    left = sorted(os.listdir(_base_dir()))
    assert adopted not in left and adopted + '.info' not in left
    assert stray in left and stray + '.info' not in left
    assert other in left and 'swap_64' in left


def _hostile_base(base, tmp_path, kind):
    """Replace Nova 34's qcow2 base with one that names a host file.

    :returns: the host file's path.
    """
    size = str(libvirt_helpers.IMAGE_VIRTUAL_SIZE)
    os.unlink(base)
    if kind == 'backing-file':
        secret = str(tmp_path / 'host-secret')
        with open(secret, 'w') as f:
            f.write('root:the host secret\n')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b',
                        secret, '-F', 'raw', base, size], check=True)
    else:
        secret = str(tmp_path / 'host-data')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-o',
                        'data_file=%s' % secret, base, size], check=True)
    return secret


@pytest.mark.parametrize('kind', ['backing-file', 'data-file'])
def test_hostile_upstream_base_is_not_adopted(conf, context,
                                              nova34_image_files, tmp_path,
                                              kind):
    nova34_disks.configure(conf, 'qcow2-keep')
    instance, _ = _upstream_instance(context, 'qcow2-keep', nova34_image_files,
                                     'qcow2')
    sha1 = libvirt_disk.upstream_base_name(instance.image_ref)
    secret = _hostile_base(os.path.join(_base_dir(), sha1), tmp_path, kind)
    trace = str(tmp_path / 'strace.log')
    result = nova34_disks.manage(tmp_path, 'libvirt', 'record_disks',
                                 '--instance', instance.uuid, strace_log=trace)
    assert result.returncode == 1
    assert 'cannot be adopted' in result.stdout
    assert 'safety check failed' in result.stdout
    # The root disk is not recorded, its base has no sidecar, and the host
    # file was never opened; the disks on good templates are recorded.
    records = libvirt_helpers.records(context, instance)
    assert sorted(records) == ['disk.eph0', 'disk.swap']
    assert not os.path.exists(os.path.join(_base_dir(), sha1 + '.info'))
    assert nova34_disks.opened(trace, secret) == []

"""Helpers of the legacy-disk tests: disks made by real Nova 34.0.0.

``make_upstream_instance`` runs ``upstream_maker.py`` with the upstream
venv's python (NOVA_TEST_UPSTREAM_PYTHON) in its own process, then gives
this project's database the rows Nova 34 has for such an instance: the
instance and its local block device mappings, without ``driver_info``.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

from oslo_utils import units
from oslo_utils import uuidutils

import nova.conf
from nova import objects
from nova.virt.libvirt.imagebackend import cache as image_cache
from tests.functional import helpers as func_helpers

CONF = nova.conf.CONF

UPSTREAM_PYTHON_ENV = 'NOVA_TEST_UPSTREAM_PYTHON'
MAKER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                     'upstream_maker.py')

#: Layout settings per case: (images_type, use_cow_images,
#: force_raw_images).
LAYOUTS = {
    'flat-forceraw': ('flat', False, True),
    'flat-keep': ('flat', False, False),
    'qcow2-forceraw': ('qcow2', True, True),
    'qcow2-keep': ('qcow2', True, False),
}


def upstream_python():
    return os.environ.get(UPSTREAM_PYTHON_ENV) or None


def configure(conf, layout):
    """Set this node's layout options as Nova 34's were."""
    images_type, use_cow, force_raw = LAYOUTS[layout]
    conf.config(group='libvirt', images_type=images_type)
    conf.config(use_cow_images=use_cow, force_raw_images=force_raw)


def run_upstream(spec):
    """Run upstream's _create_image for ``spec`` (see upstream_maker.py).

    :returns: the maker's JSON output.
    """
    python = upstream_python()
    # -P and a working directory outside this tree: this project is also
    # called nova and would shadow upstream's.
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run(
            [python, '-P', MAKER], input=json.dumps(spec), cwd=cwd,
            capture_output=True, text=True,
            env=dict(os.environ, OS_NOVA_DISABLE_EVENTLET_PATCHING='1'))
    if proc.returncode:
        raise AssertionError('upstream _create_image failed:\n%s' %
                             proc.stderr[-4000:])
    return json.loads(proc.stdout)


def make_upstream_instance(context, layout, image_files, image_format,
                           root_gb=1, ephemerals=({'size': 1},),
                           swap_mb=64, os_type=None, image_id=None):
    """Disks made by Nova 34.0.0, and this project's rows for them.

    :param layout: a LAYOUTS key, also set on this node's CONF (the tests'
        ``conf`` must have been configured with it).
    :param ephemerals: [{'size': GB, 'guest_format': fs or None}].
    :param image_id: the image's id (default: a new uuid), e.g. that of
        the same file in this project's image store.
    :returns: (Instance, the maker's output).
    """
    images_type, use_cow, force_raw = LAYOUTS[layout]
    uuid = uuidutils.generate_uuid()
    image_id = image_id or uuidutils.generate_uuid()
    made = run_upstream({
        'instances_path': os.path.abspath(CONF.instances_path),
        'images_type': images_type, 'use_cow_images': use_cow,
        'force_raw_images': force_raw,
        'image': image_files[image_format], 'disk_format': image_format,
        'image_id': image_id, 'uuid': uuid, 'root_gb': root_gb,
        'ephemerals': [dict(e) for e in ephemerals], 'swap_mb': swap_mb,
        'os_type': os_type})
    instance = create_instance_rows(context, uuid, image_id, root_gb,
                                    ephemerals, swap_mb)
    return instance, made


def create_instance_rows(context, uuid, image_id, root_gb=1,
                         ephemerals=({'size': 1},), swap_mb=64):
    """The rows Nova 34 has for an instance: the instance (on
    ``legacy-host``) and its local mappings, without ``driver_info``.

    :returns: the Instance.
    """
    instance = objects.Instance(
        context, uuid=uuid, display_name='legacy', image_ref=image_id,
        root_gb=root_gb, ephemeral_gb=sum(e['size'] for e in ephemerals),
        flavor=objects.Flavor.from_sizes(
            root_gb, sum(e['size'] for e in ephemerals), swap_mb),
        vm_state='active', host='legacy-host')
    instance.create()
    mappings = [dict(source_type='image', destination_type='local',
                     boot_index=0, image_id=image_id, device_type='disk',
                     device_name='/dev/vda')]
    letters = iter('bcdefgh')
    for eph in ephemerals:
        mappings.append(dict(source_type='blank', destination_type='local',
                             boot_index=-1,
                             guest_format=eph.get('guest_format'),
                             volume_size=eph['size'], device_type='disk',
                             device_name='/dev/vd' + next(letters)))
    if swap_mb:
        mappings.append(dict(source_type='blank', destination_type='local',
                             boot_index=-1, guest_format='swap',
                             volume_size=swap_mb, device_type='disk',
                             device_name='/dev/vd' + next(letters)))
    for values in mappings:
        objects.BlockDeviceMapping(context, instance_uuid=uuid,
                                   **values).create()
    return instance


def bdms_of(context, instance):
    return objects.BlockDeviceMappingList.get_by_instance_uuid(
        context, instance.uuid)


def assert_record_matches_storage(instance, record):
    """The record equals what ``qemu-img info -f <format>`` reports."""
    path = os.path.join(CONF.instances_path, instance.uuid,
                        record.disk_name)
    info = func_helpers.qemu_info(path, record.format)
    assert info['format'] == record.format
    assert info['virtual-size'] == record.size
    assert 'data-file' not in info.get('format-specific', {}).get('data', {})
    if record.backend == 'qcow2':
        if record.base_name:
            # Nova 34's overlays sit on the file of its own name, adopted.
            base = record.base_name
            assert base == (record.cache_name or _sha1(record.image_id))
        else:
            # A disk this code made (e.g. one missing that spawn made new)
            # sits on an entry of this cache's own naming.
            [base] = image_cache.entry_name_for_record(record)
        assert info['backing-filename'] == os.path.join(
            os.path.abspath(CONF.instances_path), '_base', base)
        assert info['backing-filename-format'] == record.backing_format
    else:
        assert 'backing-filename' not in info


def _sha1(text):
    import hashlib
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def manage_command(tmp_path, *args, prog='nova-manage'):
    """The argv of ``prog`` (nova-manage or nova-libvirt) with a config
    file naming this test's database, instances_path and layout options
    (as CONF holds them now)."""
    conf_file = os.path.join(str(tmp_path), 'nova-manage.conf')
    with open(conf_file, 'w') as f:
        # This node is the legacy instances' host (make_upstream_instance).
        f.write('[DEFAULT]\nhost = legacy-host\n'
                'state_path = %s\ninstances_path = %s\n'
                'use_cow_images = %s\nforce_raw_images = %s\n'
                '[libvirt]\nimages_type = %s\n'
                '[database]\nconnection = %s\n' % (
                    CONF.state_path, CONF.instances_path,
                    CONF.use_cow_images, CONF.force_raw_images,
                    CONF.libvirt.images_type, CONF.database.connection))
    script = os.path.join(os.path.dirname(sys.executable), prog)
    module = {'nova-manage': 'manage', 'nova-libvirt': 'libvirt'}[prog]
    cmd = ([script] if os.path.exists(script)
           else [sys.executable, '-m', 'nova.cmd.' + module])
    return cmd + ['--config-file', conf_file] + list(args)


def manage(tmp_path, *args, strace_log=None, prog='nova-manage'):
    """Run ``prog`` as an operator would, in a process of its own (see
    manage_command).

    :param strace_log: if set, run under ``strace -f -e trace=open,openat``
        writing the trace there.
    :returns: the CompletedProcess (text).
    """
    cmd = manage_command(tmp_path, *args, prog=prog)
    if strace_log:
        cmd = ['strace', '-f', '-qq', '-e', 'trace=open,openat', '-o',
               strace_log] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def make_flat_raw_instances(context, count, host='legacy-host'):
    """``count`` instances with one Flat raw root disk each, laid out as
    Nova 34 leaves them (a sparse file and a disk.info), without records.
    Made here rather than by upstream for speed: for tests of the bulk
    run's bookkeeping, not of inference (see make_upstream_instance).
    """
    instances = []
    for _ in range(count):
        uuid = uuidutils.generate_uuid()
        image_id = uuidutils.generate_uuid()
        inst_dir = os.path.join(CONF.instances_path, uuid)
        os.makedirs(inst_dir)
        disk = os.path.join(inst_dir, 'disk')
        with open(disk, 'wb') as f:
            f.truncate(units.Gi)
        with open(os.path.join(inst_dir, 'disk.info'), 'w') as f:
            json.dump({disk: 'raw'}, f)
        instance = objects.Instance(
            context, uuid=uuid, display_name='legacy', image_ref=image_id,
            root_gb=1, vm_state='active', host=host)
        instance.create()
        objects.BlockDeviceMapping(
            context, instance_uuid=uuid, source_type='image',
            destination_type='local', boot_index=0, image_id=image_id,
            device_type='disk', device_name='/dev/vda').create()
        instances.append(instance)
    return instances


def opened(strace_log, path):
    """The lines of an strace log that open ``path``: by its whole name, or
    by its last component relative to a directory descriptor (as the
    backends open disks, ``openat(dirfd, "disk", ...)``)."""
    relative = re.compile(r'openat\((?!AT_FDCWD)\d+, "%s"' %
                          re.escape(os.path.basename(path)))
    with open(strace_log) as f:
        return [line for line in f
                if '"%s"' % path in line or relative.search(line)]

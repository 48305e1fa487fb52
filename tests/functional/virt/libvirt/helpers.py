"""Helpers of the libvirt driver's functional tests (see conftest.py)."""

import hashlib
import os
import subprocess
from xml.etree import ElementTree as etree

from oslo_utils import units
from oslo_utils import uuidutils

import nova.conf
from nova import exception
from nova.image import api as image_api_mod
from nova import objects
from nova.virt.libvirt import imagebackend
from nova.virt import sparse

CONF = nova.conf.CONF

#: The test images: 64 MiB virtual, 1 MiB of data at the start.
IMAGE_VIRTUAL_SIZE = 64 * units.Mi

#: Read size of the helpers that stream a disk or an image.
CHUNK = units.Mi

#: The file backends that have landed.
FILE_BACKENDS = [b for b in ('flat', 'qcow2') if b in imagebackend.BACKENDS]

#: (backend, image format, force_raw_images) -> the root disk's
#: (format, backing_format) that the record and the file must show.
CASES = {
    ('flat', 'raw', True): ('raw', None),
    ('flat', 'qcow2', True): ('raw', None),
    ('flat', 'qcow2', False): ('qcow2', None),
    ('qcow2', 'raw', True): ('qcow2', 'raw'),
    ('qcow2', 'qcow2', True): ('qcow2', 'raw'),
    ('qcow2', 'qcow2', False): ('qcow2', 'qcow2'),
}
CASE_KEYS = sorted(k for k in CASES if k[0] in FILE_BACKENDS)

#: A 4-disk instance's disks, in attach order (vda, vdb, vdc, vdd).
DISK_NAMES = ['disk', 'disk.local', 'disk.eph1', 'disk.swap']


def case_id(case):
    """'qcow2-raw-forceraw' for a CASES key."""
    return '%s-%s-%s' % (case[0], case[1],
                         'forceraw' if case[2] else 'keep')


def configure(conf, backend, force_raw):
    """Set the node's layout settings for new disks."""
    conf.config(group='libvirt', images_type=backend)
    conf.config(force_raw_images=force_raw,
                use_cow_images=(backend == 'qcow2'))


def make_image_file(directory, fmt, name=None, data=b'nova' * 256 * 1024):
    """A disk image of IMAGE_VIRTUAL_SIZE whose first bytes are ``data``."""
    raw = os.path.join(directory, (name or 'image') + '.raw')
    with open(raw, 'wb') as f:
        f.write(data)
        f.truncate(IMAGE_VIRTUAL_SIZE)
    if fmt == 'raw':
        return raw
    out = os.path.join(directory, (name or 'image') + '.' + fmt)
    subprocess.run(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', fmt,
                    raw, out], check=True)
    return out


def create_instance(context, image_meta, root_gb=1, ephemeral_gb=1,
                    swap_mb=64, ephemerals=1):
    """An Instance and its mappings, as the API would make them.

    Root from the image (boot_index 0), ``ephemerals`` blank ext4 disks of
    ``ephemeral_gb`` each, and a swap disk if ``swap_mb``.

    :returns: (instance, BlockDeviceMappingList as loaded from the DB).
    """
    instance = objects.Instance(
        context, uuid=uuidutils.generate_uuid(), display_name='test',
        image_ref=image_meta['id'], root_gb=root_gb,
        ephemeral_gb=ephemeral_gb, vm_state='building',
        flavor=objects.Flavor.from_sizes(root_gb, ephemeral_gb, swap_mb))
    instance.create()
    mappings = [dict(source_type='image', destination_type='local',
                     boot_index=0, image_id=image_meta['id'],
                     device_type='disk')]
    for _ in range(ephemerals):
        mappings.append(dict(source_type='blank', destination_type='local',
                             boot_index=-1, guest_format='ext4',
                             volume_size=ephemeral_gb, device_type='disk'))
    if swap_mb:
        mappings.append(dict(source_type='blank', destination_type='local',
                             boot_index=-1, guest_format='swap',
                             volume_size=swap_mb, device_type='disk'))
    for values in mappings:
        objects.BlockDeviceMapping(context, instance_uuid=instance.uuid,
                                   **values).create()
    return instance, objects.BlockDeviceMappingList.get_by_instance_uuid(
        context, instance.uuid)


def disk_files(instance):
    """Names of the files in the instance's directory (sorted)."""
    path = os.path.join(CONF.instances_path, instance.uuid)
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def records(context, instance):
    """{disk_name: record} as persisted in the database now."""
    result = {}
    for bdm in objects.BlockDeviceMappingList.get_by_instance_uuid(
            context, instance.uuid):
        record = bdm.get_disk_metadata()
        if record is not None:
            result[record.disk_name] = record
    return result


def file_digest(path):
    """The sha256 hex digest of a file's bytes, read in chunks (a disk
    here is a GiB, mostly holes: never read whole into memory)."""
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()


def download_to(image_api, image_id, path):
    """Write an image's bytes to the new file ``path``, zero chunks as
    holes, so that a test's tmp_path holds its data, not its size."""
    with open(path, 'xb') as f:
        for chunk in image_api.download(None, image_id):
            if sparse.is_zero(chunk):
                f.seek(len(chunk), os.SEEK_CUR)
            else:
                f.write(chunk)
        f.truncate()
    return path


class AcceptingStore(image_api_mod.ImageService):
    """An image service that keeps uploads as declared, without checking
    their content: what Glance does with a plain qcow2 declared raw (see
    ENVIRONMENT notes of the project: Glance accepts it). Glance itself is
    not run here; this stand-in has only the one behaviour that matters,
    and every check after it is the project's real verified fetch."""

    def __init__(self, root):
        self.root = root
        self.meta = {}

    def get(self, context, image_id):
        if image_id not in self.meta:
            raise exception.ImageNotFound(image_id=image_id)
        return dict(self.meta[image_id])

    def download(self, context, image_id):
        with open(os.path.join(self.root, image_id), 'rb') as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def import_file(self, context, path, disk_format, name=None,
                    container_format='bare', progress=None, min_disk=0,
                    properties=None):
        image_id = uuidutils.generate_uuid()
        stored = os.path.join(self.root, image_id)
        # Sparse: a snapshot of a 1 GiB disk holds a few MiB of data.
        # (``path`` may be a /proc/<pid>/fd link: followed.)
        with open(path, 'rb') as src, open(stored, 'xb') as dst:
            sparse.copy_fd(src.fileno(), dst.fileno())
        size = os.path.getsize(stored)
        md5, sha512 = hashlib.md5(), hashlib.sha512()
        for chunk in self.download(context, image_id):
            md5.update(chunk)
            sha512.update(chunk)
        self.meta[image_id] = {
            'id': image_id, 'name': name, 'status': 'active',
            'disk_format': disk_format, 'container_format': 'bare',
            'size': size, 'checksum': md5.hexdigest(),
            'os_hash_algo': 'sha512', 'os_hash_value': sha512.hexdigest(),
            'virtual_size': size, 'min_disk': min_disk,
            'properties': dict(properties or {})}
        return self.get(context, image_id)


def live_disks(dom):
    """{target: (driver type, [backing formats])} of the running domain."""
    disks = {}
    for disk in etree.fromstring(dom.XMLDesc(0)).findall('./devices/disk'):
        chain = []
        store = disk.find('backingStore')
        while store is not None and store.find('format') is not None:
            chain.append(store.find('format').get('type'))
            store = store.find('backingStore')
        disks[disk.find('target').get('dev')] = (
            disk.find('driver').get('type'), chain)
    return disks

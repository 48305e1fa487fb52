"""Driving upstream Nova 34.0.0's own disk code, in upstream's venv.

Imported by the scripts that run under upstream's python (the legacy
tests' maker and the benchmarks' ``upstream_disks.py``), never by this
project: it imports upstream's ``nova``. Those scripts run with ``-P`` (or
from outside this tree) so that this project's ``nova`` cannot shadow
upstream's, and put this directory on ``sys.path`` themselves.

Everything that lays a disk out stays upstream's. What cannot run here is
replaced, in one place:

* Glance: ``nova.image.glance._glanceclient_from_endpoint`` returns a
  client whose ``images.get`` describes one local file as Glance would
  (``image_record``) and whose ``images.data`` streams it in 64 KiB chunks
  and verifies them as glanceclient's ``images.data()`` does by default
  (upstream Nova calls it so): through glanceclient's own
  ``serious_integrity_iter``, with the record's ``os_hash_algo``;
* privsep: the sys_admin context runs in the calling (root) process
  instead of a daemon;
* device-mapper (Lvm only, ``emulate_lvm_devices``): this kernel has
  none, so no volume is ever activated; right after upstream's lvcreate,
  ``/dev/<vg>/<lv>`` becomes a link to a loop device over the volume's
  extents (tools/upstream/lvm_devices.py), and its lvremove undoes that.
"""

import hashlib
import os

GLANCE_CHUNK = 64 * 1024

#: The image's own keys in Glance's schema; any other key is read by
#: nova.image.glance as a custom property (no disk_format then).
_CORE = ('id', 'name', 'status', 'visibility', 'protected', 'checksum',
         'os_hash_algo', 'os_hash_value', 'owner', 'size', 'virtual_size',
         'min_ram', 'min_disk', 'disk_format', 'container_format',
         'created_at', 'updated_at', 'tags', 'os_hidden')


class Image(dict):
    """What glanceclient's v2 ``images.get`` returns (a warlock model): a
    dict with attributes and a schema."""

    schema = {'name': 'image',
              'properties': {k: {'type': 'string'} for k in _CORE},
              'additionalProperties': {'type': 'string'}}

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)


class Data:
    """glanceclient's iterable-with-length of an image's bytes, checked as
    its ``images.data(image_id)`` checks them: each chunk is hashed as it
    is handed over, and the end raises IOError unless the digest is the
    record's ``os_hash_value``."""

    def __init__(self, path, hash_algo, hash_value):
        self.path = path
        self.hash_algo = hash_algo
        self.hash_value = hash_value
        self.wrapped = self
        self.length = os.path.getsize(path)

    def __len__(self):
        return self.length

    def __iter__(self):
        from glanceclient.common import utils
        return utils.serious_integrity_iter(
            self._chunks(), hashlib.new(self.hash_algo), self.hash_value)

    def _chunks(self):
        with open(self.path, 'rb') as f:
            for chunk in iter(lambda: f.read(GLANCE_CHUNK), b''):
                yield chunk


class Images:
    """``client.images`` of one image; ``fetches`` counts data() calls."""

    def __init__(self, record, path):
        self.record = record
        self.path = path
        self.fetches = 0

    def get(self, image_id):
        from glanceclient import exc
        if image_id != self.record['id']:
            raise exc.HTTPNotFound(image_id)
        return Image(self.record)

    def data(self, image_id):
        self.get(image_id)
        self.fetches += 1
        return Data(self.path, self.record['os_hash_algo'],
                    self.record['os_hash_value'])


class Client:
    def __init__(self, record, path):
        self.images = Images(record, path)


def image_record(image_id, path, disk_format, name='upstream'):
    """Glance's record of the image file ``path``: with its real md5
    checksum and sha512 multihash, which upstream verifies while it
    downloads."""
    sha512 = hashlib.sha512()
    md5 = hashlib.md5(usedforsecurity=False)
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            sha512.update(chunk)
            md5.update(chunk)
    return {'id': image_id, 'name': name, 'status': 'active',
            'visibility': 'public', 'protected': False,
            'checksum': md5.hexdigest(), 'os_hash_algo': 'sha512',
            'os_hash_value': sha512.hexdigest(), 'owner': name,
            'size': os.path.getsize(path), 'virtual_size': None,
            'min_ram': 0, 'min_disk': 0, 'disk_format': disk_format,
            'container_format': 'bare',
            'created_at': '2026-01-01T00:00:00Z',
            'updated_at': '2026-01-01T00:00:00Z', 'tags': [],
            'os_hidden': False}


def configure(instances_path, images_type, use_cow_images,
              force_raw_images, lock_path=None, volume_group=None):
    """Load upstream's CONF with this node's layout options, run privsep
    in process, and return ``nova.conf.CONF``."""
    os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
    import nova.conf
    import nova.privsep
    # Importing the driver registers every option it reads (lock_path's
    # group among them) before they are set.
    from nova.virt.libvirt import driver  # noqa: F401

    conf = nova.conf.CONF
    conf([], project='nova', default_config_files=[],
         default_config_dirs=[])
    conf.set_override('instances_path', instances_path)
    conf.set_override('use_cow_images', use_cow_images)
    conf.set_override('force_raw_images', force_raw_images)
    conf.set_override('images_type', images_type, group='libvirt')
    if volume_group:
        conf.set_override('images_volume_group', volume_group,
                          group='libvirt')
    conf.set_override('lock_path', lock_path or os.path.join(
        instances_path, 'upstream-locks'), group='oslo_concurrency')
    conf.set_override('api_servers', ['http://glance.invalid'],
                      group='glance')
    nova.privsep.sys_admin_pctxt.set_client_mode(False)
    return conf


def emulate_lvm_devices(pv):
    """Stand in for device-mapper under upstream's LVM calls (see the
    module's docstring): the volumes it creates on ``pv`` get their
    ``/dev/<vg>/<lv>``, the ones it removes lose it."""
    import nova.privsep.fs
    import lvm_devices

    lvcreate, lvremove = nova.privsep.fs.lvcreate, nova.privsep.fs.lvremove

    def lvcreate_and_link(size, lv, vg, preallocated=None):
        lvcreate(size, lv, vg, preallocated=preallocated)
        lvm_devices.link(pv, vg, lv)

    def lvremove_and_unlink(path):
        vg, lv = lvm_devices.split_path(path)
        try:
            lvremove(path)
        finally:
            if not lvm_devices.extents(pv, vg, lv):
                lvm_devices.unlink(vg, lv)

    nova.privsep.fs.lvcreate = lvcreate_and_link
    nova.privsep.fs.lvremove = lvremove_and_unlink


def serve_image(image_id, path, disk_format):
    """Make upstream's Glance client serve the file ``path`` as image
    ``image_id``; returns the Client (``client.images.fetches``)."""
    import nova.image.glance

    client = Client(image_record(image_id, path, disk_format), path)
    nova.image.glance._glanceclient_from_endpoint = (
        lambda context, endpoint, version: client)
    return client


def instance(ctx, uuid, image_id, root_gb, ephemeral_gb, swap_mb,
             os_type=None, name='upstream'):
    """An upstream Instance with its Flavor, as _create_image reads it."""
    from nova import objects

    flavor = objects.Flavor(
        id=1, name=name, flavorid=name, memory_mb=512, vcpus=1,
        root_gb=root_gb, ephemeral_gb=ephemeral_gb, swap=swap_mb,
        extra_specs={})
    return objects.Instance(
        context=ctx, uuid=uuid, flavor=flavor, image_ref=image_id,
        kernel_id='', ramdisk_id='', os_type=os_type, vm_mode=None,
        task_state=None, vm_state='building', trusted_certs=None,
        system_metadata={}, config_drive='', migration_context=None,
        ephemeral_key_uuid=None, project_id=name, user_id=name)

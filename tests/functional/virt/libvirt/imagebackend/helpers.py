"""Helpers of the imagebackend functional tests.

``CountingImageService`` is the real local image store (nova.image.local)
counting downloads in this process and, through a file, across processes.
Everything else is real too: nova.virt.images.fetch_verified, qemu-img,
mkfs, mkswap, blkid.
"""

import collections
import json
import os
import signal
import subprocess
import threading
import time
import uuid

from nova.image import local
from nova.objects import libvirt_disk
from tests.functional import helpers as func_helpers

MiB = 1 << 20

#: Virtual size of the test image: small, so that the matrix runs fast,
#: with data at the start, in the middle and at the very end.
IMAGE_SIZE = 48 * MiB


class CountingImageService(local.LocalImageService):
    """The real local image store, counting downloads.

    Downloads are counted in this process (``downloads``) and, through
    ``count_file`` (one line per download), across processes.
    """

    def __init__(self, root, count_file):
        super().__init__(root=root)
        self.count_file = count_file
        self.downloads = collections.Counter()
        self._lock = threading.Lock()
        self.ids = {}

    def spec(self):
        """JSON-able description, to rebuild this service in a worker."""
        return {'root': self.root, 'count_file': self.count_file}

    @classmethod
    def from_spec(cls, spec):
        return cls(spec['root'], spec['count_file'])

    def download(self, context, image_id, **kwargs):
        chunks = super().download(context, image_id, **kwargs)
        with self._lock:
            self.downloads[image_id] += 1
        with open(self.count_file, 'a') as f:
            f.write(image_id + '\n')
        return chunks

    def counted_downloads(self, image_id):
        """Downloads of ``image_id`` by every process (count_file)."""
        with open(self.count_file) as f:
            return sum(1 for line in f if line.strip() == image_id)


class Instance:
    def __init__(self, uuid_=None):
        self.uuid = uuid_ or str(uuid.uuid4())


def make_record(backend, cache_format, size, disk_name='disk',
                image_id=None, cache_name=None):
    """The record policy.py would plan for a disk built from a cache entry
    in ``cache_format`` (raw when force_raw_images, else the image's)."""
    if backend == 'flat':
        fields = dict(backend='flat', format=cache_format)
    else:
        fields = dict(backend='qcow2', format='qcow2',
                      backing_format=cache_format)
    record = libvirt_disk.LibvirtDiskMetadata(
        size=size, disk_name=disk_name, image_id=image_id,
        cache_name=cache_name, **fields)
    record.validate()
    return record


def ploop_image(directory, raw_path):
    """``raw_path`` converted to a ploop image (qemu's ``parallels``) and
    imported, verified, into a new local store under ``directory``.

    :returns: (an ImageCache fetching from that store, the image's id, the
        ploop file's path).
    """
    from nova import image
    from nova.virt.libvirt.imagebackend import cache as image_cache
    store = local.LocalImageService(root=os.path.join(directory, 'store'))
    os.makedirs(store.root)
    src = os.path.join(directory, 'root.hds')
    subprocess.run(['qemu-img', 'convert', '-q', '-f', 'raw', '-O',
                    'parallels', raw_path, src], check=True)
    image_id = store.import_file(None, src, 'ploop')['id']
    return (image_cache.ImageCache(image_api=image.API(service=store)),
            image_id, src)


def layout(path, fmt):
    """The parts of a layout upstream and we must agree on."""
    info = func_helpers.qemu_info(path, fmt)
    return {'format': info['format'],
            'virtual_size': info['virtual-size'],
            'backing_file': info.get('backing-filename'),
            'backing_format': info.get('backing-filename-format')}


def same_content(disk, disk_fmt, image, image_fmt):
    """True if the guest sees the image's bytes (zeros beyond them)."""
    result = subprocess.run(
        ['qemu-img', 'compare', '-q', '-f', disk_fmt, '-F', image_fmt,
         disk, image], capture_output=True, text=True)
    return result.returncode == 0


def blkid_type(path):
    return subprocess.run(
        ['blkid', '-p', '-o', 'value', '-s', 'TYPE', path],
        capture_output=True, text=True).stdout.strip()


def make_image(path, virtual_size, data_runs, seed=1):
    """A sparse raw file with random bytes at the given (offset, length)."""
    import random
    rnd = random.Random(seed)
    with open(path, 'wb') as f:
        f.truncate(virtual_size)
        for offset, length in data_runs:
            f.seek(offset)
            f.write(rnd.randbytes(length))


def files_under(path):
    """Every file under ``path`` (relative), for "nothing left" checks."""
    found = []
    for root, _dirs, files in os.walk(path):
        for name in files:
            found.append(os.path.relpath(os.path.join(root, name), path))
    return sorted(found)


def configure_worker(args):
    """In a worker process: parse no config files, then take
    ``instances_path`` and ``lock_path`` from the worker's JSON args."""
    import nova.conf
    conf = nova.conf.CONF
    conf([], project='nova', default_config_files=[],
         default_config_dirs=[])
    conf.set_override('instances_path', args['instances_path'])
    conf.set_override('lock_path', args['lock_path'],
                      group='oslo_concurrency')


def kill_when_ready(worker, args):
    """Run the module ``worker`` (dotted name) as ``python -m worker
    '<args as json>'``, SIGKILL it once the file ``args['ready']`` exists
    (it must within 60 s), and reap it."""
    with subprocess.Popen(
            func_helpers.module_argv(worker, json.dumps(args)),
            cwd=func_helpers.ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.monotonic() + 60
        while not os.path.exists(args['ready']):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, 'worker never got ready'
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

"""A process SIGKILLed in the middle of a disk's create, on any backend.

Run as ``python ib_contract_worker.py '<json>'`` with keys instances_path,
lock_path, ready (a file created once the disk is built but not yet
published), disk (a record's driver_info), uuid, and service (a
CountingImageService spec) for a disk from an image, or template (the
record's cache_name) for a disk from a function. The create hangs in the
backend's last step before publishing (``_finish``), so what the process
leaves is exactly what a create killed half way leaves: a part file or
directory, or a volume under its temporary name.
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(os.path.dirname(os.path.dirname(
    HERE)))]

import ib_func_helpers as helpers  # noqa: E402
from nova import image  # noqa: E402
from nova.objects import libvirt_disk  # noqa: E402
from nova.virt.libvirt import disk_funcs  # noqa: E402
from nova.virt.libvirt.imagebackend import backends  # noqa: E402
from nova.virt.libvirt.imagebackend import cache as image_cache  # noqa
from tests.functional import lvm_harness  # noqa: E402


def main():
    args = json.loads(sys.argv[1])
    helpers.configure_worker(args)
    if lvm_harness.available():
        lvm_harness.install()
    record = libvirt_disk.LibvirtDiskMetadata.from_driver_info(args['disk'])
    service = helpers.CountingImageService.from_spec(args['service'])
    cache = image_cache.ImageCache(image_api=image.API(service=service))
    disk = backends.backend_for(helpers.Instance(args['uuid']), record,
                                cache=cache)

    def hang(*_args, **_kwargs):
        open(args['ready'], 'w').close()
        time.sleep(600)

    type(disk)._finish = hang
    if record.image_id:
        disk.create_from_image(None, record.image_id)
    else:
        disk.create_from_func(None, disk_funcs.make_swap(),
                              record.cache_name, record.size)


if __name__ == '__main__':
    main()

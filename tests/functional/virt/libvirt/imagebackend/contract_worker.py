"""A process SIGKILLed in the middle of a disk's create, on any backend.

Run from the top of the tree (``helpers.kill_when_ready``) as ``python -m
tests.functional.virt.libvirt.imagebackend.contract_worker '<json>'``
with keys instances_path, lock_path, ready (a file created once the disk
is built but not yet published), disk (a record's driver_info), uuid, and
service (a CountingImageService spec) for a disk from an image, or
template (the record's cache_name) for a disk from a function. The create
hangs in the backend's last step before publishing (``_finish``), so what
the process leaves is exactly what a create killed half way leaves: a part
file or directory, or a volume under its temporary name.
"""

import json
import sys
import time

from nova import image
from nova.objects import libvirt_disk
from nova.virt.libvirt import disk_funcs
from nova.virt.libvirt.imagebackend import backends
from nova.virt.libvirt.imagebackend import cache as image_cache
from tests.functional import lvm_harness
from tests.functional.virt.libvirt.imagebackend import helpers


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

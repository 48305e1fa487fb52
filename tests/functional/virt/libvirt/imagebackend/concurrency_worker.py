"""One process of the multi-process fetch test: creates one disk.

Run from the top of the tree as ``python -m
tests.functional.virt.libvirt.imagebackend.concurrency_worker '<json>'``
with keys instances_path, lock_path, service (DictImageService.spec()),
uuid, backend, cache_format, size, image_id, ready (a file to create
when ready), go (a file to wait for). Prints the disk's path.
"""

import json
import os
import sys
import time

from nova import image
from nova.virt.libvirt import imagebackend
from nova.virt.libvirt.imagebackend import cache as image_cache
from tests.functional.virt.libvirt.imagebackend import helpers


def main():
    args = json.loads(sys.argv[1])
    helpers.configure_worker(args)
    service = helpers.CountingImageService.from_spec(args['service'])
    cache = image_cache.ImageCache(image_api=image.API(service=service))
    record = helpers.make_record(args['backend'], args['cache_format'],
                                 args['size'], image_id=args['image_id'])
    disk = imagebackend.backend_for(helpers.Instance(args['uuid']), record,
                                    cache=cache)
    open(args['ready'], 'w').close()
    deadline = time.monotonic() + 60
    while not os.path.exists(args['go']):
        if time.monotonic() > deadline:
            sys.exit('never told to go')
        time.sleep(0.01)
    disk.create_from_image(None, args['image_id'])
    print(disk.path)


if __name__ == '__main__':
    main()

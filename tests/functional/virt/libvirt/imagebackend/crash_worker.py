"""A process that is SIGKILLed in the middle of filling a cache entry.

Run from the top of the tree (``helpers.kill_when_ready``) as ``python -m
tests.functional.virt.libvirt.imagebackend.crash_worker '<json>'`` with
keys instances_path, lock_path, ready (a file created once the entry is
half made), and either
``template`` (a name: the template function hangs after writing) or
``service`` + ``image_id`` (the download hangs after its first chunk).
"""

import json
import sys
import time

from nova import image
from nova.virt.libvirt.imagebackend import cache as image_cache
from tests.functional.virt.libvirt.imagebackend import helpers


def hang(ready):
    open(ready, 'w').close()
    time.sleep(600)


class HangingService(helpers.CountingImageService):
    def __init__(self, ready, *args):
        super().__init__(*args)
        self.ready = ready

    def download(self, context, image_id, **kwargs):
        # Chunks smaller than the test's image, so that it hangs with the
        # image half written whatever the store's own chunk size.
        kwargs.setdefault('chunk_size', 1024 * 1024)
        chunks = super().download(context, image_id, **kwargs)

        def first_then_hang():
            yield next(chunks)
            yield next(chunks)  # the first one is written by now
            hang(self.ready)
        return first_then_hang()


def main():
    args = json.loads(sys.argv[1])
    helpers.configure_worker(args)
    if 'template' in args:
        def func(target, size):
            with open(target, 'r+b') as f:
                f.write(b'half a filesystem')
            hang(args['ready'])

        image_cache.ImageCache().ensure_template(args['template'], func,
                                                 args['size'])
    else:
        spec = args['service']
        service = HangingService(args['ready'], spec['root'],
                                 spec['count_file'])
        cache = image_cache.ImageCache(image_api=image.API(service=service))
        cache.ensure_image(None, args['image_id'], args['format'])


if __name__ == '__main__':
    main()

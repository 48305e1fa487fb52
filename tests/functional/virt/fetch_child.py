"""A fetch to be killed: run by the crash tests in a process of its own.

    python -m tests.functional.virt.fetch_child STORE_ROOT IMAGE_ID TARGET \
        OUTPUT_FORMAT CRASH

CRASH says where the process dies (SIGKILL to its whole process group, as
a host crash would take qemu-img with it):

- ``download:N``: once N bytes have been downloaded;
- ``slow:S``: never by itself; sleeps S seconds before each chunk after
  the first, so that the parent can kill it (or look at it) mid-download;
- ``convert``: prints ``converting`` and starts the conversion; the parent
  kills the group when it reads that line, so qemu-img dies mid-way;
- ``publish``: after everything was verified and fsynced, just before the
  final link;
- ``fsize:N``: not a crash: RLIMIT_FSIZE of N bytes, so that writing the
  image fails as a full disk would (EFBIG); prints ``error <class>``;
- ``none``: completes normally.

After each chunk it prints ``chunk <bytes done>`` (flushed), so the parent
can wait for a point of the download.
"""

import os
import resource
import signal
import sys
import time

from nova import context as nova_context
from nova import exception
from nova import image
from nova.image import local
from nova.virt import images
from nova.virt import qemu_img
from nova.virt import staging


def die():
    sys.stdout.flush()
    os.killpg(os.getpgrp(), signal.SIGKILL)


def main(store_root, image_id, target, output_format, crash):
    ctx = nova_context.get_admin_context()
    api = image.API(local.LocalImageService(root=store_root))
    mode, _sep, arg = crash.partition(':')

    def progress(done, total):
        print('chunk %d' % done, flush=True)
        if mode == 'download' and done >= int(arg):
            die()
        if mode == 'slow':
            time.sleep(float(arg))

    if mode == 'convert':
        real_convert = qemu_img.convert

        def convert(*args, **kwargs):
            print('converting', flush=True)
            return real_convert(*args, **kwargs)
        qemu_img.convert = convert
    if mode == 'publish':
        def publish(*args, **kwargs):
            die()
        staging.Part.publish = publish

    if mode == 'fsize':
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(arg), int(arg)))
    try:
        result = images.fetch_verified(ctx, api, image_id, target,
                                       output_format, progress=progress)
    except exception.NovaException as e:
        print('error %s %s' % (type(e).__name__, e), flush=True)
        return
    print('done %s' % (result,), flush=True)


if __name__ == '__main__':
    main(*sys.argv[1:])

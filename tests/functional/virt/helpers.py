"""Helpers and fixtures of the fetch tests (nova/virt/images.py) and of
the local image store's (tests/functional/image).

The fixtures are imported by name by the test modules that use them, over
the conftest's (which serve the driver and staging tests): ``ctx``,
``store`` (a LocalImageService in the test's tmp_path), ``image_api``
(``nova.image.API`` over it) and ``base_dir`` (an empty directory to
fetch into, like the image cache's).
"""

import os
import subprocess

import pytest

from nova import context as nova_context
from nova import image
from nova.image import local

MiB = 1 << 20


@pytest.fixture
def ctx():
    return nova_context.get_admin_context()


@pytest.fixture
def store(tmp_path):
    return local.LocalImageService(root=str(tmp_path / 'store'))


@pytest.fixture
def image_api(store):
    return image.API(store)


@pytest.fixture
def base_dir(tmp_path):
    path = tmp_path / 'base'
    path.mkdir()
    return str(path)


def same_content(a, a_fmt, b, b_fmt):
    """True if the two images hold the same guest-visible bytes."""
    result = subprocess.run(['qemu-img', 'compare', '-q', '-f', a_fmt,
                             '-F', b_fmt, a, b], capture_output=True)
    return result.returncode == 0


def allocated(path):
    """Bytes of storage ``path`` holds (st_blocks * 512)."""
    return os.stat(path).st_blocks * 512


def leftovers(directory, keep=()):
    """Names in ``directory`` other than ``keep``."""
    return sorted(set(os.listdir(directory)) - set(keep))


class CountingAPI:
    """An image API that counts the bytes it hands out.

    :param hook: optional ``callable(bytes_so_far)`` run before each chunk.
    """

    def __init__(self, api, hook=None):
        self.api = api
        self.hook = hook
        self.downloaded = 0

    def get(self, context, image_id):
        return self.api.get(context, image_id)

    def download(self, context, image_id):
        chunks = self.api.download(context, image_id)

        def counted():
            try:
                for chunk in chunks:
                    if self.hook is not None:
                        self.hook(self.downloaded)
                    self.downloaded += len(chunk)
                    yield chunk
            finally:
                chunks.close()
        return counted()

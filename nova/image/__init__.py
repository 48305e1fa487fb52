"""The image service: ``nova.image.API()`` (see nova.image.api)."""

from nova.image.api import API  # noqa: F401
from nova.image.api import ImageService  # noqa: F401

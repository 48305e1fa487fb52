"""The image service interface callers use, whatever store is behind it.

Callers (the image cache, the CLI) hold a ``nova.image.API()`` and call
``get`` and ``download``; they never see which store answers. The default
store is the local directory one (``nova.image.local``). A Glance v2
client is another ``ImageService`` and needs no change in callers:

====================  ====================================================
ImageService          Glance v2 (python-glanceclient)
====================  ====================================================
``get``               ``GET /v2/images/{id}`` (``images.get``): the same
                      keys already (``disk_format``, ``container_format``,
                      ``size``, ``checksum``, ``os_hash_algo``,
                      ``os_hash_value``, ``virtual_size``, ``min_disk``,
                      ``status``); every other top-level key of the
                      Glance record goes into ``properties``. 404 ->
                      ImageNotFound; 403 for another project's private
                      image -> ImageNotFound too (do not reveal it).
``download``          ``GET /v2/images/{id}/file`` (``images.data``,
                      ``do_checksum=False``: the verified fetch checks
                      size and both hashes itself, in its one pass).
                      204 (no data) -> ImageUnacceptable.
``import_file``       not offered: uploads go through Glance's own API.
====================  ====================================================

Nothing that the image service returns is trusted: ``nova.virt.images.
fetch_verified`` checks the bytes against this metadata and against
their own content.
"""

import abc

from nova import exception
from nova import utils


class ImageService(abc.ABC):
    """One image store: metadata and bytes of images, by id.

    Implementations validate ``image_id`` on every call (a canonical UUID:
    no ``../``, NUL or path may reach a store) and raise
    ``exception.ImageNotFound`` for an image that does not exist.
    """

    @abc.abstractmethod
    def get(self, context, image_id):
        """Return the metadata of ``image_id``.

        :returns: a new dict, e.g.::

            {'id': '6a1c...-...', 'name': 'cirros', 'status': 'active',
             'disk_format': 'qcow2', 'container_format': 'bare',
             'size': 21430272,             # bytes of the stored data
             'checksum': '<md5 hex>',
             'os_hash_algo': 'sha512', 'os_hash_value': '<sha512 hex>',
             'virtual_size': 117440512,    # bytes, or None if unknown
             'min_disk': 0,                # GiB
             'properties': {'hw_disk_bus': 'virtio'}}

        :raises: InvalidUUID, ImageNotFound, ImageMetadataInvalid.
        """

    @abc.abstractmethod
    def download(self, context, image_id):
        """Return an iterator of ``bytes`` chunks: the stored data.

        The bytes are unverified. Errors known before the first byte
        (unknown image) are raised by this call, not by the iterator.
        Close the iterator (``close()``) if you stop early.

        :raises: InvalidUUID, ImageNotFound.
        """

    def import_file(self, context, path, disk_format, name=None,
                    container_format='bare', progress=None, min_disk=0,
                    properties=None):
        """Add the file at ``path`` as a new image; return its metadata.

        Only stores that accept uploads from this host implement it.
        """
        raise exception.InvalidInput(
            reason='%s does not import files' % type(self).__name__)


class API:
    """The image API of this service: ``nova.image.API()``.

    :param service: the ``ImageService`` behind it (default: the local
        directory store under ``$state_path/images``).
    """

    def __init__(self, service=None):
        if service is None:
            from nova.image import local
            service = local.LocalImageService()
        self.service = service

    def get(self, context, image_id):
        """Metadata of ``image_id`` (see ``ImageService.get``)."""
        return self.service.get(context, _check_id(image_id))

    def download(self, context, image_id):
        """Iterator of the stored bytes (see ``ImageService.download``)."""
        return self.service.download(context, _check_id(image_id))

    def import_file(self, context, path, disk_format, name=None,
                    container_format='bare', progress=None, min_disk=0,
                    properties=None):
        """Import ``path`` as a new image (local store only).

        :param disk_format: the declared format ('raw', 'qcow2', 'iso'):
            content detected as anything else is refused.
        :param progress: optional ``callback(bytes_done, bytes_total)``.
        :returns: the new image's metadata (see ``get``).
        """
        return self.service.import_file(
            context, path, disk_format, name=name,
            container_format=container_format, progress=progress,
            min_disk=min_disk, properties=properties)

    def delete(self, context, image_id):
        """Remove ``image_id`` from the store (local store only)."""
        delete = getattr(self.service, 'delete', None)
        if delete is None:
            raise exception.InvalidInput(
                reason='%s does not delete images' %
                type(self.service).__name__)
        return delete(context, _check_id(image_id))

    def get_all(self, context):
        """Metadata of every image in the store, sorted by id."""
        get_all = getattr(self.service, 'get_all', None)
        if get_all is None:
            raise exception.InvalidInput(
                reason='%s does not list images' %
                type(self.service).__name__)
        return get_all(context)


def _check_id(image_id):
    return utils.validate_uuid(image_id, kind='image')

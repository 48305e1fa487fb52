"""Versioned objects. Call ``register_all()`` before using any of them.

After registration each object is reachable by name here, for example
``nova.objects.BlockDeviceMapping`` or ``nova.objects.LibvirtDiskMetadata``.
"""


def register_all():
    """Import every object module so that each class registers itself."""
    __import__('nova.objects.libvirt_disk')
    __import__('nova.objects.flavor')
    __import__('nova.objects.instance')
    __import__('nova.objects.block_device')

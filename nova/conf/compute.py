"""``[DEFAULT]`` options about instances and their local disks."""

import socket

from oslo_config import cfg

from nova.conf import paths

compute_opts = [
    cfg.StrOpt('host',
               default=socket.gethostname(),
               sample_default='<current_hostname>',
               help="""
The name of this compute host, as Nova's ``[DEFAULT] host``: recorded as
the host of the instances booted here, and the host whose instances the
commands here act on (``nova-libvirt`` refuses to change an instance of
another host; ``nova-manage libvirt record_disks`` records this host's).
Set it as Nova's own services on this machine have it.
"""),
    cfg.StrOpt('instances_path',
               default=paths.state_path_def('instances'),
               help="""
Where instances are stored on disk: one directory per instance, plus the
image cache (``[image_cache] subdirectory_name``) and the locks directory.
"""),
    cfg.BoolOpt('use_cow_images',
                default=True,
                help="""
Enable use of copy-on-write (cow) images.

Only read when planning the layout of a *new* disk while
``[libvirt] images_type`` is ``default``: true gives Qcow2 overlays, false
gives Flat files. Disks that already exist keep their recorded layout.
"""),
    cfg.BoolOpt('force_raw_images',
                default=True,
                help="""
Force conversion of backing images to raw format.

When true, new disks are planned over a raw copy of their image in the image
cache (the image is converted when it is fetched), and Flat disks made from
it are raw. Read only when a new disk is planned, and recorded in its layout;
it never changes an existing disk.
"""),
    cfg.StrOpt('preallocate_images',
               default='none',
               choices=[
                   ('none', 'No storage provisioning is done up front'),
                   ('space', 'Storage is fully allocated at instance start '
                             '(fallocate)'),
               ],
               help="""
The image preallocation mode to use.

Preallocating with ``space`` allocates a file disk's full virtual size at
creation, so that a guest cannot run out of host storage later.
"""),
]

# The filesystem of new ephemeral disks (nova.virt.libvirt.ephemeral_fs).
ephemeral_fs_opts = [
    cfg.StrOpt('default_ephemeral_format',
               help="""
The default format an ephemeral_volume will be formatted with on creation.

When unset, the filesystem follows the instance's ``os_type``: ``ext4`` for
``linux``, ``ntfs`` for ``windows`` and ``vfat`` for anything else.

Possible values:

* ``ext2``
* ``ext3``
* ``ext4``
* ``xfs``
* ``ntfs`` (only for Windows guests)
"""),
    cfg.MultiStrOpt('virt_mkfs',
                    default=[],
                    help="""
Name of the mkfs commands for ephemeral device.

The format is <os_type>=<mkfs command>. The command is split on whitespace
and takes two named placeholders, ``fs_label`` and ``target`` (Python string
formatting), for the label and the device or file to format. An entry for
``default`` applies to every os_type without one of its own. A command
replaces the filesystem choice of ``default_ephemeral_format``.
"""),
]

ALL_OPTS = compute_opts + ephemeral_fs_opts


def register_opts(conf):
    conf.register_opts(ALL_OPTS)


def list_opts():
    return {'DEFAULT': ALL_OPTS}

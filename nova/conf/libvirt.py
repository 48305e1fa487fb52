"""``[libvirt]``: the connection and the layout of new local disks."""

from oslo_config import cfg

libvirt_group = cfg.OptGroup(
    'libvirt',
    title='Libvirt Options',
    help="""
Libvirt options allow cloud administrators to configure the libvirt
hypervisor driver and the storage of instances' local disks.
""")

libvirt_general_opts = [
    cfg.StrOpt('virt_type',
               default='kvm',
               choices=('kvm', 'lxc', 'qemu', 'parallels'),
               help="""
Describes the virtualization type (or so called domain type) libvirt should
use.
"""),
    cfg.StrOpt('connection_uri',
               default='test:///default',
               help="""
Libvirt connection URI.

The embedded default is libvirt's in-process test driver, which needs no
daemon. Use ``qemu:///system`` (with ``virt_type = kvm``) for real guests.
"""),
    cfg.StrOpt('hw_disk_discard',
               choices=('ignore', 'unmap'),
               help="""
Discard option for nova managed disks.

``unmap`` passes guest discard requests to the backing storage.
"""),
]

libvirt_imagebackend_opts = [
    cfg.StrOpt('images_type',
               default='default',
               choices=('raw', 'flat', 'qcow2', 'lvm', 'rbd', 'ploop',
                        'default'),
               help="""
VM Images format.

Decides the backend of *new* local disks only: every disk's backend is
recorded when it is planned and obeyed from then on. ``default`` means
``qcow2`` when ``[DEFAULT] use_cow_images`` is true, else ``flat``; ``raw``
is a synonym of ``flat``.
"""),
    cfg.StrOpt('images_volume_group',
               help="""
LVM Volume Group that is used for new VM images, when images_type is lvm.
"""),
    cfg.BoolOpt('sparse_logical_volumes',
                default=False,
                deprecated_for_removal=True,
                deprecated_since='18.0.0',
                deprecated_reason="""
Sparse logical volumes are a feature that is not tested hence not supported.
LVM logical volumes are preallocated by default.
""",
                help="""
Create sparse logical volumes (with virtualsize) if this flag is set to
True.
"""),
    cfg.StrOpt('images_rbd_pool',
               default='rbd',
               help="""
The RADOS pool in which rbd volumes are stored.
"""),
    cfg.StrOpt('images_rbd_ceph_conf',
               default='',
               help="""
Path to the ceph configuration file to use.
"""),
    cfg.StrOpt('rbd_user',
               help="""
The RADOS client name for accessing rbd volumes.
"""),
    cfg.StrOpt('rbd_secret_uuid',
               help="""
The libvirt UUID of the secret for the rbd_user volumes.
"""),
]

libvirt_lvm_opts = [
    cfg.StrOpt('volume_clear',
               default='zero',
               choices=[
                   ('zero', 'Overwrite volumes with zeroes'),
                   ('shred', 'Overwrite volumes repeatedly'),
                   ('none', 'Do not wipe deleted volumes'),
               ],
               help="""
Method used to wipe ephemeral disks when they are deleted.

A volume whose wipe fails is not removed.
"""),
    cfg.IntOpt('volume_clear_size',
               default=0,
               min=0,
               help="""
Size of area in MiB, counting from the beginning of the allocated volume,
that will be cleared using method set in ``volume_clear`` option.

0 clears the whole volume.
"""),
]

# How local disks are attached (nova.virt.libvirt.disk_tuning).
libvirt_disk_tuning_opts = [
    cfg.ListOpt('disk_cachemodes',
                default=[],
                help="""
Specific cache modes to use for different disk types.

For example: file=directsync,block=none,network=writeback

The disk types are the ``<disk type=...>`` of libvirt: ``file`` (Flat,
Qcow2 and Ploop disks), ``block`` (LVM volumes) and ``network`` (RBD).
An entry with an unknown cache mode is ignored with a warning.

Possible cache modes:

* default: "It Depends" -- For Nova-managed disks, ``none``, if the host
  file system is capable of Linux's 'O_DIRECT' semantics; otherwise
  ``writeback``.
* none: the host page cache is disabled (O_DIRECT), the disk write cache
  is enabled for the guest.
* writethrough: the host page cache is enabled, the disk write cache is
  disabled for the guest.
* writeback: both the host page cache and the disk write cache are
  enabled for the guest.
* directsync: like writethrough, but bypasses the host page cache.
* unsafe: like writeback, but ignores the guest's flush requests.

A disk whose io mode would be ``native`` (preallocated files, LVM volumes)
gets ``threads`` instead with a cache mode that does not use O_DIRECT.
"""),
]

# --- snapshots and rescue disks (nova.virt.libvirt.snapshot, rescue) ---
# Upstream's names, defaults and choices.
libvirt_snapshot_rescue_opts = [
    cfg.StrOpt('snapshot_image_format',
               choices=[('raw', 'RAW disk format'),
                        ('qcow2', 'KVM default disk format'),
                        ('vmdk', 'VMWare default disk format'),
                        ('vdi', 'VirtualBox default disk format')],
               help="""
Determine the snapshot image format when sending to the image service.

If set, this decides what format is used when sending the snapshot to the
image service. If not set, defaults to same type as source image (the
root disk's recorded format).

The image store here holds raw and qcow2 images: a snapshot asked for in
vmdk or vdi (or of a ploop disk without this option) is refused before
anything is copied.
"""),
    cfg.StrOpt('snapshots_directory',
               default='$instances_path/snapshots',
               help="""
Location where libvirt driver will store snapshots before uploading them
to the image service.
"""),
    cfg.StrOpt('rescue_image_id',
               help="""
The ID of the image to boot from to rescue data from a corrupted instance.

If the rescue REST API operation doesn't provide an ID of an image to
use, the image which is referenced by this ID is used. If this option is
not set, the image from the instance is used.
"""),
]

# How an instance's local disks are made (nova.virt.libvirt.imagebackend.
# manager); not part of any disk's layout.
libvirt_disk_creation_opts = [
    cfg.IntOpt('disk_create_concurrency',
               default=4,
               min=1,
               help="""
How many of one instance's local disks are created at the same time.

The disks of an instance are independent: its root disk can be fetched and
converted while its ephemeral and swap disks are formatted. 1 creates them
one after the other, as Nova 34 does. If one disk fails, the disks not yet
started are not started, and every disk the spawn made is removed once the
others have ended.
"""),
]

ALL_OPTS = (libvirt_general_opts + libvirt_imagebackend_opts +
            libvirt_lvm_opts + libvirt_disk_tuning_opts +
            libvirt_snapshot_rescue_opts + libvirt_disk_creation_opts)


def register_opts(conf):
    conf.register_group(libvirt_group)
    conf.register_opts(ALL_OPTS, group=libvirt_group)


def list_opts():
    return {libvirt_group: ALL_OPTS}

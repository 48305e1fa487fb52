"""``[ephemeral_storage_encryption]``: dm-crypt over LVM ephemeral disks.

Upstream's names, types and defaults. Read when a new LVM disk is planned
(nova.virt.libvirt.ephemeral_crypt checks them and whether this host can
encrypt at all); a disk's own encryption will be recorded with it.
"""

from oslo_config import cfg

ephemeral_storage_encryption_group = cfg.OptGroup(
    name='ephemeral_storage_encryption',
    title='Ephemeral storage encryption options')

ephemeral_storage_encryption_opts = [
    cfg.BoolOpt('enabled',
                default=False,
                help="""
Enables/disables LVM ephemeral storage encryption.

Encryption needs the kernel's device-mapper with its ``crypt`` target
(dm-crypt); planning an encrypted disk on a host without it is refused.
"""),
    cfg.StrOpt('cipher',
               default='aes-xts-plain64',
               help="""
Cipher-mode string to be used.

The cipher and mode to be used to encrypt ephemeral storage, in dm-crypt's
format ``<cipher>-<chainmode>-<ivmode>``. The set of combinations available
depends on kernel support (``/proc/crypto``).
"""),
    cfg.IntOpt('key_size',
               default=512,
               min=1,
               help="""
Encryption key length in bits.

In XTS mode only half of the bits are used for encryption key.
"""),
    cfg.StrOpt('default_format',
               default='luks',
               choices=('luks',),
               help="""
Default ephemeral encryption format.

Only 'luks' is supported at this time. This does not apply to LVM ephemeral
storage encryption.
"""),
]


def register_opts(conf):
    conf.register_group(ephemeral_storage_encryption_group)
    conf.register_opts(ephemeral_storage_encryption_opts,
                       group=ephemeral_storage_encryption_group)


def list_opts():
    return {ephemeral_storage_encryption_group:
            ephemeral_storage_encryption_opts}

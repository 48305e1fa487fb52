"""``[DEFAULT]`` config drive options (upstream's names and defaults)."""

from oslo_config import cfg

config_drive_opts = [
    cfg.StrOpt('config_drive_format',
               default='iso9660',
               choices=[
                   ('iso9660', 'A file system image standard that is widely '
                    'supported across operating systems.'),
                   ('vfat', 'Provided for legacy reasons and to enable live '
                    'migration with the libvirt driver and non-shared '
                    'storage')],
               help="""
Config drive format.

Config drive format that will contain metadata attached to the instance
when it boots. An iso9660 drive is attached as a cdrom, a vfat one as a
disk.
"""),
    cfg.BoolOpt('force_config_drive',
                default=False,
                help="""
Force injection to take place on a config drive

When this option is set to true config drive functionality will be forced
enabled by default, otherwise users can still enable config drives
(``nova-libvirt boot --config-drive``).
"""),
]


def register_opts(conf):
    conf.register_opts(config_drive_opts)


def list_opts():
    return {'DEFAULT': config_drive_opts}

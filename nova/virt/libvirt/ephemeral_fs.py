"""The filesystem of a new ephemeral disk, chosen as upstream chooses it.

Upstream Nova 34.0.0 formats an ephemeral disk with, in order:

1. the ``[DEFAULT] virt_mkfs`` command of the instance's ``os_type``, or
   the one given for ``default``, when there is one (it wins over
   everything, the mapping's ``guest_format`` included);
2. the mapping's ``guest_format`` when it has one;
3. ``[DEFAULT] default_ephemeral_format`` when set;
4. ``ext4`` for ``linux``, ``ntfs`` for ``windows``, ``vfat`` for any other
   os_type, unset included.

``choose`` is that choice as a pure function of its arguments; the layout
policy calls it when it plans an ephemeral disk and records the result::

    choice = choose(instance.os_type, CONF.default_ephemeral_format,
                    CONF.virt_mkfs, guest_format=bdm.guest_format)
    choice.fs_type        # 'ext4' ... or None when a command is used
    choice.mkfs_command   # 'mkfs.ext4 -L %(fs_label)s %(target)s' or None
"""

import collections

from nova import exception

#: os_type -> filesystem when nothing else is configured.
DEFAULT_FS_BY_OS_TYPE = {'linux': 'ext4', 'windows': 'ntfs'}

#: The filesystem of an os_type not in DEFAULT_FS_BY_OS_TYPE (or unset).
DEFAULT_FS = 'vfat'

#: The virt_mkfs entry that applies to os_types without their own.
DEFAULT_OS_TYPE_KEY = 'default'


class MkfsCommandNotConfigured(exception.NovaException):
    msg_fmt = ("The ephemeral template of virt_mkfs command digest "
               "%(digest)s cannot be made: %(reason)s")


EphemeralFormat = collections.namedtuple('EphemeralFormat',
                                         ['fs_type', 'mkfs_command'])
EphemeralFormat.__doc__ = """How to format one ephemeral disk: exactly one
of ``fs_type`` (a filesystem name) and ``mkfs_command`` (a command template
with ``%(fs_label)s`` and ``%(target)s``) is set."""


def parse_mkfs_commands(entries):
    """``['linux=mkfs.ext4 -L %(fs_label)s %(target)s', ...]`` ->
    ``{'linux': 'mkfs.ext4 ...'}``.

    The command may itself hold ``=`` (mkfs options do), so only the first
    one splits. An entry with an empty os_type is ignored, as upstream.

    :raises: InvalidInput for an entry without ``=``.
    """
    commands = {}
    for entry in entries or ():
        os_type, sep, command = entry.partition('=')
        if not sep:
            raise exception.InvalidInput(
                reason='virt_mkfs entry %r is not <os_type>=<command>' %
                       entry)
        if os_type:
            commands[os_type] = command
    return commands


def choose(os_type, default_ephemeral_format, virt_mkfs, guest_format=None):
    """The EphemeralFormat of a new ephemeral disk.

    :param os_type: the instance's os_type ('linux', 'windows', ... or
        None).
    :param default_ephemeral_format: ``[DEFAULT] default_ephemeral_format``
        (None when unset).
    :param virt_mkfs: ``[DEFAULT] virt_mkfs`` (a list of entries).
    :param guest_format: the block device mapping's ``guest_format``, if
        any.
    """
    commands = parse_mkfs_commands(virt_mkfs)
    command = commands.get(os_type, commands.get(DEFAULT_OS_TYPE_KEY))
    if command:
        return EphemeralFormat(fs_type=None, mkfs_command=command)
    fs_type = (guest_format or default_ephemeral_format or
               DEFAULT_FS_BY_OS_TYPE.get(os_type, DEFAULT_FS))
    return EphemeralFormat(fs_type=fs_type, mkfs_command=None)

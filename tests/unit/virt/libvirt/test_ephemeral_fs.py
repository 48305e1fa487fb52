"""The ephemeral filesystem, chosen as upstream Nova 34.0.0 chooses it
(nova.privsep.fs.configurable_mkfs and get_file_extension_for_os_type)."""

import pytest

from nova import exception
from nova.virt.libvirt import ephemeral_fs

LINUX_CMD = 'mkfs.ext4 -E stride=8,stripe-width=16 -L %(fs_label)s %(target)s'
DEFAULT_CMD = 'mkfs.vfat -n %(fs_label)s %(target)s'


@pytest.mark.parametrize('os_type,default_format,guest_format,fs_type', [
    # Nothing configured: by os_type, vfat when unset or unknown.
    (None, None, None, 'vfat'),
    ('linux', None, None, 'ext4'),
    ('windows', None, None, 'ntfs'),
    ('plan9', None, None, 'vfat'),
    # default_ephemeral_format beats the os_type's default.
    (None, 'ext3', None, 'ext3'),
    ('linux', 'xfs', None, 'xfs'),
    # The mapping's guest_format beats both.
    ('linux', 'xfs', 'ext2', 'ext2'),
    (None, None, 'ext4', 'ext4'),
])
def test_filesystem_without_mkfs_commands(os_type, default_format,
                                          guest_format, fs_type):
    assert ephemeral_fs.choose(os_type, default_format, [],
                               guest_format=guest_format) == \
        ephemeral_fs.EphemeralFormat(fs_type=fs_type, mkfs_command=None)


@pytest.mark.parametrize('os_type,command', [
    ('linux', LINUX_CMD),
    ('windows', DEFAULT_CMD),
    (None, DEFAULT_CMD),
])
def test_a_virt_mkfs_command_wins_over_everything(os_type, command):
    virt_mkfs = ['linux=' + LINUX_CMD, 'default=' + DEFAULT_CMD]
    choice = ephemeral_fs.choose(os_type, 'xfs', virt_mkfs,
                                 guest_format='ext3')
    assert choice == ephemeral_fs.EphemeralFormat(fs_type=None,
                                                  mkfs_command=command)


def test_a_command_for_another_os_type_does_not_apply():
    assert ephemeral_fs.choose('windows', None, ['linux=' + LINUX_CMD]) == \
        ephemeral_fs.EphemeralFormat(fs_type='ntfs', mkfs_command=None)


def test_commands_split_on_the_first_equals_sign_only():
    assert ephemeral_fs.parse_mkfs_commands(
        ['linux=mkfs -O a=b %(target)s', '=ignored']) == {
        'linux': 'mkfs -O a=b %(target)s'}


def test_an_entry_without_os_type_separator_is_refused():
    with pytest.raises(exception.InvalidInput, match='mkfs.ext4'):
        ephemeral_fs.choose('linux', None, ['mkfs.ext4 %(target)s'])

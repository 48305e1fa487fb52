"""Functions that fill a new ephemeral or swap disk with its content.

Each factory returns ``func(target, size)``, the shape the image cache and
the backends call (``create_from_func``): ``target`` is a file path or a
block device, ``size`` its size in bytes. A file target is grown to ``size``
first (sparse), so the cache may hand over an empty file it just created; a
block device is used as it is.

    func = make_ephemeral('ext4', 'ephemeral0')
    func('/var/lib/nova/instances/_base/ephemeral_1_ext4.part', units.Gi)

One external command per call: ``mkfs.<fs>``, ``mkswap`` or a configured
``[DEFAULT] virt_mkfs`` command (``make_ephemeral_by_command``).
"""

import os
import stat

from oslo_concurrency import processutils
from oslo_log import log as logging

from nova import exception
from nova.virt import staging

LOG = logging.getLogger(__name__)

#: fs type -> how to make it: the command and its arguments before the
#: target. Quiet and forced (the target is a plain file, which mkfs would
#: otherwise ask about); the label flag differs per tool.
_MKFS = {
    'ext2': ('mkfs.ext2', '-F', '-q', '-L'),
    'ext3': ('mkfs.ext3', '-F', '-q', '-L'),
    'ext4': ('mkfs.ext4', '-F', '-q', '-L'),
    'xfs': ('mkfs.xfs', '-f', '-q', '-L'),
    'vfat': ('mkfs.vfat', '-n'),
}

#: The filesystems an ephemeral disk may be made with.
SUPPORTED_FILESYSTEMS = tuple(sorted(_MKFS))

#: vfat labels are at most 11 characters; ext labels 16; xfs 12.
_MAX_LABEL = {'vfat': 11, 'xfs': 12}
_DEFAULT_MAX_LABEL = 16


def _prepare_target(target, size):
    """Make a file target ``size`` bytes long; leave a block device alone.

    A file is opened without following links, so a link planted at the
    target cannot redirect the write.
    """
    # A staging part is handed over as its descriptor's /proc link: that
    # link is the file itself, and the only one followed.
    mine = staging.is_fd_path(target)
    try:
        st = os.stat(target, follow_symlinks=mine)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISBLK(st.st_mode):
        return
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise exception.InvalidInput(
            reason='%s is neither a regular file nor a block device' %
                   target)
    fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC | (
        0 if mine else os.O_CREAT | os.O_NOFOLLOW), 0o600)
    try:
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)


def _run(*cmd):
    try:
        processutils.execute(*cmd)
    except processutils.ProcessExecutionError as e:
        raise exception.ProcessFailed(
            cmd=' '.join(cmd),
            reason=(e.stderr or e.stdout or str(e)).strip())


def make_ephemeral(fs_type='ext4', label='ephemeral0'):
    """Return func(target, size) that makes a ``fs_type`` filesystem.

    :param fs_type: one of SUPPORTED_FILESYSTEMS.
    :param label: the filesystem label (cut to what the tool accepts).
    :raises: InvalidInput for an unsupported fs_type.
    """
    if fs_type not in _MKFS:
        raise exception.InvalidInput(
            reason='ephemeral filesystem %r is not one of %s' % (
                fs_type, ', '.join(SUPPORTED_FILESYSTEMS)))
    label = label[:_MAX_LABEL.get(fs_type, _DEFAULT_MAX_LABEL)]
    args = _MKFS[fs_type]

    def make_fs(target, size):
        _prepare_target(target, size)
        LOG.debug('Making %(fs)s on %(target)s (%(size)d bytes)',
                  {'fs': fs_type, 'target': target, 'size': size})
        _run(*args, label, target)

    return make_fs


def make_ephemeral_by_command(mkfs_command, label='ephemeral0'):
    """Return func(target, size) that runs a ``[DEFAULT] virt_mkfs``
    command.

    :param mkfs_command: a command template with ``%(fs_label)s`` and
        ``%(target)s``, e.g. ``mkfs.ext4 -q -F -L %(fs_label)s %(target)s``
        (split on whitespace, as upstream; no shell).
    :param label: the filesystem label.
    :raises: InvalidInput for a template with an unknown key.
    """
    try:
        mkfs_command % {'fs_label': label, 'target': 'target'}
    except (KeyError, ValueError, TypeError) as e:
        raise exception.InvalidInput(
            reason='mkfs command %r: %s' % (mkfs_command, e)) from e

    def run_mkfs_command(target, size):
        _prepare_target(target, size)
        cmd = mkfs_command % {'fs_label': label, 'target': target}
        LOG.debug('Making an ephemeral filesystem on %(target)s with '
                  '%(cmd)s', {'target': target, 'cmd': cmd})
        _run(*cmd.split())

    return run_mkfs_command


def make_swap():
    """Return func(target, size) that makes a swap area."""
    def make_swap_area(target, size):
        _prepare_target(target, size)
        LOG.debug('Making swap on %(target)s (%(size)d bytes)',
                  {'target': target, 'size': size})
        _run('mkswap', target)

    return make_swap_area

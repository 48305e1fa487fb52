"""LVM: every volume group and logical volume command of this project.

Each function runs one LVM command (``processutils``) and turns its
failure into ``ProcessFailed``; reports are read as JSON in bytes
(``--reportformat json --units b --nosuffix``), never parsed from text.
Names are passed as single arguments: the caller gives a volume group and
an escaped volume name from the disk's record.

``device_path`` is the one place that turns (vg, lv) into the path of the
volume's block device. Everything that reads or writes a volume's bytes
goes through it.

Every command costs tens of milliseconds, so callers run as few as they
can (a boot of a disk: one ``fullreport``, ``lvcreate``, ``lvrename``).
Most of a command's time can be the kernel tearing down the asynchronous
I/O context LVM reads devices with (``io_destroy``, ~30 ms of ~45 on the
test machines); a host's lvm.conf can turn that off (``global { use_aio =
0 }``), a ``--config`` argument cannot (it is applied after the context
exists).
"""

import fcntl
import os
import stat
import struct

from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_serialization import jsonutils

from nova import exception

LOG = logging.getLogger(__name__)

# <linux/fs.h>: the device's logical sector size, an int.
_BLKSSZGET = 0x1268

#: How ``volume_clear`` methods write over a volume.
CLEAR_METHODS = ('zero', 'shred', 'none')

# processutils replaces the whole environment with env_variables: keep
# PATH (and LVM_SYSTEM_DIR, if the host sets one), make messages
# parseable, and keep LVM from warning about descriptors it inherits.
_ENV_EXTRA = {'LC_ALL': 'C', 'LANG': 'C', 'LVM_SUPPRESS_FD_WARNINGS': '1'}


def _execute(*cmd):
    """Run one command; :raises: ProcessFailed naming it and its error."""
    try:
        return processutils.execute(
            *cmd, env_variables=dict(os.environ, **_ENV_EXTRA))
    except processutils.ProcessExecutionError as e:
        raise exception.ProcessFailed(
            cmd=' '.join(cmd),
            reason=(e.stderr or e.stdout or str(e)).strip())


def _reports(*cmd):
    """The reports of an LVM JSON report command, in bytes: a list of
    {kind: rows}, e.g. [{'vg': [{'vg_name': 'vg0', ...}]}]."""
    # The options go after a fullreport's subcommand ('lvm fullreport').
    split = 2 if cmd[0] == 'lvm' else 1
    out, _err = _execute(*(cmd[:split] + (
        '--reportformat', 'json', '--units', 'b', '--nosuffix') +
        cmd[split:]))
    return jsonutils.loads(out).get('report', [])


def _report(cmd, kind, *args):
    """The rows of an LVM JSON report, e.g. ``_report('vgs', 'vg', ...)``.
    """
    rows = []
    for report in _reports(cmd, *args):
        rows.extend(report.get(kind, []))
    return rows


def volume_group_info(vg, with_volumes=False):
    """Size, free space and extent size of volume group ``vg``, in bytes,
    and with ``with_volumes`` its logical volumes, from one command.

    :returns: {'size': 4290772992, 'free': 4273995776,
        'extent_size': 4194304} (and, with ``with_volumes``, 'volumes':
        {lv name: size in bytes} and 'tags': {lv name: set of its tags}),
        or None if there is no such group.
    """
    fields = 'vg_name,vg_size,vg_free,vg_extent_size'
    if with_volumes:
        # One report of the group and of its volumes: ``vgs`` asked for
        # volume fields reports one row per volume, so none for a group
        # without volumes. fullreport has a section for each.
        cmd = ('lvm', 'fullreport', '--configreport', 'vg', '-o', fields,
               '--configreport', 'lv', '-o', 'lv_name,lv_size,lv_tags',
               '--configreport', 'pv', '-o', 'pv_name',
               '--configreport', 'pvseg', '-o', 'pvseg_start',
               '--configreport', 'seg', '-o', 'seg_start', vg)
    else:
        cmd = ('vgs', '-o', fields, vg)
    try:
        reports = _reports(*cmd)
    except exception.ProcessFailed as e:
        if 'not found' in str(e):
            return None
        raise
    for report in reports:
        for row in report.get('vg', []):
            if row['vg_name'] != vg:
                continue
            info = {'size': int(row['vg_size']),
                    'free': int(row['vg_free']),
                    'extent_size': int(row['vg_extent_size'])}
            if with_volumes:
                lvs = report.get('lv', [])
                info['volumes'] = {lv['lv_name']: int(lv['lv_size'])
                                   for lv in lvs}
                info['tags'] = {lv['lv_name']: set(filter(None, lv.get(
                    'lv_tags', '').split(','))) for lv in lvs}
            return info
    return None


def volumes(vg):
    """{lv name: size in bytes} of every logical volume in ``vg``."""
    rows = _report('lvs', 'lv', '-o', 'lv_name,lv_size', vg)
    return {row['lv_name']: int(row['lv_size']) for row in rows}


def volume_size(vg, lv):
    """Size of ``vg/lv`` in bytes, or None if there is no such volume."""
    return volumes(vg).get(lv)


def create_volume(vg, lv, size):
    """Create ``vg/lv`` of at least ``size`` bytes (LVM rounds up to whole
    extents), fully allocated."""
    _execute('lvcreate', '--yes', '--name', lv, '--size', '%db' % size, vg)


def rename_volume(vg, old, new):
    """Rename ``vg/old`` to ``new`` (refused by LVM if ``new`` exists)."""
    _execute('lvrename', vg, old, new)


def extend_volume(vg, lv, size):
    """Grow ``vg/lv`` to ``size`` bytes; lvextend refuses to shrink."""
    _execute('lvextend', '--size', '%db' % size, '%s/%s' % (vg, lv))


def add_tag(vg, lv, tag):
    """Tag ``vg/lv`` with ``tag`` (kept in the group's metadata)."""
    _execute('lvchange', '--addtag', tag, '%s/%s' % (vg, lv))


def delete_tag(vg, lv, tag):
    """Remove ``tag`` from ``vg/lv``."""
    _execute('lvchange', '--deltag', tag, '%s/%s' % (vg, lv))


def remove_volume(vg, lv):
    """Remove ``vg/lv`` (its bytes are not touched: wipe it first)."""
    _execute('lvremove', '--yes', '--force', '%s/%s' % (vg, lv))


def device_path(vg, lv):
    """The block device of ``vg/lv``: ``/dev/<vg>/<lv>``."""
    return os.path.join('/dev', vg, lv)


def device_size(path):
    """Bytes of the block device (or file) at ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def logical_sector_size(path):
    """The logical sector size of the block device at ``path`` (BLKSSZGET:
    512, or 4096 on a 4Kn disk), the unit the kernel zeroes and O_DIRECT
    writes in; 1 for anything that is not a block device, or is missing.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return 1
    try:
        if not stat.S_ISBLK(os.fstat(fd).st_mode):
            return 1
        return struct.unpack('i', fcntl.ioctl(fd, _BLKSSZGET,
                                              struct.pack('i', 0)))[0]
    finally:
        os.close(fd)


def zero_range(path, offset, length=None):
    """Make ``length`` bytes at ``offset`` of the block device at ``path``
    read as zeros (``length`` None: up to the end of the device).

    ``blkdiscard --zeroout`` asks the kernel to zero the range
    (BLKZEROOUT): the device's own write-zeroes command where it has one,
    else the kernel writes zero pages, so the range reads as zeros either
    way, without our process copying a zero buffer through. The kernel
    zeroes whole logical sectors only (``logical_sector_size``: 4096 on a
    4Kn disk): the bytes before the first sector boundary in the range,
    and after the last, are written by ``dd`` through the page cache
    (which reads and rewrites their sector). Where the kernel cannot zero
    (not a block device, an old util-linux), ``dd`` of zeros with O_DIRECT
    does it all; a range that neither can zero raises, and so does a
    missing ``path`` (never created: a wipe of a volume whose device is
    gone must fail, not fill a new file).

    :raises: ProcessFailed.
    """
    if length is None:
        length = device_size(path) - offset
    if length <= 0:
        return
    sector = logical_sector_size(path)
    start = _round_up(offset, sector)
    end = max(start, (offset + length) // sector * sector)
    for head_or_tail in ((offset, min(start, offset + length)),
                         (end, offset + length)):
        _dd_zeros(path, *head_or_tail, direct=False)
    if end == start:
        return
    try:
        _execute('blkdiscard', '--force', '--zeroout', '--offset',
                 str(start), '--length', str(end - start), path)
        return
    except exception.ProcessFailed as e:
        LOG.info('blkdiscard --zeroout of %(path)s failed, writing zeros '
                 'with dd instead: %(error)s', {'path': path, 'error': e})
    _dd_zeros(path, start, end, direct=True)


def _dd_zeros(path, start, end, direct):
    """Write zeros from byte ``start`` to ``end`` of ``path`` (never
    created), flushed to the device before returning."""
    if end <= start:
        return
    _execute('dd', 'if=/dev/zero', 'of=%s' % path, 'bs=4M',
             'seek=%d' % start, 'count=%d' % (end - start),
             'oflag=seek_bytes' + (',direct' if direct else ''),
             'iflag=count_bytes', 'conv=fsync,notrunc,nocreat',
             'status=none')


def _round_up(value, step):
    return -(-value // step) * step


def clear_volume(path, size, method, clear_size=0):
    """Overwrite the first bytes of the block device at ``path``.

    :param size: the volume's size in bytes.
    :param method: 'zero' (one pass of zeros), 'shred' (``shred``'s three
        random passes) or 'none'.
    :param clear_size: bytes to clear from the start; 0 means all of it.
    :raises: ProcessFailed if the device could not be written.
    """
    if method not in CLEAR_METHODS:
        raise exception.InvalidInput(
            reason='volume_clear %r is not one of %s' % (
                method, ', '.join(CLEAR_METHODS)))
    if method == 'none':
        return
    length = min(clear_size, size) if clear_size else size
    if method == 'zero':
        zero_range(path, 0, length)
    else:
        _execute('shred', '-n', '3', '-s', str(length), path)

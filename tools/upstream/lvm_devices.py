"""Device paths of LVM volumes on a host without device-mapper.

Tests only. These machines keep LVM metadata but have no device-mapper,
so activating a volume is impossible and ``/dev/<vg>/<lv>`` never appears.
What stands in for device-mapper here: a loop device over exactly the
volume's extents on its one PV (``losetup --offset --sizelimit``), so
that bytes written through it land where LVM would put them, and, for
code that opens ``/dev/<vg>/<lv>`` itself (upstream Nova), that path as a
symbolic link to the loop device, as udev would make it.

No ``nova`` import: this module runs both in this project's tests
(tests/functional/lvm_harness.py) and in upstream Nova's process
(tools/upstream/drive.py), where ``nova`` is upstream's.

LVM must run with the test harness's lvm.conf (``LVM_SYSTEM_DIR``, see
tools/services/lvm.sh).
"""

import json
import os
import subprocess

DEV = '/dev'


def lvm_json(*cmd):
    """The first report of an LVM reporting command, sizes in bytes."""
    out = subprocess.run(
        list(cmd) + ['--reportformat', 'json', '--units', 'b', '--nosuffix'],
        check=True, capture_output=True, text=True,
        env=dict(os.environ, LVM_SUPPRESS_FD_WARNINGS='1')).stdout
    return json.loads(out)['report'][0]


def extent_layout(pv, vg):
    """(pe_start, extent size) in bytes of ``vg`` on ``pv``."""
    pe_start = int(lvm_json('pvs', '-o', 'pv_name,pe_start',
                            pv)['pv'][0]['pe_start'])
    extent = int(lvm_json('vgs', '-o', 'vg_extent_size',
                          vg)['vg'][0]['vg_extent_size'])
    return pe_start, extent


def extents(pv, vg, lv, layout=None):
    """(offset, length) in bytes of ``vg/lv`` on ``pv``, or None if there
    is no such volume.

    :param layout: ``extent_layout(pv, vg)`` if already known.
    :raises: ValueError for a volume in more than one piece or on another
        PV (one loop device covers one range of one device).
    """
    rows = lvm_json('lvs', '-o', 'lv_name,seg_pe_ranges', vg)['lv']
    ranges = [row['seg_pe_ranges'] for row in rows if row['lv_name'] == lv]
    if not ranges:
        return None
    if len(ranges) != 1:
        raise ValueError('volume %s/%s is in pieces: %s' % (vg, lv, ranges))
    on_pv, _sep, span = ranges[0].partition(':')
    if on_pv != pv:
        raise ValueError('volume %s/%s is on %s, not %s' % (vg, lv, on_pv,
                                                            pv))
    first, _sep, last = span.partition('-')
    pe_start, extent = layout or extent_layout(pv, vg)
    return (pe_start + int(first) * extent,
            (int(last) - int(first) + 1) * extent)


def loop_over(pv, offset, length):
    """The loop device already attached over that range of ``pv``, or
    None."""
    for line in subprocess.run(
            ['losetup', '--list', '--noheadings', '--raw', '--output',
             'NAME,BACK-FILE,OFFSET,SIZELIMIT'], check=True,
            capture_output=True, text=True).stdout.splitlines():
        name, back, off, limit = line.split()
        if (back, int(off), int(limit)) == (pv, offset, length):
            return name
    return None


def sector_size(device):
    """The logical sector size of the block device ``device`` (/dev/X)."""
    with open('/sys/class/block/%s/queue/logical_block_size' %
              os.path.basename(os.path.realpath(device))) as f:
        return int(f.read())


def attach(pv, offset, length):
    """A loop device over that range of ``pv`` (attached once), with the
    PV's logical sector size, as a volume has its PV's."""
    return loop_over(pv, offset, length) or subprocess.run(
        ['losetup', '--find', '--show', '--offset', str(offset),
         '--sizelimit', str(length), '--sector-size', str(sector_size(pv)),
         pv], check=True, capture_output=True, text=True).stdout.strip()


def link_path(vg, lv):
    return os.path.join(DEV, vg, lv)


def link(pv, vg, lv):
    """Make ``/dev/<vg>/<lv>`` a link to a loop device over the volume's
    extents, as udev would after activation; returns the loop device."""
    where = extents(pv, vg, lv)
    if where is None:
        raise ValueError('no volume %s/%s' % (vg, lv))
    device = attach(pv, *where)
    os.makedirs(os.path.join(DEV, vg), exist_ok=True)
    path = link_path(vg, lv)
    if os.path.lexists(path):
        os.unlink(path)
    os.symlink(device, path)
    return device


def unlink(vg, lv):
    """Undo ``link``: detach the loop device ``/dev/<vg>/<lv>`` points at,
    remove the link, and ``/dev/<vg>`` once it is empty."""
    path = link_path(vg, lv)
    if os.path.islink(path):
        subprocess.run(['losetup', '-d', os.readlink(path)],
                       capture_output=True)
        os.unlink(path)
    try:
        os.rmdir(os.path.join(DEV, vg))
    except OSError:
        pass


def split_path(path):
    """(vg, lv) of ``/dev/<vg>/<lv>`` or ``<vg>/<lv>``."""
    rest = path[len(DEV) + 1:] if path.startswith(DEV + '/') else path
    vg, _sep, lv = rest.partition('/')
    return vg, lv

"""The LVM test harness: a real volume group, without device-mapper.

tools/services/lvm.sh makes a volume group on a loop device and exports
``NOVA_TEST_LVM_VG``, ``NOVA_TEST_LVM_PV`` and ``NOVA_TEST_LVM_SYSTEM_DIR``
(its lvm.conf: metadata only, no activation, no udev). This kernel has no
device-mapper, so ``/dev/<vg>/<lv>`` never appears: ``install()`` points
LVM at that lvm.conf and replaces the one function that turns (vg, lv) into
a device path, ``nova.virt.libvirt.storage.lvm.device_path``, with
``LoopAliases.device_path``: a loop device over exactly the volume's
extents on the PV. Writes through it land where LVM would put them, so a
test can read the PV to see a wipe. Nothing else is replaced: lvcreate,
lvrename, lvextend, lvremove, qemu-img, dd and shred all run for real.

Each test session works in a volume group of its own
(``session_group``: a PV on a loop device of its own, seen through an
lvm.conf that accepts that device alone), never in the group of
tools/services/lvm.sh, which other test runs on the machine use at the same
time: a session then removes only volumes it made, and detaches only loop
devices over its own PV. tools/services/lvm.sh's group and lvm.conf remain
the proof that LVM works here and the template of the session's lvm.conf.
The fixtures ``lvm_session_vg`` and ``lvm_vg`` (tests/functional/conftest.py)
give tests the session's group with all of the above in place.
"""

import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
import uuid

from nova import exception
from nova.virt.libvirt.storage import lvm

ENV_VG = 'NOVA_TEST_LVM_VG'
ENV_PV = 'NOVA_TEST_LVM_PV'
ENV_SYSTEM_DIR = 'NOVA_TEST_LVM_SYSTEM_DIR'

#: The product's own answer, kept for volumes that do not exist.
_product_device_path = lvm.device_path


def _load_lvm_devices():
    # tools/upstream/lvm_devices.py also runs in upstream Nova's process,
    # so it is a file of its own there, not a module of this package.
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..',
                        '..', 'tools', 'upstream', 'lvm_devices.py')
    spec = importlib.util.spec_from_file_location('lvm_devices', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: The extent arithmetic and loop devices that stand in for device-mapper.
lvm_devices = _load_lvm_devices()


def first_difference(actual, expected):
    """Return the first offset where two byte strings differ, or None.

    Tests compare whole volumes (megabytes): ``assert a == b`` would make
    pytest render a diff of both, which takes minutes; this names the
    offset instead.
    """
    if len(actual) != len(expected):
        return min(len(actual), len(expected))
    if actual == expected:
        return None
    view_a, view_e = memoryview(actual), memoryview(expected)
    step = 1 << 16
    for start in range(0, len(actual), step):
        if view_a[start:start + step] != view_e[start:start + step]:
            chunk = zip(view_a[start:start + step], view_e[start:start + step])
            return start + next(i for i, (a, e) in enumerate(chunk) if a != e)
    return None


def available():
    """True if tools/services/lvm.sh exported a volume group."""
    return all(os.environ.get(k) for k in (ENV_VG, ENV_PV, ENV_SYSTEM_DIR))


class LoopAliases:
    """Loop devices over volumes' extents on the PV ``pv``."""

    def __init__(self, pv):
        self.pv = pv
        # {vg: (pe_start, extent size)}: fixed while the group lives, read
        # once so that finding a volume's device costs one lvs.
        self._layout = {}

    def extents(self, vg, lv):
        """(offset, length) in bytes of ``vg/lv`` on the PV, or None if
        there is no such volume.

        :raises: AssertionError for a volume in more than one piece (a
            loop device covers one range).
        """
        if vg not in self._layout:
            self._layout[vg] = lvm_devices.extent_layout(self.pv, vg)
        try:
            return lvm_devices.extents(self.pv, vg, lv, self._layout[vg])
        except ValueError as e:
            raise AssertionError(str(e))

    def device_path(self, vg, lv):
        """A loop device over ``vg/lv``'s extents (attached once per range);
        the product's ``/dev/<vg>/<lv>`` for a volume that does not exist.
        """
        where = self.extents(vg, lv)
        if where is None:
            return _product_device_path(vg, lv)
        return lvm_devices.attach(self.pv, *where)

    def read(self, offset, length):
        """``length`` bytes of the PV from ``offset``, past any cache."""
        fd = os.open(self.pv, os.O_RDONLY)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def detach_all(self):
        """Detach every loop device over the PV (ours and workers')."""
        out = subprocess.run(['losetup', '-j', self.pv], check=True,
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            subprocess.run(['losetup', '-d', line.split(':')[0]])


def install(setenv=None):
    """Point LVM at the harness and device_path at loop aliases.

    :param setenv: callable(name, value) (pytest's monkeypatch.setenv), or
        None to set os.environ for good (a worker process).
    :returns: the LoopAliases.
    """
    (setenv or os.environ.__setitem__)('LVM_SYSTEM_DIR',
                                       os.environ[ENV_SYSTEM_DIR])
    aliases = LoopAliases(os.environ[ENV_PV])
    lvm.device_path = aliases.device_path
    return aliases


def uninstall():
    lvm.device_path = _product_device_path


@contextlib.contextmanager
def private_group(size, directory=None, sector_size=512):
    """A volume group of its own on a loop device over a sparse file of
    ``size`` bytes, seen through an lvm.conf like the harness's that
    accepts that device only: no other user of the harness's group sees
    it, and it sees none of theirs (a benchmark needs that quiet).
    ``sector_size`` is the device's logical sector size (4096: a 4Kn
    disk).

    Yields {ENV_VG: name, ENV_PV: device, ENV_SYSTEM_DIR: directory}, the
    variables ``install()`` reads. Afterwards the group, the PV, the loop
    devices over it and the files are gone.
    """
    work = tempfile.mkdtemp(prefix='lvm-private-', dir=directory)
    backing = os.path.join(work, 'pv.img')
    with open(backing, 'wb') as f:
        f.truncate(size)
    pv = subprocess.run(['losetup', '--find', '--show', '--sector-size',
                         str(sector_size), backing],
                        check=True, capture_output=True,
                        text=True).stdout.strip()
    conf_dir = os.path.join(work, 'etc')
    os.mkdir(conf_dir)
    with open(os.path.join(os.environ[ENV_SYSTEM_DIR], 'lvm.conf')) as f:
        conf = f.read()
    conf = re.sub(r'"a\|\^[^|]*\$\|"', '"a|^%s$|"' % pv, conf)
    # Metadata backups of this group stay with it, and go with it.
    for setting in ('backup_dir', 'archive_dir'):
        path = os.path.join(work, setting)
        os.mkdir(path)
        conf = re.sub(r'(?m)^(\s*%s\s*=\s*)"[^"]*"' % setting,
                      lambda m: '%s"%s"' % (m.group(1), path), conf)
    with open(os.path.join(conf_dir, 'lvm.conf'), 'w') as f:
        f.write(conf)
    # Unique on the machine: another process, or another group of this
    # one (a test's second group inside the session's), may be alive.
    vg = 'nova_private_vg_%d_%s' % (os.getpid(), uuid.uuid4().hex[:8])
    env = dict(os.environ, LVM_SYSTEM_DIR=conf_dir,
               LVM_SUPPRESS_FD_WARNINGS='1')
    try:
        for cmd in (['pvcreate', '-q', '-y', pv], ['vgcreate', '-q', vg, pv]):
            subprocess.run(cmd, check=True, capture_output=True, env=env)
        yield {ENV_VG: vg, ENV_PV: pv, ENV_SYSTEM_DIR: conf_dir}
    finally:
        subprocess.run(['vgremove', '-q', '-f', vg], capture_output=True,
                       env=env)
        LoopAliases(pv).detach_all()
        subprocess.run(['losetup', '-d', pv])
        shutil.rmtree(work, ignore_errors=True)


#: Size of a session's volume group: a sparse file, so only what the
#: tests write takes space.
SESSION_GROUP_SIZE = 4 << 30


@contextlib.contextmanager
def session_group(size=SESSION_GROUP_SIZE, directory=None):
    """``private_group`` for a whole test session, named in os.environ
    (``ENV_VG``, ``ENV_PV``, ``ENV_SYSTEM_DIR``) while it lives, so that
    ``install()`` in this process and in every worker process it starts
    (they inherit the environment) use it. Afterwards the environment is
    as it was and the group is gone.
    """
    with private_group(size, directory) as private:
        saved = {name: os.environ.get(name) for name in private}
        os.environ.update(private)
        try:
            yield private
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def remove_volumes(vg, names):
    """Remove the volumes ``names`` of ``vg``; one that is already gone
    (the test, or upstream's code it ran, removed it) is not an error."""
    for lv in names:
        try:
            lvm.remove_volume(vg, lv)
        except exception.ProcessFailed:
            if lvm.volume_size(vg, lv) is not None:
                raise

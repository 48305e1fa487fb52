"""Every qemu-img call of this project, each with its format pinned.

No function here accepts a missing format: the caller passes the format
from the disk's record (or, for a fetch, the image's verified format), so
qemu-img never probes content that a tenant controls. Each call runs under
``QEMU_IMG_LIMITS`` (address space and CPU time), set by util-linux
``prlimit`` on the command itself (see ``_run_bounded``).
"""

import errno
import mmap
import os
import stat
import subprocess
import threading
import time
import uuid

from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import units

from nova import exception
from nova.virt import staging

LOG = logging.getLogger(__name__)

#: The limits upstream Nova applies to ``qemu-img info`` on untrusted
#: images; also enough for create and resize, which touch only metadata.
QEMU_IMG_LIMITS = processutils.ProcessLimits(
    cpu_time=30,
    address_space=1 * units.Gi)

#: check walks every metadata table and runs I/O worker threads, whose
#: stacks alone can pass 1 GiB of address space under load (seen here as
#: "qemu_thread_create: Resource temporarily unavailable").
CHECK_LIMITS = processutils.ProcessLimits(
    cpu_time=300,
    address_space=2 * units.Gi)

#: convert reads and writes every byte, so CPU time grows with the image;
#: the bound is there to stop a runaway, not a large image.
CONVERT_LIMITS = processutils.ProcessLimits(
    cpu_time=3600,
    address_space=2 * units.Gi)

# Formats this project reads or writes ('parallels' is how qemu-img names
# a ploop delta).
FORMATS = ('raw', 'qcow2', 'parallels')

# Keep PATH and the rest of the environment, and make qemu-img's messages
# parseable.
_ENV = dict(os.environ, LC_ALL='C', LANG='C')

#: util-linux prlimit: sets the limits on itself, then execs the command.
_PRLIMIT = 'prlimit'


def _fmt(fmt):
    if fmt not in FORMATS:
        raise exception.InvalidInput(
            reason='qemu-img format %r is not one of %s' % (fmt, FORMATS))
    return fmt


def execute(*args, limits=QEMU_IMG_LIMITS):
    """Run ``qemu-img args...`` bounded by ``limits``.

    :returns: (stdout, stderr) as text.
    :raises: ProcessFailed naming the command and qemu-img's error.
    """
    cmd = ('qemu-img',) + tuple(str(a) for a in args)
    returncode, out, err = _run_bounded(cmd, limits)
    if returncode:
        raise exception.ProcessFailed(
            cmd=' '.join(cmd),
            reason=(err or out or 'exit code %d' % returncode).strip())
    return out, err


def _run_bounded(cmd, limits):
    """Run the argv ``cmd`` under ``limits``; return (code, stdout, stderr).

    The limits are set by util-linux ``prlimit`` (soft and hard alike, as
    ``ProcessLimits`` means them; its options are the ones
    ``ProcessLimits.prlimit_args()`` writes), which then execs ``cmd``: the
    tool never runs unbounded. Not through ``processutils.execute``: it
    always passes Python a ``preexec_fn``, which makes every spawn a full
    fork() of this process (tens of ms for a service holding hundreds of
    MiB) where vfork() costs a few. stdin is /dev/null, inherited
    descriptors are closed and SIGPIPE is restored to its default in the
    child, as processutils does.

    :raises: OSError if prlimit cannot be run at all (fail closed: no
        command runs without its limits).
    """
    argv = [_PRLIMIT] + limits.prlimit_args() + ['--'] + list(cmd)
    LOG.debug('Running cmd (bounded): %s', ' '.join(cmd))
    t0 = time.monotonic()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          close_fds=True, env=_ENV)
    LOG.debug('CMD "%(cmd)s" returned: %(code)s in %(secs)0.3fs',
              {'cmd': ' '.join(cmd), 'code': proc.returncode,
               'secs': time.monotonic() - t0})
    return (proc.returncode, os.fsdecode(proc.stdout),
            os.fsdecode(proc.stderr))


def info(path, fmt):
    """Return ``qemu-img info --output=json -U -f fmt path`` as a dict.

    Keys used by callers: ``format``, ``virtual-size``, ``actual-size``,
    ``backing-filename``, ``backing-filename-format``,
    ``format-specific.data.data-file``.
    """
    # -U: read a running guest's disk without its write lock (info only
    # reads the header).
    out, _err = execute('info', '--output=json', '-U', '-f', _fmt(fmt), path)
    return jsonutils.loads(out)


def check(path, fmt):
    """Return ``qemu-img check --output=json`` of the image at ``path``,
    opened as ``fmt``, as a dict.

    Only the image is opened: a backing file its header names is not
    (``image_spec``), as ``info -U`` does not follow it either.

    Keys used by callers: ``image-end-offset``, ``corruptions``, ``leaks``.

    :raises: ProcessFailed for exit codes other than 0, which includes
        corruptions (2) and leaked clusters (3).
    """
    out, _err = execute('check', '--output=json', image_spec(path, fmt),
                        limits=CHECK_LIMITS)
    return jsonutils.loads(out)


def create(path, fmt, size, backing_file=None, backing_fmt=None):
    """Create an image of ``size`` bytes (an overlay if ``backing_file``).

    :param backing_fmt: required with ``backing_file`` (pinned with -F).
        The backing file is only named in the overlay's header, never
        opened (-u: the size is given): what is at its name now (a link,
        a FIFO that would block qemu-img) is not read here.
    """
    args = ['create', '-f', _fmt(fmt)]
    if backing_file is not None:
        if backing_fmt is None:
            raise exception.InvalidInput(
                reason='a backing file needs its format pinned')
        args += ['-b', backing_file, '-F', _fmt(backing_fmt), '-u']
    args += [path, str(int(size))]
    execute(*args)


# Direct I/O support per filesystem (st_dev, or a block device's rdev),
# probed once: True or False. Only a definite answer is kept.
_DIRECT_IO = {}
_DIRECT_IO_LOCK = threading.Lock()

# Alignment every O_DIRECT implementation accepts (logical block sizes are
# 512 or 4096 bytes); an anonymous mmap is page aligned.
_DIRECT_IO_BLOCK = 4096


def _probe_new_file(directory):
    """Create, write with O_DIRECT and remove a file in ``directory``.

    :returns: True if it worked, False if the filesystem refuses O_DIRECT
        (EINVAL), None if the probe itself failed for another reason (no
        space, read-only...), which says nothing about O_DIRECT.
    """
    path = os.path.join(directory, '.direct-io-probe-%s' % uuid.uuid4().hex)
    flags = (os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_DIRECT |
             os.O_NOFOLLOW | os.O_CLOEXEC)
    fd = None
    ours = True
    try:
        fd = os.open(path, flags, 0o600)
        with mmap.mmap(-1, _DIRECT_IO_BLOCK) as buf:
            # Some filesystems accept the open and refuse the write.
            os.write(fd, buf)
        return True
    except OSError as e:
        ours = e.errno != errno.EEXIST
        if e.errno == errno.EINVAL:
            return False
        LOG.debug('Could not probe direct I/O in %(dir)s: %(err)s',
                  {'dir': directory, 'err': e})
        return None
    finally:
        if fd is not None:
            os.close(fd)
        if ours:
            # Linux creates the file before it refuses O_DIRECT (EINVAL
            # comes from the open itself), so remove it in every case.
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def _probe_existing(path, flags):
    """Open an existing ``path`` with O_DIRECT (nothing is written)."""
    if not staging.is_fd_path(path):
        # A descriptor path (staging.fd_path) is a link by nature, to
        # the very file we hold open: that one is followed (qemu-img
        # follows it too), any other link is not.
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | os.O_DIRECT | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.EINVAL:
            return False
        LOG.debug('Could not probe direct I/O on %(path)s: %(err)s',
                  {'path': path, 'err': e})
        return None
    os.close(fd)
    return True


def _fs_key(st):
    if stat.S_ISBLK(st.st_mode):
        return ('blk', st.st_rdev)
    return ('fs', st.st_dev)


def supports_direct_io(path, exists=False, write=True):
    """Return True if ``path`` can be written (or read) with O_DIRECT.

    The answer is per filesystem (per device for a block device), probed
    once and kept for the process: a probe is a file created, written and
    removed in the target's directory, or, for an existing target (a block
    device, ``exists=True``), an O_DIRECT open of it. A filesystem without
    O_DIRECT (ramfs, some FUSE and network filesystems) is logged once.

    :param path: the file qemu-img will write (or read, ``write=False``).
    :param exists: ``path`` exists already (read sources, ``-n`` targets);
        otherwise its directory is probed.
    :returns: bool; False also when the probe could not tell.
    """
    if staging.is_fd_path(path):
        # A staging part's descriptor path: the file exists (it is held
        # open), and its directory, /proc/<pid>/fd, says nothing.
        exists = True
    probe_path = path if exists else (os.path.dirname(path) or '.')
    try:
        key = _fs_key(os.stat(probe_path))
    except OSError:
        return False
    if key in _DIRECT_IO:
        return _DIRECT_IO[key]
    with _DIRECT_IO_LOCK:
        if key in _DIRECT_IO:
            return _DIRECT_IO[key]
        if exists:
            result = _probe_existing(
                path, os.O_WRONLY if write else os.O_RDONLY)
        else:
            result = _probe_new_file(probe_path)
        if result is None:
            return False
        _DIRECT_IO[key] = result
    if not result:
        LOG.warning('The filesystem of %(path)s does not support direct '
                    'I/O (O_DIRECT): qemu-img copies there go through the '
                    'page cache, which is slower for large images and '
                    'evicts other data from memory.', {'path': probe_path})
    return result


def convert(src, src_fmt, dst, dst_fmt, sparse=True, target_exists=False,
            direct_read=False, out_of_order=False, direct_write=True):
    """Copy ``src`` to ``dst`` converting formats, both pinned.

    ``dst`` is written with O_DIRECT (``-t none``) where its filesystem
    supports it (see ``supports_direct_io``), as upstream Nova does:
    written through the page cache, a large image costs several times
    longer (the dirty pages are written back later, and the fsync that
    follows waits for all of them) and evicts other data from memory.

    :param sparse: keep holes (qemu-img's default); False writes zeros.
    :param target_exists: write into an existing ``dst`` (``-n``), e.g. a
        block device.
    :param direct_read: also read ``src`` with O_DIRECT (``-T none``) where
        its filesystem supports it. Off by default: a source written just
        before (a fetch's download) is still in the page cache, and reading
        it from there is faster than from the disk.
    :param out_of_order: let qemu-img write several ranges at once, in
        any order (``-W``). For a raw target only (a file or a device:
        every range has its place already, while a qcow2 target would
        allocate its clusters out of order). With a source in the page
        cache and ``-t none``, this halves the time of a 1 GiB copy here:
        the writes no longer wait for each other.
    :param direct_write: False writes ``dst`` through the page cache even
        where O_DIRECT works, for a copy that is read again at once (a
        snapshot, hashed and imported next: from memory, not the disk).
    :raises: ProcessFailed. ``dst`` may then hold part of the copy:
        callers convert into what they discard on failure (a
        ``staging.Part``, a temporary volume).
    """
    args = ['convert', '-q', '-f', _fmt(src_fmt), '-O', _fmt(dst_fmt)]
    if direct_write and supports_direct_io(dst, exists=target_exists):
        args += ['-t', 'none']
    if direct_read and supports_direct_io(src, exists=True, write=False):
        args += ['-T', 'none']
    if out_of_order:
        if dst_fmt != 'raw':
            raise exception.InvalidInput(
                reason='out-of-order writes are for a raw target only')
        args.append('-W')
    if not sparse:
        args += ['-S', '0']
    if target_exists:
        args.append('-n')
    args += [src, dst]
    execute(*args, limits=CONVERT_LIMITS)


def image_spec(path, fmt, backing=None):
    """A ``json:`` filename opening ``path`` as ``fmt``, for a qcow2 image
    with exactly the backing given, never the file its header names.

    The name in a qcow2 header is a path that someone else may write
    (``_base`` may be shared): opened by qemu-img, a FIFO there blocks it
    for ever, and another file there is read in the base's place.

    :param backing: for qcow2, ``(path, fmt)`` of the base to read (a
        descriptor's ``staging.fd_path``, checked by the caller), or None:
        no backing is opened at all (growing an overlay, or an image with
        none).
    :returns: 'json:{...}', for qemu-img's filename argument (with ``-f
        fmt`` or none).
    """
    return 'json:' + jsonutils.dumps(_spec(path, fmt, backing),
                                     sort_keys=True)


def _spec(path, fmt, backing):
    spec = {'driver': _fmt(fmt), 'file': {'driver': 'file',
                                          'filename': path}}
    if fmt == 'qcow2':
        # A base gets no backing of its own: None all the way down.
        spec['backing'] = None if backing is None else _spec(*backing,
                                                             None)
    elif backing is not None:
        raise exception.InvalidInput(
            reason='a %s image has no backing file' % fmt)
    return spec


def resize(path, fmt, size):
    """Grow the image at ``path`` to ``size`` bytes; its format is pinned.

    A qcow2 image's backing file is never opened (``image_spec``): growing
    rewrites the image's own tables and needs nothing of its base; an
    overlay here is never smaller than its base, so the new area reads as
    zeros either way.
    """
    execute('resize', image_spec(path, fmt), str(int(size)))


def check_no_external_references(image_info, image_id):
    """Refuse an image whose metadata names another file.

    :param image_info: the dict from ``info()``.
    :raises: ImageUnsafe if there is a backing file or an external data-file.
    """
    if image_info.get('backing-filename'):
        raise exception.ImageUnsafe(
            image_id=image_id, reason='it has a backing file %r' %
            image_info['backing-filename'])
    data_file = (image_info.get('format-specific', {}).get('data', {})
                 .get('data-file'))
    if data_file:
        raise exception.ImageUnsafe(
            image_id=image_id, reason='it has an external data-file %r' %
            data_file)

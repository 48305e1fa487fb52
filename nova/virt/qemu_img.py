"""Every qemu-img call of this project, each with its format pinned.

No function here accepts a missing format: the caller passes the format
from the disk's record (or, for a fetch, the image's verified format), so
qemu-img never probes content that a tenant controls. Each call runs under
``QEMU_IMG_LIMITS`` (address space and CPU time), applied in the child
before exec so that bounding a tool costs no extra process.
"""

import os
import resource

from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import units

from nova import exception

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

_RLIMITS = (
    (resource.RLIMIT_AS, 'address_space'),
    (resource.RLIMIT_CPU, 'cpu_time'),
)


def _limiter(limits):
    """Return a preexec_fn that applies ``limits`` in the child."""
    def apply_limits():
        for rlimit, attr in _RLIMITS:
            value = getattr(limits, attr)
            if value:
                resource.setrlimit(rlimit, (value, value))
    return apply_limits


# processutils replaces the whole environment with env_variables: keep
# PATH and the rest, and make qemu-img's messages parseable.
_ENV = dict(os.environ, LC_ALL='C', LANG='C')


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
    try:
        return processutils.execute(*cmd, preexec_fn=_limiter(limits),
                                    env_variables=_ENV)
    except processutils.ProcessExecutionError as e:
        raise exception.ProcessFailed(
            cmd=' '.join(cmd),
            reason=(e.stderr or e.stdout or str(e)).strip())


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
    """Return ``qemu-img check --output=json -f fmt path`` as a dict.

    Keys used by callers: ``image-end-offset``, ``corruptions``, ``leaks``.

    :raises: ProcessFailed for exit codes other than 0, which includes
        corruptions (2) and leaked clusters (3).
    """
    out, _err = execute('check', '--output=json', '-f', _fmt(fmt), path,
                        limits=CHECK_LIMITS)
    return jsonutils.loads(out)


def create(path, fmt, size, backing_file=None, backing_fmt=None):
    """Create an image of ``size`` bytes (an overlay if ``backing_file``).

    :param backing_fmt: required with ``backing_file`` (pinned with -F).
    """
    args = ['create', '-f', _fmt(fmt)]
    if backing_file is not None:
        if backing_fmt is None:
            raise exception.InvalidInput(
                reason='a backing file needs its format pinned')
        args += ['-b', backing_file, '-F', _fmt(backing_fmt)]
    args += [path, str(int(size))]
    execute(*args)


def convert(src, src_fmt, dst, dst_fmt, sparse=True, target_exists=False):
    """Copy ``src`` to ``dst`` converting formats, both pinned.

    :param sparse: keep holes (qemu-img's default); False writes zeros.
    :param target_exists: write into an existing ``dst`` (``-n``), e.g. a
        block device.
    """
    args = ['convert', '-q', '-f', _fmt(src_fmt), '-O', _fmt(dst_fmt)]
    if not sparse:
        args += ['-S', '0']
    if target_exists:
        args.append('-n')
    args += [src, dst]
    execute(*args, limits=CONVERT_LIMITS)


def resize(path, fmt, size):
    """Grow ``path`` to ``size`` bytes; its format is pinned."""
    execute('resize', '-f', _fmt(fmt), path, str(int(size)))


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

"""ploop: the offline ploop image commands of this project.

Only what works without the ploop kernel module is here: ``init`` (with
``-t none``: no filesystem, so nothing is mounted), ``grow`` and ``info
-s``. Each function runs one command and turns its failure into
``ProcessFailed``.

libploop 1.15 over-reads its argument vector into the environment block
(seen as a segfault of ``ploop init``); the commands therefore run with an
environment padded by one inert variable, which keeps that read inside
memory the process owns.
"""

import os

from oslo_concurrency import processutils
from oslo_log import log as logging

from nova import exception

LOG = logging.getLogger(__name__)

#: The image file and the descriptor of a ploop disk directory.
IMAGE_NAME = 'root.hds'
DESCRIPTOR_NAME = 'DiskDescriptor.xml'

_PAD_BYTES = 8192
_ENV = dict(os.environ, LC_ALL='C', LANG='C',
            NOVA_PLOOP_ENV_PAD='x' * _PAD_BYTES)


def _execute(*cmd):
    try:
        return processutils.execute(*cmd, env_variables=_ENV)
    except processutils.ProcessExecutionError as e:
        raise exception.ProcessFailed(
            cmd=' '.join(cmd),
            reason=(e.stderr or e.stdout or str(e)).strip() or
            'exit code %s' % e.exit_code)


def _size_arg(size):
    # ploop takes sizes with a unit; whole KiB keeps every sector.
    return '%dK' % -(-int(size) // 1024)


def init(directory, size):
    """Make an empty ploop disk of ``size`` bytes in ``directory`` (which
    must exist): ``root.hds`` and ``DiskDescriptor.xml``."""
    _execute('ploop', 'init', '-s', _size_arg(size), '-t', 'none',
             os.path.join(directory, IMAGE_NAME))


def grow(directory, size):
    """Grow the ploop disk in ``directory`` to ``size`` bytes (offline)."""
    _execute('ploop', 'grow', '-s', _size_arg(size),
             os.path.join(directory, DESCRIPTOR_NAME))


def size(directory):
    """The disk's size in bytes, from ``ploop info -s``."""
    out, _err = _execute('ploop', 'info', '-s',
                         os.path.join(directory, DESCRIPTOR_NAME))
    for line in out.splitlines():
        key, _sep, value = line.partition(':')
        if key.strip() == 'size':
            return int(value.strip()) * 512
    raise exception.ProcessFailed(cmd='ploop info -s',
                                  reason='no size in %r' % out)

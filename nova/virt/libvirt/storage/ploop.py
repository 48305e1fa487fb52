"""ploop: the offline ploop image commands of this project.

Only what works without the ploop kernel module is here: ``init`` (with
``-t none``: no filesystem, so nothing is mounted), ``grow`` and ``info
-s``. Each function runs its command and turns its failure into
``ProcessFailed``.

Sizes are rounded up to whole clusters (``CLUSTER``), which is what
``ploop init`` makes and what ``ploop grow`` requires. ``init`` and
``grow`` then read the size back from the delta's header: without the
kernel module ploop makes version 1 deltas, whose 32-bit size field wraps
at 2 TiB, and ploop itself exits 0 with the wrapped size.

libploop 1.15 over-reads its argument vector into the environment block
(seen as a segfault of ``ploop init``); the commands therefore run with an
environment padded by one inert variable, which keeps that read inside
memory the process owns.
"""

import os
from xml.etree import ElementTree

from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_utils import units

from nova import exception
from nova.virt import format_ploop

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


#: ploop's default block (cluster) size, ``ploop init -b 2048`` sectors.
CLUSTER = units.Mi


def whole_clusters(size):
    """``size`` bytes rounded up to whole clusters: the disk ploop makes
    for that size."""
    return -(-int(size) // CLUSTER) * CLUSTER


#: Largest disk a ploop1 delta (the format ``ploop init`` makes) can
#: declare: its header counts 512-byte sectors in 32 bits. Asked for more,
#: ploop (without its kernel module) wraps the count and exits 0.
MAX_SIZE = ((1 << 32) - 1) * 512 // CLUSTER * CLUSTER


def _size_arg(size):
    """ploop's ``-s`` for ``size`` bytes.

    :raises: InvalidInput above MAX_SIZE, before ploop runs (and rewrites
        a header with a wrapped size).
    """
    clusters = whole_clusters(size)
    if clusters > MAX_SIZE:
        raise exception.InvalidInput(
            reason='a ploop1 delta holds at most %d bytes, %d were asked' %
                   (MAX_SIZE, size))
    return '%dK' % (clusters // units.Ki)


def image_size(image_fd):
    """The size in bytes that the ploop delta open at ``image_fd``
    declares in its header (``ploop info`` would take a lock file in its
    directory, and start a process).

    :raises: ValueError if the file does not start with a ploop header.
    """
    return format_ploop.header_virtual_size(
        os.pread(image_fd, format_ploop.HEADER_SIZE, 0))


def _check_size(cmd, directory, asked):
    fd = os.open(os.path.join(directory, IMAGE_NAME),
                 os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        made = image_size(fd)
    except ValueError as e:
        raise exception.ProcessFailed(cmd=cmd, reason=str(e))
    finally:
        os.close(fd)
    if made != whole_clusters(asked):
        raise exception.ProcessFailed(
            cmd=cmd, reason='the disk has %d bytes, %d were asked (a '
            'ploop1 delta holds less than 2 TiB)' % (made, asked))


def init(directory, size):
    """Make an empty ploop disk of at least ``size`` bytes (whole
    clusters) in ``directory`` (which must exist): ``root.hds`` and
    ``DiskDescriptor.xml``.

    :raises: ProcessFailed, also for a size ploop made wrong.
    """
    _execute('ploop', 'init', '-s', _size_arg(size), '-t', 'none',
             os.path.join(directory, IMAGE_NAME))
    _check_size('ploop init', directory, size)


def grow(directory, size):
    """Grow the ploop disk in ``directory`` to at least ``size`` bytes
    (whole clusters), offline.

    :raises: ProcessFailed, also for a size ploop made wrong.
    """
    _execute('ploop', 'grow', '-s', _size_arg(size),
             os.path.join(directory, DESCRIPTOR_NAME))
    _check_size('ploop grow', directory, size)


#: A DiskDescriptor.xml ploop writes is under 1 KiB for one image.
MAX_DESCRIPTOR = 64 * units.Ki


def descriptor_images(data):
    """The ``<File>`` names of the images a DiskDescriptor.xml lists.

    :param data: the descriptor's bytes (read by the caller, through a
        descriptor of its own).
    :raises: ValueError for bytes that are not a descriptor as ploop
        writes one: larger than MAX_DESCRIPTOR, holding a markup
        declaration (a DTD, an entity, which ploop never writes), or not
        XML.
    """
    if len(data) > MAX_DESCRIPTOR:
        raise ValueError('larger than %d bytes' % MAX_DESCRIPTOR)
    if b'<!' in data:
        raise ValueError('holds a markup declaration')
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as e:
        raise ValueError('not XML: %s' % e)
    return [(element.text or '').strip() for element in root.iter('File')]

"""Generators of hostile (and a few honest) disk images, built on the fly.

Every image kind of doc/security.rst's "Hostile inputs the tests keep"
that concerns an image's bytes, made with the real qemu-img or a
few lines of Python, in a directory the test owns. Nothing is downloaded
and nothing is checked in: a test calls a builder and gets a path.

Each builder has the shape ``build(path, ...) -> path``: it creates the
file ``path`` (its directory must exist) and returns it. Builders that
name another file inside the image (a backing file, a data-file, a VMDK
extent) default to a host file such as ``/etc/passwd``, so that a failure
to refuse them would disclose it.

``CASES`` lists the fetch cases built from them: a ``HostileCase`` names
the builder, the ``disk_format`` to declare, the exception
``fetch_verified`` must raise and, where needed, a ``max_virtual_size`` or
a tampering of the store's metadata. Use ``plant`` to put any file into a
``LocalImageService`` without the import's checks (which would refuse
most of these), and ``tamper`` to change a stored record afterwards.

Other engineers' tests may use these (e.g. ``raw_with_qcow2_header`` is
what a hostile guest writes into its own raw disk).
"""

import collections
import hashlib
import os
import random
import struct
import subprocess
import uuid
import zlib

from oslo_serialization import jsonutils

from nova import exception
from nova.image import local

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

#: A host file every Linux machine has: what a hostile image points at.
HOST_FILE = '/etc/passwd'

_QCOW2_VERSION_OFFSET = 4
_QCOW2_INCOMPAT_OFFSET = 72


def qemu_img(*args):
    """Run qemu-img (for building test images only) and return stdout."""
    return subprocess.run(('qemu-img',) + tuple(str(a) for a in args),
                          check=True, capture_output=True, text=True).stdout


def _patch(path, offset, data):
    with open(path, 'r+b') as f:
        f.seek(offset)
        f.write(data)


def pattern(size, seed=0):
    """``size`` deterministic pseudo-random bytes (never all zero)."""
    return random.Random(seed).randbytes(size)


# --- honest images -----------------------------------------------------------

def raw(path, size=8 * MiB, data_at=((0, 1 * MiB),), seed=1):
    """A sparse raw disk of ``size`` bytes.

    :param data_at: (offset, length) ranges filled with random bytes; the
        rest is holes. The default is 1 MiB of data at the start.
    :returns: path.
    """
    with open(path, 'xb') as f:
        f.truncate(size)
        for i, (offset, length) in enumerate(data_at):
            f.seek(offset)
            f.write(pattern(length, seed + i))
    return path


def data_bytes(data_at):
    """Total bytes of the ranges given to ``raw(data_at=...)``."""
    return sum(length for _offset, length in data_at)


def qcow2(path, size=8 * MiB, data_at=((0, 1 * MiB),), seed=1, compat=None):
    """A qcow2 holding the same content as ``raw(...)`` with those args.

    :param compat: '0.10' for a version 2 header, None for qemu's default
        (version 3).
    """
    src = path + '.src.raw'
    raw(src, size, data_at, seed)
    try:
        args = ['convert', '-q', '-f', 'raw', '-O', 'qcow2']
        if compat:
            args += ['-o', 'compat=%s' % compat]
        qemu_img(*(args + [src, path]))
    finally:
        os.unlink(src)
    return path


def ploop(path, size=8 * MiB, data_at=((0, 1 * MiB),), seed=1):
    """A ploop delta (qemu-img's ``parallels``: "WithouFreSpacExt", 1 MiB
    clusters) holding the same content as ``raw(...)`` with those args."""
    src = path + '.src.raw'
    raw(src, size, data_at, seed)
    try:
        qemu_img('convert', '-q', '-f', 'raw', '-O', 'parallels', src, path)
    finally:
        os.unlink(src)
    return path


def iso(path, blocks=64):
    """A minimal ISO 9660 image: a primary volume descriptor at 32 KiB.

    Enough for the inspectors (and qemu, which reads it as raw); not a
    mountable filesystem.
    """
    block = 2048
    with open(path, 'xb') as f:
        f.truncate(blocks * block)
        f.seek(16 * block)
        f.write(_iso_pvd(blocks, block))
        f.seek(17 * block)
        f.write(b'\xffCD001\x01' + bytes(block - 7))  # set terminator
    return path


def _iso_pvd(blocks, block):
    pvd = bytearray(block)
    pvd[0:7] = b'\x01CD001\x01'
    pvd[8:40] = b'LINUX'.ljust(32)
    pvd[40:72] = b'HOSTILE_TEST'.ljust(32)
    pvd[80:88] = struct.pack('<I', blocks) + struct.pack('>I', blocks)
    pvd[120:124] = struct.pack('<H', 1) + struct.pack('>H', 1)
    pvd[124:128] = struct.pack('<H', 1) + struct.pack('>H', 1)
    pvd[128:132] = struct.pack('<H', block) + struct.pack('>H', block)
    pvd[881] = 1
    return bytes(pvd)


def _mbr(entries):
    """A 512-byte MBR with up to four 16-byte partition entries."""
    mbr = bytearray(512)
    for i, entry in enumerate(entries):
        mbr[446 + 16 * i:446 + 16 * (i + 1)] = entry
    mbr[510:512] = b'\x55\xaa'
    return bytes(mbr)


def _pte(boot, chs_start, ostype, chs_end, lba_start, lba_size):
    return struct.pack('<B3sB3sII', boot, bytes(chs_start), ostype,
                       bytes(chs_end), lba_start, lba_size)


def gpt(path, size=8 * MiB, seed=3):
    """A raw disk with a valid GPT (protective MBR, primary and backup
    headers, one Linux partition) and 64 KiB of data in the partition.

    The inspectors detect it as 'gpt'; declared 'raw', it is accepted.
    """
    sectors = size // 512
    part_guid = uuid.UUID(int=random.Random(seed).getrandbits(128))
    disk_guid = uuid.UUID(int=random.Random(seed + 1).getrandbits(128))
    linux_fs = uuid.UUID('0fc63daf-8483-4772-8e79-3d69d8477de4')
    first, last = 2048, sectors - 34
    entry = (linux_fs.bytes_le + part_guid.bytes_le +
             struct.pack('<QQQ', first, last, 0) +
             'test'.encode('utf-16-le').ljust(72, b'\0'))
    entries = entry.ljust(128 * 128, b'\0')
    entries_crc = zlib.crc32(entries)

    def header(current, backup, entries_lba):
        fields = struct.pack(
            '<8sIIIIQQQQ16sQIII', b'EFI PART', 0x00010000, 92, 0, 0,
            current, backup, 34, sectors - 34, disk_guid.bytes_le,
            entries_lba, 128, 128, entries_crc)
        crc = zlib.crc32(fields)
        return (fields[:16] + struct.pack('<I', crc) +
                fields[20:]).ljust(512, b'\0')

    protective = _pte(0, (0, 2, 0), 0xEE, (0xff, 0xff, 0xff), 1,
                      min(sectors - 1, 0xffffffff))
    with open(path, 'xb') as f:
        f.truncate(size)
        f.write(_mbr([protective]))
        f.write(header(1, sectors - 1, 2))
        f.write(entries)
        f.seek(first * 512)
        f.write(pattern(64 * KiB, seed))
        f.seek((sectors - 33) * 512)
        f.write(entries)
        f.write(header(sectors - 1, 1, sectors - 33))
    return path


# --- hostile images ----------------------------------------------------------

def qcow2_with_backing_file(path, backing_file=HOST_FILE, size=1 * MiB):
    """A qcow2 whose backing file is a host file (read as raw)."""
    qemu_img('create', '-q', '-f', 'qcow2', '-u', '-b', backing_file,
             '-F', 'raw', path, size)
    return path


def qcow2_with_data_file(path, data_file=None, size=1 * MiB):
    """A qcow2 whose data lives in an external data-file.

    :param data_file: default ``<path>.data`` (created by qemu-img next to
        the image, as the hostile uploader would name any host file).
    """
    data_file = data_file or path + '.data'
    qemu_img('create', '-q', '-f', 'qcow2', '-o', 'data_file=%s' % data_file,
             path, size)
    return path


def qcow2_unknown_features(path, bit=10, size=1 * MiB):
    """A qcow2 v3 with an incompatible feature bit no reader knows."""
    qemu_img('create', '-q', '-f', 'qcow2', path, size)
    with open(path, 'r+b') as f:
        f.seek(_QCOW2_INCOMPAT_OFFSET)
        (features,) = struct.unpack('>Q', f.read(8))
        f.seek(_QCOW2_INCOMPAT_OFFSET)
        f.write(struct.pack('>Q', features | (1 << bit)))
    return path


def qcow2_with_version(path, version, size=1 * MiB):
    """A qcow2 whose header claims ``version`` (e.g. 1 or 4)."""
    qemu_img('create', '-q', '-f', 'qcow2', path, size)
    _patch(path, _QCOW2_VERSION_OFFSET, struct.pack('>I', version))
    return path


def qed(path, size=1 * MiB):
    """A QED image (a format nobody should accept any more)."""
    qemu_img('create', '-q', '-f', 'qed', path, size)
    return path


def vmdk_sparse(path, size=1 * MiB):
    """A monolithicSparse VMDK, as qemu-img makes it."""
    qemu_img('create', '-q', '-f', 'vmdk', path, size)
    return path


def vmdk_flat_descriptor(path, extent=HOST_FILE, sectors=2048):
    """A text VMDK descriptor (monolithicFlat) whose extent is a host path.

    Read as vmdk, qemu would serve ``extent``'s bytes as the disk
    (OSSA-2023-002).
    """
    text = ('# Disk DescriptorFile\n'
            'version=1\n'
            'CID=fffffffe\n'
            'parentCID=ffffffff\n'
            'createType="monolithicFlat"\n'
            '\n'
            '# Extent description\n'
            'RW %d FLAT "%s" 0\n'
            '\n'
            '# The Disk Data Base\n'
            '#DDB\n'
            'ddb.adapterType = "ide"\n' % (sectors, extent))
    with open(path, 'x') as f:
        f.write(text)
    return path


def iso_with_qcow2_header(path, backing_file=HOST_FILE):
    """A file that is both a qcow2 (with a backing file) and an ISO.

    A qcow2 header at 0 and an ISO primary volume descriptor at 32 KiB,
    inside the qcow2's header cluster where qcow2 readers never look.
    """
    qcow2_with_backing_file(path, backing_file, size=1 * MiB)
    _patch(path, 16 * 2048, _iso_pvd(64, 2048))
    _patch(path, 17 * 2048, b'\xffCD001\x01')
    return path


def gpt_bad_protective_mbr(path, size=1 * MiB):
    """A raw disk whose MBR has a GPT protective entry with a bad start
    LBA plus an extra partition (which the inspector's safety check
    refuses)."""
    bad = _pte(0, (0, 2, 0), 0xEE, (0xff, 0xff, 0xff), 7, 100)
    extra = _pte(0, (0, 3, 0), 0x83, (0xff, 0xff, 0xff), 200, 100)
    with open(path, 'xb') as f:
        f.truncate(size)
        f.write(_mbr([bad, extra]))
    return path


def qcow2_bomb(path, virtual_size=16 * TiB):
    """A tiny qcow2 (a few hundred KiB) claiming a huge virtual size."""
    qemu_img('create', '-q', '-f', 'qcow2', path, virtual_size)
    return path


def qcow2_with_trailing_data(path, extra=1 * MiB, seed=11):
    """An honest qcow2 followed by ``extra`` bytes qemu never reads (past
    ``qemu-img check``'s image-end-offset), within the size bound."""
    qcow2(path, size=8 * MiB, data_at=((0, 1 * MiB),))
    with open(path, 'ab') as f:
        f.write(pattern(extra, seed))
    return path


def qcow2_padded(path, virtual_size=1 * MiB, padding=64 * MiB, seed=12):
    """A small qcow2 padded to far more bytes than its metadata could
    need (images.qcow2_max_bytes): a large download for a tiny disk.

    The padding is a hole ending in 64 KiB of data (cheap to build).
    """
    qemu_img('create', '-q', '-f', 'qcow2', path, virtual_size)
    with open(path, 'r+b') as f:
        end = f.seek(0, os.SEEK_END) + padding
        f.seek(end - 64 * KiB)
        f.write(pattern(64 * KiB, seed))
    return path


def truncated_qcow2(path, keep=None):
    """A qcow2 with 1 MiB of data cut short (its tables point past EOF).

    :param keep: bytes kept; default: the header cluster and a bit.
    """
    qcow2(path, size=8 * MiB, data_at=((0, 1 * MiB),))
    with open(path, 'r+b') as f:
        f.truncate(keep if keep is not None else 64 * KiB + 1000)
    return path


# Offsets in a ploop header (qemu's docs/interop/parallels.txt).
_PLOOP_VERSION = 16
_PLOOP_NB_SECTORS = 36
_PLOOP_IN_USE = 44
_PLOOP_EXT_OFF = 56
_PLOOP_BAT = 64


def ploop_truncated_header(path):
    """The first 40 bytes of a ploop: its magic, without the rest of its
    header."""
    ploop(path)
    with open(path, 'r+b') as f:
        f.truncate(40)
    return path


def ploop_truncated_bat(path, size=2 * GiB):
    """A ploop of ``size`` bytes of disk (a 8 KiB BAT) cut inside its
    BAT."""
    qemu_img('create', '-q', '-f', 'parallels', path, size)
    with open(path, 'r+b') as f:
        f.truncate(_PLOOP_BAT + 4000)
    return path


def ploop_truncated_data(path):
    """A ploop cut short in its data: its last BAT entry points past the
    end of the file."""
    ploop(path, data_at=((0, 1 * MiB), (6 * MiB, 1 * MiB)))
    with open(path, 'r+b') as f:
        f.truncate(f.seek(0, os.SEEK_END) - 512 * KiB)
    return path


def ploop_huge(path, virtual_size=16 * TiB):
    """A tiny ploop (its header and BAT: 128 KiB) claiming ``virtual_size``
    bytes of disk in 512 MiB clusters, nothing allocated."""
    tracks = 512 * MiB // 512
    entries = virtual_size // (512 * MiB)
    header = struct.pack('<16sIIIIIQIIIQ', b'WithouFreSpacExt', 2, 16, 32,
                         tracks, entries, virtual_size // 512, 0, tracks, 0,
                         0)
    with open(path, 'xb') as f:
        f.write(header)
        f.truncate(_PLOOP_BAT + 4 * entries)
    return path


def ploop_size_overflow(path):
    """A ploop whose size in bytes (nb_sectors * 512) overflows 64 bits."""
    ploop(path)
    _patch(path, _PLOOP_NB_SECTORS, struct.pack('<Q', 1 << 60))
    return path


def ploop_ext_off_out_of_file(path, sector=1 << 40):
    """A ploop whose Format Extension (ext_off) is far past its end."""
    ploop(path)
    _patch(path, _PLOOP_EXT_OFF, struct.pack('<Q', sector))
    return path


def ploop_with_version(path, version):
    ploop(path)
    _patch(path, _PLOOP_VERSION, struct.pack('<I', version))
    return path


def ploop_in_use(path):
    """A ploop left open by its writer (in_use = 0x746F6E59: dirty)."""
    ploop(path)
    _patch(path, _PLOOP_IN_USE, struct.pack('<I', 0x746F6E59))
    return path


def ploop_bat_out_of_file(path, cluster=1 << 20):
    """A ploop whose first BAT entry points to a cluster far past its end
    (the entries of a "WithouFreSpacExt" image count clusters)."""
    ploop(path)
    _patch(path, _PLOOP_BAT, struct.pack('<I', cluster))
    return path


def ploop_with_trailing_data(path, extra=1 * MiB, seed=13):
    """An honest ploop followed by ``extra`` bytes no BAT entry names."""
    ploop(path)
    with open(path, 'ab') as f:
        f.write(pattern(extra, seed))
    return path


def raw_with_qcow2_header(path, backing_file=HOST_FILE, size=8 * MiB):
    """A raw disk whose first bytes are a qcow2 header with a backing file.

    What a hostile guest writes into its own raw disk: read with -f raw it
    is harmless data; probed, it would open ``backing_file``.
    """
    header = path + '.hdr'
    qcow2_with_backing_file(header, backing_file, size=size)
    with open(header, 'rb') as f:
        head = f.read(64 * KiB)
    os.unlink(header)
    with open(path, 'xb') as f:
        f.truncate(size)
        f.write(head)
    return path


# --- headers that keep an inspector waiting ---------------------------------
#
# Each is decided only at the end of the stream, however long it is: the
# fetch must not hold it in memory meanwhile (images.MAX_PENDING).

#: VMDK's "grain directory at the end" marker (streamOptimized).
VMDK_GD_AT_END = 0xffffffffffffffff

#: GUID of a VHDX metadata region entry.
_VHDX_METAREGION = uuid.UUID('8b7ca206-4790-4b9a-b8fe-575f050f886e')

#: Where the VHDX inspector reads its region table, whatever the content.
VHDX_REGION_TABLE = 192 * KiB


def _padded(path, head, size, seed):
    """Write ``head`` at 0, a hole, then 64 KiB of data ending at ``size``.

    The tail makes the stream's last chunks non-zero, so that nothing can
    be decided from a sparse read; the hole keeps the file small on disk.
    """
    tail = 64 * KiB
    assert len(head) + tail <= size
    with open(path, 'xb') as f:
        f.truncate(size)
        f.write(head)
        f.seek(size - tail)
        f.write(pattern(tail, seed))
    return path


def vmdk_grain_directory_at_end(path, size=4 * MiB, seed=7):
    """A monolithicSparse VMDK header whose grain directory is "at the
    end": the VMDK inspector waits for the footer, i.e. for EOF.

    :param size: bytes of the file (data after the header and descriptor).
    """
    header = struct.pack('<4sIIQQQQIQQ', b'KDMV', 1, 0, size // 512, 128,
                         1, 1, 512, 0, VMDK_GD_AT_END).ljust(512, b'\0')
    descriptor = (b'# Disk DescriptorFile\n'
                  b'createType="monolithicSparse"\n').ljust(512, b'\0')
    return _padded(path, header + descriptor, size, seed)


def vhdx_region_table(metadata_offset=8 * GiB):
    """The 64 KiB the VHDX inspector reads at 192 KiB: a region table whose
    metadata region starts at ``metadata_offset``."""
    table = bytearray(64 * KiB)
    table[0:16] = struct.pack('<IIII', 0x69676572, 0, 1, 0)  # 'regi', 1
    table[16:32] = _VHDX_METAREGION.bytes_le
    table[32:48] = struct.pack('<QII', metadata_offset, 64 * KiB, 0)
    return bytes(table)


def vhdx_far_metadata(path, size=4 * MiB, metadata_offset=8 * GiB, seed=8):
    """A VHDX (its magic at 0) whose metadata region is far past the end
    of the file: the VHDX inspector waits for it until EOF."""
    head = bytearray(VHDX_REGION_TABLE + 64 * KiB)
    head[0:8] = b'vhdxfile'
    head[VHDX_REGION_TABLE:] = vhdx_region_table(metadata_offset)
    return _padded(path, bytes(head), size, seed)


def raw_with_vhdx_region_table(path, size=4 * MiB, seed=9):
    """An honest raw disk (no magic) whose bytes at 192 KiB happen to read
    as a VHDX region table: undecided until EOF, then raw."""
    head = bytearray(VHDX_REGION_TABLE + 64 * KiB)
    head[:4 * KiB] = pattern(4 * KiB, seed)
    head[VHDX_REGION_TABLE:] = vhdx_region_table()
    return _padded(path, bytes(head), size, seed + 1)


def qcow2_bomb_undecided(path, virtual_size=16 * TiB, size=8 * MiB):
    """A qcow2 bomb carrying a VHDX region table in its header cluster
    (2 MiB clusters: qemu never reads those bytes), so that the
    inspectors stay undecided until EOF; padded with data to ``size``
    (or a little past qemu's own end, if that is further)."""
    qemu_img('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', path,
             virtual_size)
    _patch(path, VHDX_REGION_TABLE, vhdx_region_table())
    with open(path, 'r+b') as f:
        end = max(f.seek(0, os.SEEK_END), size - 64 * KiB)
        f.seek(end)
        f.write(pattern(64 * KiB, 10))
    return path


# --- the local store, without its checks -------------------------------------

def plant(store, src_path, disk_format, image_id=None, **overrides):
    """Put ``src_path`` into ``store`` (a LocalImageService) as is.

    Bypasses ``import_file``'s verification, so that hostile content can be
    served to ``fetch_verified``. The record is honest (size, md5, sha512
    of the bytes) unless ``overrides`` say otherwise.

    :returns: the new image's id.
    """
    image_id = image_id or str(uuid.uuid4())
    image_dir = store.image_dir(image_id)
    os.makedirs(image_dir)
    md5 = hashlib.md5(usedforsecurity=False)
    sha512 = hashlib.sha512()
    size = 0
    with open(src_path, 'rb') as src, \
            open(os.path.join(image_dir, local.DATA_NAME), 'xb') as dst:
        for chunk in iter(lambda: src.read(MiB), b''):
            md5.update(chunk)
            sha512.update(chunk)
            size += len(chunk)
            if chunk.count(0) == len(chunk):
                dst.seek(len(chunk), os.SEEK_CUR)
            else:
                dst.write(chunk)
        dst.truncate(size)
    meta = {
        'id': image_id, 'name': os.path.basename(src_path),
        'status': 'active', 'disk_format': disk_format,
        'container_format': 'bare', 'size': size,
        'checksum': md5.hexdigest(), 'os_hash_algo': 'sha512',
        'os_hash_value': sha512.hexdigest(), 'virtual_size': None,
        'min_disk': 0, 'properties': {},
    }
    meta.update(overrides)
    _write_meta(store, image_id, meta)
    return image_id


def tamper(store, image_id, **changes):
    """Change keys of a stored record (no checks; ``None`` is kept)."""
    path = os.path.join(store.image_dir(image_id), local.METADATA_NAME)
    with open(path) as f:
        meta = jsonutils.loads(f.read())
    meta.update(changes)
    _write_meta(store, image_id, meta)


def _write_meta(store, image_id, meta):
    path = os.path.join(store.image_dir(image_id), local.METADATA_NAME)
    with open(path, 'w') as f:
        f.write(jsonutils.dumps(meta))


def flip_byte(path, offset=0):
    """Invert one byte of ``path`` in place (the record is unchanged)."""
    with open(path, 'r+b') as f:
        f.seek(offset)
        (b,) = f.read(1)
        f.seek(offset)
        f.write(bytes([b ^ 0xff]))


# --- the catalogue -----------------------------------------------------------

#: name: test id; build: builder(path) -> path; declared: disk_format to
#: declare; error: what fetch_verified must raise; max_virtual_size: passed
#: to the fetch; meta: record overrides at plant time; after: callable(store,
#: image_id) run after planting (to damage stored bytes).
HostileCase = collections.namedtuple(
    'HostileCase', 'name build declared error max_virtual_size meta after')


def _case(name, build, declared, error, max_virtual_size=None, meta=None,
          after=None):
    return HostileCase(name, build, declared, error, max_virtual_size,
                       meta or {}, after)


def _data_path(store, image_id):
    return os.path.join(store.image_dir(image_id), local.DATA_NAME)


CASES = [
    _case('qcow2-backing-file', qcow2_with_backing_file, 'qcow2',
          exception.ImageUnsafe),
    _case('qcow2-data-file', qcow2_with_data_file, 'qcow2',
          exception.ImageUnsafe),
    _case('qcow2-unknown-features', qcow2_unknown_features, 'qcow2',
          exception.ImageUnsafe),
    _case('qcow2-version-1', lambda p: qcow2_with_version(p, 1), 'qcow2',
          exception.ImageUnsafe),
    _case('qcow2-version-4', lambda p: qcow2_with_version(p, 4), 'qcow2',
          exception.ImageUnsafe),
    _case('qed-declared-qed', qed, 'qed', exception.ImageFormatUnsupported),
    _case('qed-declared-raw', qed, 'raw', exception.ImageFormatMismatch),
    _case('qed-declared-qcow2', qed, 'qcow2', exception.ImageFormatMismatch),
    _case('raw-declared-content-qcow2', qcow2, 'raw',
          exception.ImageFormatMismatch),
    _case('raw-declared-content-qcow2-backing', qcow2_with_backing_file,
          'raw', exception.ImageFormatMismatch),
    _case('raw-declared-content-vmdk', vmdk_sparse, 'raw',
          exception.ImageFormatMismatch),
    _case('vmdk-declared-vmdk', vmdk_sparse, 'vmdk',
          exception.ImageFormatUnsupported),
    _case('qcow2-declared-content-raw', raw, 'qcow2',
          exception.ImageFormatMismatch),
    _case('vmdk-flat-descriptor-declared-raw', vmdk_flat_descriptor, 'raw',
          exception.ImageFormatMismatch),
    _case('vmdk-flat-descriptor-declared-vmdk', vmdk_flat_descriptor,
          'vmdk', exception.ImageFormatUnsupported),
    _case('iso-with-qcow2-header-declared-raw', iso_with_qcow2_header, 'raw',
          exception.ImageFormatMismatch),
    _case('iso-with-qcow2-header-declared-iso', iso_with_qcow2_header, 'iso',
          exception.ImageFormatMismatch),
    _case('iso-with-qcow2-header-declared-qcow2', iso_with_qcow2_header,
          'qcow2', exception.ImageFormatMismatch),
    _case('gpt-bad-protective-mbr', gpt_bad_protective_mbr, 'raw',
          exception.ImageUnsafe),
    # Undecided until EOF (held in memory before MAX_PENDING existed).
    _case('vmdk-grain-directory-at-end-declared-raw',
          vmdk_grain_directory_at_end, 'raw', exception.ImageFormatMismatch),
    _case('vhdx-far-metadata-declared-raw', vhdx_far_metadata, 'raw',
          exception.ImageFormatMismatch),
    _case('qcow2-bomb-undecided', qcow2_bomb_undecided, 'qcow2',
          exception.ImageTooLarge, max_virtual_size=1 * GiB),
    _case('qcow2-bomb', qcow2_bomb, 'qcow2', exception.ImageTooLarge,
          max_virtual_size=1 * GiB),
    _case('raw-larger-than-disk', raw, 'raw', exception.ImageTooLarge,
          max_virtual_size=4 * MiB),
    # ploop (qemu's parallels): format_ploop.ParallelsInspector.
    _case('ploop-declared-raw', ploop, 'raw', exception.ImageFormatMismatch),
    _case('ploop-declared-qcow2', ploop, 'qcow2',
          exception.ImageFormatMismatch),
    _case('raw-declared-ploop', raw, 'ploop', exception.ImageFormatMismatch),
    _case('qcow2-declared-ploop', qcow2, 'ploop',
          exception.ImageFormatMismatch),
    _case('ploop-truncated-header', ploop_truncated_header, 'ploop',
          exception.ImageFormatMismatch),
    _case('ploop-truncated-bat', ploop_truncated_bat, 'ploop',
          exception.ImageUnsafe),
    _case('ploop-truncated-data', ploop_truncated_data, 'ploop',
          exception.ImageUnsafe),
    _case('ploop-huge', ploop_huge, 'ploop', exception.ImageTooLarge,
          max_virtual_size=1 * GiB),
    _case('ploop-size-overflow', ploop_size_overflow, 'ploop',
          exception.ImageUnsafe),
    _case('ploop-ext-off-out-of-file', ploop_ext_off_out_of_file, 'ploop',
          exception.ImageUnsafe),
    _case('ploop-version-1', lambda p: ploop_with_version(p, 1), 'ploop',
          exception.ImageUnsafe),
    _case('ploop-version-3', lambda p: ploop_with_version(p, 3), 'ploop',
          exception.ImageUnsafe),
    _case('ploop-in-use', ploop_in_use, 'ploop', exception.ImageUnsafe),
    _case('ploop-bat-out-of-file', ploop_bat_out_of_file, 'ploop',
          exception.ImageUnsafe),
    _case('ploop-trailing-data', ploop_with_trailing_data, 'ploop',
          exception.ImageDamaged),
    _case('truncated-qcow2', truncated_qcow2, 'qcow2',
          exception.ImageDamaged),
    _case('qcow2-trailing-data', qcow2_with_trailing_data, 'qcow2',
          exception.ImageDamaged),
    _case('qcow2-padded-beyond-metadata', qcow2_padded, 'qcow2',
          exception.ImageDamaged),
    _case('download-shorter-than-size', raw, 'raw', exception.ImageCorrupt,
          meta={'size': 8 * MiB + 512}),
    _case('download-longer-than-size', raw, 'raw', exception.ImageCorrupt,
          meta={'size': 8 * MiB - 512}),
    # md5 is verified only for images without a strong hash (as
    # glanceclient does); there it must catch the difference.
    _case('download-md5-differs', raw, 'raw', exception.ImageCorrupt,
          meta={'checksum': '0' * 32, 'os_hash_algo': None,
                'os_hash_value': None}),
    _case('download-sha512-differs', raw, 'raw', exception.ImageCorrupt,
          meta={'os_hash_value': 'f' * 128}),
    _case('download-bytes-differ', raw, 'raw', exception.ImageCorrupt,
          after=lambda store, image_id: flip_byte(
              _data_path(store, image_id), 4096)),
    _case('qcow2-download-bytes-differ', qcow2, 'qcow2',
          exception.ImageCorrupt,
          after=lambda store, image_id: flip_byte(
              _data_path(store, image_id), 70000)),
    _case('no-checksum', raw, 'raw', exception.ImageMetadataInvalid,
          meta={'checksum': None, 'os_hash_algo': None,
                'os_hash_value': None}),
    _case('unknown-hash-algo', raw, 'raw', exception.ImageMetadataInvalid,
          meta={'os_hash_algo': 'md4'}),
    _case('not-active', raw, 'raw', exception.ImageUnacceptable,
          meta={'status': 'queued'}),
    _case('container-ova', raw, 'raw', exception.ImageUnacceptable,
          meta={'container_format': 'ova'}),
]

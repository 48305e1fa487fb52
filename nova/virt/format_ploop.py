"""A streaming inspector for ploop / Parallels images (qemu's ``parallels``).

oslo.utils' ``format_inspector`` has no inspector for this format. This is
one in the same shape (a ``FileInspector``: capture regions fed chunk by
chunk, then named safety checks), so the verified fetch runs it beside
oslo's on the same bytes (``images.ImageStream``).

What it reads, from qemu's ``docs/interop/parallels.txt`` and ploop's
``ploop1_image.h`` (all little-endian)::

    0  magic[16]   "WithoutFreeSpace" (v1: BAT in sectors, 32-bit size)
                   or "WithouFreSpacExt" (v2: BAT in clusters)
   16  version     must be 2
   28  tracks      cluster size, in 512-byte sectors
   32  bat_entries disk size in clusters: the BAT's length
   36  nb_sectors  disk size in sectors (v1: high 32 bits must be zero)
   44  in_use      0 or 0x312e3276 when closed, 0x746F6E59 while open
   48  data_off    first sector of the data area (v1: 0 means "after the
                   BAT, sector aligned"; v2: non-zero, cluster aligned)
   52  flags       bit 0 "empty" (qemu ignores it), bit 1 "version
                   conversion in progress" (ploop)
   56  ext_off     sector of the Format Extension cluster, or 0
   64  BAT         bat_entries x u32: 0 = unallocated, else the cluster's
                   offset (v1: in sectors, v2: in clusters), which must be
                   in the data area, cluster aligned within it, and inside
                   the file

A parallels image names no other file: it has no backing file and no
data-file, so there is nothing of that kind to check (unlike qcow2). What
is refused instead: an unknown version, magic or flag; an image left open
(dirty) or mid-conversion; a Format Extension (its only defined feature
is dirty bitmaps, which a base image has no use for, and which this
inspector does not parse); a header whose numbers overflow or disagree
(size not covered by the BAT, data area overlapping the BAT); a BAT entry
below or misaligned in the data area; and, once the whole stream has been
read (or for ``from_file``), a BAT entry whose cluster ends past the end of
the file.

The BAT is checked as it streams past, never held: memory stays constant
however large the image claims to be. Two entries naming the same
cluster are not looked for (that would take memory growing with the
image): they only make two parts of the disk read the same bytes, which
the conversion to raw this project always does copies as qemu reads them.
"""

import array
import os
import struct
import sys

from oslo_utils.imageutils import format_inspector

SECTOR = 512
HEADER_SIZE = 64
MAGIC_V1 = b'WithoutFreeSpace'
MAGIC_V2 = b'WithouFreSpacExt'
VERSION = 2
IN_USE = 0x746F6E59
CLOSED = (0, 0x312e3276)
FLAG_EMPTY = 1
FLAG_CONVERTING = 2

#: qemu refuses clusters of more sectors than this (INT32_MAX / 513).
MAX_TRACKS = 0x7fffffff // 513
#: qemu refuses a BAT of more entries than this (INT_MAX / 4).
MAX_BAT_ENTRIES = 0x7fffffff // 4
#: Virtual sizes qemu (an int64 of bytes) can hold.
MAX_VIRTUAL_SIZE = (1 << 63) - 1

_HEADER = struct.Struct('<16sIIIIIQIIIQ')


def header_virtual_size(data):
    """The virtual size in bytes that the ploop delta header ``data`` (a
    delta's first HEADER_SIZE bytes) declares.

    :raises: ValueError if ``data`` is not a ploop header.
    """
    if len(data) < HEADER_SIZE:
        raise ValueError('a ploop header has %d bytes, not %d' % (
            HEADER_SIZE, len(data)))
    header = _Header(data[:HEADER_SIZE])
    if header.magic not in (MAGIC_V1, MAGIC_V2):
        raise ValueError('not a ploop header')
    return header.nb_sectors * SECTOR


class _Header:
    """The 64-byte header, decoded; ``problem`` says why it is refused
    (None if every field is one this inspector vouches for)."""

    def __init__(self, data):
        (self.magic, self.version, _heads, _cylinders, self.tracks,
         self.bat_entries, self.nb_sectors, self.in_use, data_off,
         self.flags, self.ext_off) = _HEADER.unpack(data)
        self.v2 = self.magic == MAGIC_V2
        self.cluster = self.tracks * SECTOR
        bat_end = HEADER_SIZE + 4 * self.bat_entries
        if data_off == 0 and not self.v2:
            data_off = -(-bat_end // SECTOR)
        self.data_off = data_off * SECTOR
        self.bat_end = bat_end
        # The BAT's unit: sectors (v1) or clusters (v2).
        self.unit = self.cluster if self.v2 else SECTOR
        self.problem = self._problem()

    def _problem(self):
        if self.version != VERSION:
            return 'version %d (only %d exists)' % (self.version, VERSION)
        if self.in_use == IN_USE:
            return 'it is marked in use (not cleanly closed)'
        if self.in_use not in CLOSED:
            return 'in_use is %#x, not a value the format allows' % (
                self.in_use)
        if self.flags & FLAG_CONVERTING:
            return 'it is marked as in the middle of a version conversion'
        if self.flags & ~FLAG_EMPTY:
            return 'unknown flags %#x' % (self.flags & ~FLAG_EMPTY)
        if self.ext_off:
            return 'it has a format extension at sector %d (dirty ' \
                'bitmaps, which a base image does not need)' % self.ext_off
        if not 0 < self.tracks <= MAX_TRACKS:
            return 'cluster size of %d sectors' % self.tracks
        if self.bat_entries > MAX_BAT_ENTRIES:
            return '%d BAT entries' % self.bat_entries
        if not self.v2 and self.nb_sectors >> 32:
            return 'a v1 image with a 64-bit size'
        if self.nb_sectors == 0:
            return 'a size of 0 sectors'
        if self.nb_sectors * SECTOR > MAX_VIRTUAL_SIZE:
            return 'a size of %d sectors, more bytes than 63 bits count' % (
                self.nb_sectors)
        if -(-self.nb_sectors // self.tracks) > self.bat_entries:
            return '%d sectors are more than its %d BAT entries cover' % (
                self.nb_sectors, self.bat_entries)
        if self.data_off < self.bat_end:
            return 'its data area (byte %d) starts inside its BAT' % (
                self.data_off)
        if self.v2 and self.data_off % self.cluster:
            return 'its data area (byte %d) is not cluster aligned' % (
                self.data_off)
        return None


class _BatScan(format_inspector.CaptureRegion):
    """A region that checks the BAT's entries as they stream past and
    keeps none of them: only the highest cluster end and the first entry
    that breaks a rule."""

    def __init__(self, header):
        super().__init__(HEADER_SIZE, header.bat_end - HEADER_SIZE)
        self._header = header
        self._seen = 0
        self._carry = b''
        self.max_end = 0
        self.problem = None

    @property
    def complete(self):
        return self._seen >= self.length

    def capture(self, chunk, current_position):
        start = current_position - len(chunk)
        want = self.offset + self._seen
        end = min(current_position, self.offset + self.length)
        if not start <= want < end:
            return b''
        data = self._carry + bytes(chunk[want - start:end - start])
        self._seen += end - want
        whole = len(data) - len(data) % 4
        self._carry = data[whole:]
        if self.problem is None:
            self._check(data[:whole])
        return b''

    def _check(self, data):
        entries = array.array('I', data)
        if sys.byteorder != 'little':
            entries.byteswap()
        h = self._header
        top = max(entries, default=0)
        if top:
            self.max_end = max(self.max_end, top * h.unit + h.cluster)
        for entry in entries:
            if not entry:
                continue
            offset = entry * h.unit
            if offset < h.data_off or (offset - h.data_off) % h.cluster:
                self.problem = 'a BAT entry points to byte %d, not a ' \
                    'cluster of its data area (from byte %d, %d-byte ' \
                    'clusters)' % (offset, h.data_off, h.cluster)
                return


class ParallelsInspector(format_inspector.FileInspector):
    """ploop / Parallels expandable images (see the module docstring).

    ``NAME`` is qemu-img's name of the format; the image service calls it
    ``ploop``.
    """

    NAME = 'parallels'

    def _initialize(self):
        self._header = None
        self._file_size = None
        self.new_region('header', format_inspector.CaptureRegion(
            0, HEADER_SIZE))
        self.add_safety_check(format_inspector.SafetyCheck(
            'header', self._check_header,
            'version, in-use mark, flags, no format extension, sizes'))
        self.add_safety_check(format_inspector.SafetyCheck(
            'bat', self._check_bat,
            'every allocated cluster in the data area and in the file'))

    def post_process(self):
        # Added here, not in region_complete(): a region added now is also
        # given the chunk that completed the header (the BAT follows it).
        if self._header is None and self.region('header').complete:
            self._header = _Header(self.region('header').data)
            if self.format_match and self._header.problem is None:
                self.new_region('bat', _BatScan(self._header))

    @property
    def format_match(self):
        return self._header is not None and self._header.magic in (
            MAGIC_V1, MAGIC_V2)

    @property
    def virtual_size(self):
        if not self.format_match:
            return 0
        return self._header.nb_sectors * SECTOR

    @classmethod
    def from_file(cls, filename):
        """As ``FileInspector.from_file``, knowing the file's size, so
        that the BAT is checked against it without reading the data."""
        with open(filename, 'rb') as f:
            size = os.fstat(f.fileno()).st_size
            inspector = cls()
            inspector._file_size = size
            while not inspector.complete:
                chunk = f.read(64 * 1024)
                if not chunk:
                    break
                inspector.eat_chunk(chunk)
        inspector.finish()
        if not inspector.complete or not inspector.format_match:
            raise format_inspector.ImageFormatError(
                'File is not in requested format')
        return inspector

    def _check_header(self):
        header = self._header
        size = self._known_size()
        if header.ext_off and size is not None and \
                header.ext_off * SECTOR >= size:
            raise format_inspector.SafetyViolation(
                'its format extension (sector %d) is past the end of the '
                '%d-byte file' % (header.ext_off, size))
        if header.problem is not None:
            raise format_inspector.SafetyViolation(header.problem)

    def _known_size(self):
        """The file's size, once known (``from_file``, or the end of the
        stream); None before."""
        if self._file_size is not None:
            return self._file_size
        if self._finished:
            # finish() after a stream: every byte was seen.
            return self._total_count
        return None

    def _check_bat(self):
        if not self.has_region('bat'):
            # The header was refused: nothing to scan.
            return
        scan = self.region('bat')
        if scan.problem is not None:
            raise format_inspector.SafetyViolation(scan.problem)
        size = self._known_size()
        if size is not None and scan.max_end > size:
            raise format_inspector.SafetyViolation(
                'a BAT entry points to a cluster ending at byte %d, past '
                'the end of the %d-byte file' % (scan.max_end, size))

    def check_header(self):
        """The header's own check, before the BAT has streamed past.

        :raises: SafetyCheckFailed as ``safety_check`` would for it.
        """
        if self._header is None:
            raise format_inspector.ImageFormatError(
                'the 64-byte header has not been read')
        try:
            self._check_header()
        except format_inspector.SafetyViolation as e:
            raise format_inspector.SafetyCheckFailed({'header': e})

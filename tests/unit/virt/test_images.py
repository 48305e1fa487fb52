"""nova.virt.images.ImageStream and the metadata rules of the fetch,
without qemu-img: the inspectors, hashes and limits on crafted bytes."""

import hashlib
import os
import struct
import threading

import pytest

from nova import exception
from nova.virt import images

IMAGE_ID = '0b5a3c9e-4f0e-4d6a-9a43-3b8f3e0c2d11'
KiB = 1 << 10
MiB = 1 << 20


#: Bytes every inspector needs before the formats are decided (the VHDX
#: inspector reads its header at 192-256 KiB, whatever the content).
DECIDED = 256 * KiB


def qcow2_header(size=MiB, version=3, backing_offset=0, features=0):
    """The first 256 KiB of a qcow2: enough for every inspector."""
    header = struct.pack('>4sIQIIQ', b'QFI\xfb', version, backing_offset,
                         0, 16, size)
    header = header.ljust(72, b'\0') + struct.pack('>Q', features)
    header = header.ljust(104, b'\0') + struct.pack('>I', 104)
    return header.ljust(DECIDED, b'\0')


def _stream(data, disk_format='raw', chunk=64 * KiB, **kwargs):
    """Feed ``data`` to a new ImageStream; return (stream, inspection)."""
    checks = {k: kwargs.pop(k) for k in ('checksum', 'os_hash_value')
              if k in kwargs}
    with images.ImageStream(IMAGE_ID, disk_format, **kwargs) as stream:
        for i in range(0, len(data), chunk):
            stream.write(data[i:i + chunk])
        return stream, stream.finish(**checks)


def test_raw_stream():
    data = b'\1' * 300 * KiB
    calls = []
    stream, result = _stream(data, size=len(data),
                             progress=lambda d, t: calls.append((d, t)))
    assert result == images.Inspection(
        detected='raw', virtual_size=len(data), size=len(data),
        checksum=hashlib.md5(data).hexdigest(), os_hash_algo='sha512',
        os_hash_value=hashlib.sha512(data).hexdigest())
    assert calls[-1] == (len(data), len(data))
    assert len(calls) == 5


def test_other_hash_algorithm():
    data = b'\2' * 1000
    with images.ImageStream(IMAGE_ID, 'raw', os_hash_algo='sha256') as s:
        s.write(data)
        result = s.finish(os_hash_value=hashlib.sha256(data).hexdigest())
    assert result.os_hash_algo == 'sha256'


@pytest.mark.parametrize('algo', ['md5', 'sha1', 'crc32', ''])
def test_weak_or_unknown_hash_is_refused(algo):
    with pytest.raises(exception.ImageMetadataInvalid):
        images.ImageStream(IMAGE_ID, 'raw', os_hash_algo=algo)


def test_short_download():
    with pytest.raises(exception.ImageCorrupt):
        _stream(b'\1' * 1000, size=1001)


def test_long_download_stops_at_the_declared_size():
    with images.ImageStream(IMAGE_ID, 'raw', size=1000) as stream:
        stream.write(b'\1' * 1000)
        with pytest.raises(exception.ImageCorrupt):
            stream.write(b'\1')


@pytest.mark.parametrize('key', ['checksum', 'os_hash_value'])
def test_checksum_mismatch(key):
    with pytest.raises(exception.ImageCorrupt):
        _stream(b'\1' * 1000, **{key: 'ab' * 64})


def test_checksums_compare_case_insensitively():
    data = b'\3' * 10
    _, result = _stream(data, checksum=hashlib.md5(data).hexdigest().upper())
    assert result.checksum == hashlib.md5(data).hexdigest()


def test_qcow2_declared_raw_is_refused_at_its_header():
    with images.ImageStream(IMAGE_ID, 'raw', size=64 * MiB) as stream:
        with pytest.raises(exception.ImageFormatMismatch) as e:
            stream.write(qcow2_header())
        assert e.value.kwargs['detected'] == 'qcow2'
        assert stream.bytes_done == DECIDED


def test_raw_declared_qcow2_is_refused_early():
    with images.ImageStream(IMAGE_ID, 'qcow2', size=64 * MiB) as stream:
        with pytest.raises(exception.ImageFormatMismatch):
            stream.write(b'\1' * DECIDED)


@pytest.mark.parametrize('header', [
    qcow2_header(backing_offset=512),
    qcow2_header(features=1 << 2),   # external data-file
    qcow2_header(features=1 << 9),   # unknown incompatible feature
    qcow2_header(version=1),
    qcow2_header(version=4),
], ids=['backing', 'data-file', 'unknown-feature', 'v1', 'v4'])
def test_unsafe_qcow2_is_refused_at_its_header(header):
    with images.ImageStream(IMAGE_ID, 'qcow2') as stream:
        with pytest.raises(exception.ImageUnsafe):
            stream.write(header)


def test_qcow2_bomb_is_refused_at_its_header():
    with images.ImageStream(IMAGE_ID, 'qcow2',
                            max_virtual_size=MiB) as stream:
        with pytest.raises(exception.ImageTooLarge) as e:
            stream.write(qcow2_header(size=1 << 50))
    assert e.value.kwargs == {'image_id': IMAGE_ID, 'virtual_size': 1 << 50,
                              'disk_size': MiB}


def test_qcow2_bytes_are_bounded_by_its_virtual_size():
    vsize = 5 * MiB
    limit = images.qcow2_max_bytes(vsize)
    assert limit == vsize + vsize // 16 + 32 * MiB
    # The declared size is judged with the header, before the padding
    # is downloaded...
    with images.ImageStream(IMAGE_ID, 'qcow2', size=limit + 1) as stream:
        with pytest.raises(exception.ImageDamaged):
            stream.write(qcow2_header(size=vsize))
    # ...and the bound itself is accepted.
    with images.ImageStream(IMAGE_ID, 'qcow2', size=limit) as stream:
        stream.write(qcow2_header(size=vsize))


def test_qcow2_bytes_bound_without_a_declared_size():
    data = qcow2_header(size=MiB) + b'\1' * (images.qcow2_max_bytes(MiB) -
                                             DECIDED + 1)
    with pytest.raises(exception.ImageDamaged):
        _stream(data, 'qcow2', chunk=MiB)


def test_qcow2_virtual_size_from_header():
    _stream_obj, result = _stream(qcow2_header(size=5 * MiB), 'qcow2')
    assert result.detected == 'qcow2'
    assert result.virtual_size == 5 * MiB


def test_raw_larger_than_disk_stops_filling_storage():
    with images.ImageStream(IMAGE_ID, 'raw', max_virtual_size=MiB) as s:
        s.write(b'\1' * MiB)
        with pytest.raises(exception.ImageTooLarge):
            s.write(b'\1')


def test_mbr_disk_declared_raw_is_accepted():
    mbr = bytearray(512)
    mbr[446:462] = struct.pack('<B3sB3sII', 0x80, b'\0\2\0', 0x83,
                               b'\xff\xff\xff', 2048, 4096)
    mbr[510:512] = b'\x55\xaa'
    _s, result = _stream(bytes(mbr) + bytes(MiB))
    assert result.detected == 'gpt'
    assert result.virtual_size == MiB + 512


def test_hash_threads_stop_on_error():
    before = threading.active_count()
    with pytest.raises(exception.ImageFormatMismatch):
        with images.ImageStream(IMAGE_ID, 'raw') as stream:
            stream.write(qcow2_header())
    assert threading.active_count() == before


@pytest.mark.parametrize('disk_format', ['vmdk', 'qed', 'vhd', 'parallels',
                                         'ami', None, 'RAW'])
def test_unsupported_disk_format(disk_format):
    with pytest.raises(exception.ImageFormatUnsupported):
        images.ImageStream(IMAGE_ID, disk_format)


# --- the metadata rules of fetch_verified ----------------------------------

def _meta(**changes):
    meta = {'id': IMAGE_ID, 'status': 'active', 'disk_format': 'raw',
            'container_format': 'bare', 'size': 10,
            'checksum': 'a' * 32, 'os_hash_algo': 'sha512',
            'os_hash_value': 'b' * 128}
    meta.update(changes)
    return meta


def test_metadata_accepted():
    assert images._check_metadata(IMAGE_ID, _meta(), None) == (
        'raw', 'a' * 32, 'sha512', 'b' * 128)
    assert images._check_metadata(
        IMAGE_ID, _meta(checksum=None), 10)[1] is None
    assert images._check_metadata(
        IMAGE_ID, _meta(os_hash_algo=None, os_hash_value=None), None)[2:] \
        == ('sha512', None)


@pytest.mark.parametrize('changes,error', [
    ({'status': 'queued'}, exception.ImageUnacceptable),
    ({'status': 'killed'}, exception.ImageUnacceptable),
    ({'container_format': 'docker'}, exception.ImageUnacceptable),
    ({'disk_format': 'vmdk'}, exception.ImageFormatUnsupported),
    ({'size': None}, exception.ImageMetadataInvalid),
    ({'size': '10'}, exception.ImageMetadataInvalid),
    ({'size': -1}, exception.ImageMetadataInvalid),
    ({'size': True}, exception.ImageMetadataInvalid),
    ({'checksum': None, 'os_hash_algo': None, 'os_hash_value': None},
     exception.ImageMetadataInvalid),
    ({'checksum': None, 'os_hash_algo': None},
     exception.ImageMetadataInvalid),
    ({'os_hash_value': None}, exception.ImageMetadataInvalid),
    ({'checksum': 'not hex'}, exception.ImageMetadataInvalid),
    ({'checksum': 12}, exception.ImageMetadataInvalid),
], ids=repr)
def test_metadata_refused(changes, error):
    with pytest.raises(error) as e:
        images._check_metadata(IMAGE_ID, _meta(**changes), None)
    assert type(e.value) is error


def test_raw_larger_than_disk_refused_before_download():
    with pytest.raises(exception.ImageTooLarge):
        images._check_metadata(IMAGE_ID, _meta(size=11), 10)


@pytest.mark.parametrize('header,kwargs,error', [
    (qcow2_header(), {'disk_format': 'raw'}, exception.ImageFormatMismatch),
    (qcow2_header(backing_offset=512), {'disk_format': 'qcow2'},
     exception.ImageUnsafe),
    (qcow2_header(size=1 << 40), {'disk_format': 'qcow2',
                                  'max_virtual_size': MiB},
     exception.ImageTooLarge),
], ids=['mismatch', 'backing-file', 'bomb'])
def test_refused_header_is_never_written(tmp_path, header, kwargs, error):
    path = tmp_path / 'part'
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with images.ImageStream(IMAGE_ID, fd=fd, **kwargs) as stream:
            with pytest.raises(error):
                for i in range(0, len(header), 4 * KiB):
                    stream.write(header[i:i + 4 * KiB])
    finally:
        os.close(fd)
    assert os.path.getsize(path) == 0


def test_accepted_bytes_are_all_written(tmp_path):
    data = qcow2_header(size=5 * MiB) + b'\7' * 100 + bytes(MiB) + b'\1'
    path = tmp_path / 'part'
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _s, result = _stream(data, 'qcow2', chunk=4 * KiB, fd=fd)
    finally:
        os.close(fd)
    assert result.virtual_size == 5 * MiB
    assert path.read_bytes() == data


def test_small_image_is_written_after_the_verdict(tmp_path):
    path = tmp_path / 'part'
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with images.ImageStream(IMAGE_ID, 'raw', fd=fd) as stream:
            stream.write(b'\5' * 1000)
            assert os.path.getsize(path) == 0
            stream.finish()
    finally:
        os.close(fd)
    assert path.read_bytes() == b'\5' * 1000


def test_record_virtual_size_refuses_before_download():
    with pytest.raises(exception.ImageTooLarge):
        images._check_metadata(IMAGE_ID, _meta(disk_format='qcow2',
                                               virtual_size=11), 10)
    # ...but never accepts on its word: a smaller claim changes nothing.
    images._check_metadata(IMAGE_ID, _meta(disk_format='qcow2',
                                           virtual_size=1, size=100), 10)


# --- headers that keep an inspector waiting until EOF ------------------------

def vmdk_grain_directory_at_end():
    """A VMDK header whose grain directory is "at the end": the VMDK
    inspector waits for the footer, i.e. for the end of the stream."""
    header = struct.pack('<4sIIQQQQIQQ', b'KDMV', 1, 0, 2048, 128, 1, 1,
                         512, 0, 0xffffffffffffffff).ljust(512, b'\0')
    return header + b'createType="monolithicSparse"\n'.ljust(512, b'\0')


def vhdx_region_table():
    """What the VHDX inspector reads at 192 KiB, whatever the first bytes
    are: a metadata region at 8 GiB, which it then waits for."""
    table = struct.pack('<IIII', 0x69676572, 0, 1, 0)
    table += bytes.fromhex('06a27c8b90479a4bb8fe575f050f886e')  # bytes_le
    table += struct.pack('<QII', 8 << 30, 64 * KiB, 0)
    return table.ljust(64 * KiB, b'\0')


def with_far_vhdx_region(head=b''):
    """``head``, then zeros, then a VHDX region table at 192 KiB."""
    return head.ljust(192 * KiB, b'\0') + vhdx_region_table()


def vhdx_far_metadata():
    return with_far_vhdx_region(b'vhdxfile')


def _undecided(head, size, fill=b'\x5a'):
    """Chunks of 64 KiB: ``head``, then ``fill`` bytes up to ``size``."""
    yield head
    done = len(head)
    block = fill * (64 * KiB)
    while done < size:
        n = min(len(block), size - done)
        yield block[:n]
        done += n


def _pending(stream):
    return sum(len(c) for c in stream._pending)


@pytest.mark.parametrize('head', [vmdk_grain_directory_at_end(),
                                  vhdx_far_metadata()],
                         ids=['vmdk-gd-at-end', 'vhdx-far-metadata'])
def test_undecided_stream_holds_at_most_max_pending(tmp_path, head):
    size = 16 * MiB
    path = tmp_path / 'part'
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    held = []
    try:
        with images.ImageStream(IMAGE_ID, 'raw', fd=fd, size=size) as s:
            for chunk in _undecided(head, size):
                s.write(chunk)
                held.append(_pending(s))
            assert s._wrapper.formats is None   # still undecided at EOF
            with pytest.raises(exception.ImageFormatMismatch):
                s.finish()
    finally:
        os.close(fd)
    assert max(held) <= images.MAX_PENDING + 64 * KiB
    assert held[-1] == 0


def test_undecided_honest_raw_is_accepted_whole(tmp_path):
    # No magic anywhere: only the region table at 192 KiB keeps the VHDX
    # inspector waiting. Past MAX_PENDING the bytes go to the file, and
    # the verdict at EOF is raw.
    head = with_far_vhdx_region(b'\1' * 4 * KiB)
    data = b''.join(_undecided(head, 3 * MiB))
    path = tmp_path / 'part'
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _s, result = _stream(data, 'raw', fd=fd, size=len(data))
    finally:
        os.close(fd)
    assert result.detected == 'raw'
    assert result.virtual_size == len(data)
    assert path.read_bytes() == data


@pytest.mark.parametrize('head,kwargs,error', [
    (qcow2_header(size=1 << 50)[:4 * KiB], {'max_virtual_size': MiB},
     exception.ImageTooLarge),
    (qcow2_header(backing_offset=512)[:4 * KiB], {},
     exception.ImageUnsafe),
    (qcow2_header(features=1 << 2)[:4 * KiB], {}, exception.ImageUnsafe),
    (b'\1' * 4 * KiB, {}, exception.ImageFormatMismatch),
], ids=['bomb', 'backing-file', 'data-file', 'not-qcow2'])
def test_undecided_qcow2_is_judged_on_its_header(tmp_path, head, kwargs,
                                                 error):
    # The region table at 192 KiB keeps the inspectors undecided until
    # EOF; the declared qcow2's header must still be judged before a byte
    # is written, not after its whole declared size was.
    size = 64 * MiB
    path = tmp_path / 'part'
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with images.ImageStream(IMAGE_ID, 'qcow2', fd=fd, size=size,
                                **kwargs) as stream:
            with pytest.raises(error):
                for chunk in _undecided(with_far_vhdx_region(head), size):
                    stream.write(chunk)
            assert stream.bytes_done <= images.MAX_PENDING + 64 * KiB
    finally:
        os.close(fd)
    assert os.path.getsize(path) == 0


def _sparse_data():
    """Data with zero blocks inside chunks, at a chunk's end and at the
    end of the image (the part's length is set only by finish())."""
    data = bytearray(os.urandom(3 * MiB))
    data[100 * KiB:400 * KiB] = bytes(300 * KiB)
    data[MiB - 128 * KiB:MiB + 64 * KiB] = bytes(192 * KiB)
    data[-512 * KiB:] = bytes(512 * KiB)
    return bytes(data)


@pytest.mark.parametrize('chunk', [64 * KiB, MiB, 1000 * KiB + 3])
def test_hashes_follow_the_file_written(tmp_path, chunk):
    data = _sparse_data()
    path = str(tmp_path / 'part')
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with images.ImageStream(IMAGE_ID, 'raw', fd=fd, size=len(data),
                                os_hash_algo='sha256') as stream:
            for i in range(0, len(data), chunk):
                stream.write(data[i:i + chunk])
            early = stream.finish(
                os_hash_value=hashlib.sha256(data).hexdigest(),
                verify_hashes=False)
            result = stream.verify_hashes()
    finally:
        os.close(fd)
    # Before verify_hashes() the verdict has no digests to trust.
    assert early.os_hash_value is None and early.checksum is None
    assert result.os_hash_value == hashlib.sha256(data).hexdigest()
    assert result.checksum == hashlib.md5(data).hexdigest()
    with open(path, 'rb') as f:
        assert f.read() == data
    assert stream.written <= len(data) - 768 * KiB


def _reused_buffer_chunks(data, chunk):
    """Yield ``data`` in ``chunk``-sized pieces, all in one bytearray
    refilled each time (a ``readinto``-style download source)."""
    buf = bytearray(chunk)
    for i in range(0, len(data), chunk):
        piece = data[i:i + chunk]
        buf[:len(piece)] = piece
        yield buf if len(piece) == chunk else buf[:len(piece)]


def test_reused_buffer_writes_the_image(tmp_path):
    # Distinct chunks, fewer than MAX_PENDING bytes: every chunk is held
    # until the verdict, so the file is written from what was held.
    chunk = 64 * KiB
    data = b''.join(bytes([i + 1]) * chunk for i in range(32))
    path = str(tmp_path / 'part')
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with images.ImageStream(IMAGE_ID, 'raw', fd=fd, size=len(data),
                                os_hash_algo='sha256') as stream:
            stream.consume(_reused_buffer_chunks(data, chunk))
            result = stream.finish(
                os_hash_value=hashlib.sha256(data).hexdigest())
    finally:
        os.close(fd)
    assert result.os_hash_value == hashlib.sha256(data).hexdigest()
    with open(path, 'rb') as f:
        written = f.read()
    assert hashlib.sha256(written).hexdigest() == result.os_hash_value
    assert written == data


def test_deferred_hash_mismatch_is_corrupt(tmp_path):
    data = _sparse_data()
    fd = os.open(str(tmp_path / 'part'), os.O_RDWR | os.O_CREAT | os.O_EXCL,
                 0o600)
    try:
        with images.ImageStream(IMAGE_ID, 'raw', fd=fd,
                                size=len(data)) as stream:
            stream.consume([data[:MiB], data[MiB:]])
            stream.finish(os_hash_value='0' * 128, verify_hashes=False)
            with pytest.raises(exception.ImageCorrupt):
                stream.verify_hashes()
    finally:
        os.close(fd)

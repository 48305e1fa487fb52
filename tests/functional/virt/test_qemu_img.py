"""qemu_img runs bounded, and convert writes with O_DIRECT where the
filesystem has it.

Real qemu-img on two real filesystems: the test's own directory (ext4 or
tmpfs, both of which take O_DIRECT on the kernels we run) and a ramfs
mounted for the test, which refuses O_DIRECT (EINVAL on open; tmpfs did
too before Linux 6.6). Whether the copy bypassed the page cache is read
from the kernel: ``fincore`` reports how many of the copy's bytes are in
memory, which is ~0 after a direct write and the whole data after a
buffered one.
"""

import logging
import os
import struct
import subprocess
import threading

from oslo_concurrency import processutils
import pytest

from nova import exception
from nova.virt import qemu_img
from nova.virt import staging
from tests.functional import hostile_images as hostile

MiB = 1 << 20
GiB = 1 << 30

#: Data in the test image: large enough that a buffered copy leaves many
#: pages resident, small enough to be quick.
DATA = 16 * MiB


def _resident_bytes(path):
    out = subprocess.run(
        ['fincore', '--bytes', '--noheadings', '--raw', '-o', 'RES', path],
        check=True, capture_output=True, text=True).stdout
    return int(out.split()[0])


def _make_image(directory, fmt):
    """A 64 MiB image holding DATA bytes of random data, in ``fmt``."""
    raw = os.path.join(directory, 'src.raw')
    with open(raw, 'wb') as f:
        f.truncate(64 * MiB)
        f.seek(8 * MiB)
        f.write(os.urandom(DATA))
    if fmt == 'raw':
        return raw
    out = os.path.join(directory, 'src.qcow2')
    qemu_img.convert(raw, 'raw', out, 'qcow2')
    return out


def _same_content(a, a_fmt, b, b_fmt):
    r = subprocess.run(['qemu-img', 'compare', '-q', '-f', a_fmt, '-F', b_fmt,
                        a, b], capture_output=True, text=True)
    return r.returncode == 0


@pytest.fixture
def ramfs(tmp_path):
    """A ramfs (no O_DIRECT) mounted for one test; needs root."""
    if os.geteuid() != 0:
        pytest.skip('mounting a ramfs needs root')
    mnt = tmp_path / 'ramfs'
    mnt.mkdir()
    subprocess.run(['mount', '-t', 'ramfs', '-o', 'mode=0700', 'ramfs',
                    str(mnt)], check=True)
    try:
        yield str(mnt)
    finally:
        subprocess.run(['umount', str(mnt)], check=True)


@pytest.fixture(autouse=True)
def fresh_probe_cache(monkeypatch):
    # Each test sees the probe as a new process would (tmp_path's
    # filesystem is shared by tests, a ramfs's device number is reused).
    monkeypatch.setattr(qemu_img, '_DIRECT_IO', {})


@pytest.mark.parametrize('src_fmt,dst_fmt', [('qcow2', 'raw'),
                                             ('raw', 'qcow2')])
def test_convert_writes_around_the_page_cache(tmp_path, src_fmt, dst_fmt):
    src = _make_image(str(tmp_path), src_fmt)
    dst = str(tmp_path / ('dst.' + dst_fmt))

    qemu_img.convert(src, src_fmt, dst, dst_fmt)

    # A buffered write would leave all DATA bytes resident (checked
    # before anything reads the copy back).
    assert _resident_bytes(dst) < DATA // 4
    assert _same_content(src, src_fmt, dst, dst_fmt)
    assert qemu_img.supports_direct_io(dst)
    # The probe left nothing behind.
    assert sorted(os.listdir(tmp_path)) == sorted(
        {'src.raw', os.path.basename(src), os.path.basename(dst)})


def test_convert_into_existing_target_direct(tmp_path):
    src = _make_image(str(tmp_path), 'qcow2')
    dst = str(tmp_path / 'target')
    with open(dst, 'wb') as f:
        f.truncate(64 * MiB)

    qemu_img.convert(src, 'qcow2', dst, 'raw', target_exists=True)

    assert _resident_bytes(dst) < DATA // 4
    assert _same_content(src, 'qcow2', dst, 'raw')


def test_convert_into_a_descriptor_target_direct(tmp_path):
    # The verified fetch hands qemu-img its private part as the
    # descriptor's path (staging.fd_path): O_DIRECT is probed there too.
    src = _make_image(str(tmp_path), 'qcow2')
    # Probed first through the descriptor, as in a fetch (making the
    # image probed this filesystem by a new file's name).
    qemu_img._DIRECT_IO.clear()
    with staging.open_root(str(tmp_path)) as d, \
            staging.Part(d, 'base') as part:
        os.ftruncate(part.fd, 64 * MiB)
        qemu_img.convert(src, 'qcow2', part.path, 'raw', target_exists=True,
                         out_of_order=True)
        assert _resident_bytes(part.path) < DATA // 4
        assert _same_content(src, 'qcow2', part.path, 'raw')
        assert qemu_img.supports_direct_io(part.path, exists=True)


@pytest.mark.parametrize('direct_write', [True, False])
def test_convert_into_a_new_part(tmp_path, direct_write):
    # A snapshot converts into a new part, then hashes and imports it at
    # once: it asks for a buffered copy (direct_write=False), read back
    # from memory. Others (a template) get O_DIRECT, probed through the
    # part's descriptor.
    src = _make_image(str(tmp_path), 'raw')
    qemu_img._DIRECT_IO.clear()
    with staging.open_root(str(tmp_path)) as d, \
            staging.Part(d, 'snapshot') as part:
        qemu_img.convert(src, 'raw', part.path, 'qcow2',
                         direct_write=direct_write)
        resident = _resident_bytes(part.path)
        if direct_write:
            assert resident < DATA // 4
        else:
            assert resident > DATA * 3 // 4
        assert _same_content(src, 'raw', part.path, 'qcow2')


def test_direct_read_of_the_source(tmp_path):
    src = _make_image(str(tmp_path), 'qcow2')
    dst = str(tmp_path / 'dst.raw')

    qemu_img.convert(src, 'qcow2', dst, 'raw', direct_read=True)

    assert _same_content(src, 'qcow2', dst, 'raw')


def test_no_direct_io_falls_back_and_logs_once(tmp_path, ramfs, caplog):
    src = _make_image(str(tmp_path), 'qcow2')
    first = os.path.join(ramfs, 'first.raw')
    second = os.path.join(ramfs, 'second.raw')

    with caplog.at_level(logging.WARNING, logger=qemu_img.__name__):
        qemu_img.convert(src, 'qcow2', first, 'raw')
        qemu_img.convert(src, 'qcow2', second, 'raw', direct_read=True)

    assert _same_content(src, 'qcow2', first, 'raw')
    assert _same_content(src, 'qcow2', second, 'raw')
    assert not qemu_img.supports_direct_io(first)
    warnings = [r for r in caplog.records
                if 'does not support direct I/O' in r.getMessage()]
    assert len(warnings) == 1
    assert ramfs in warnings[0].getMessage()
    assert sorted(os.listdir(ramfs)) == ['first.raw', 'second.raw']


def test_source_without_direct_io_is_read_buffered(tmp_path, ramfs):
    src = _make_image(ramfs, 'qcow2')
    dst = str(tmp_path / 'dst.raw')

    qemu_img.convert(src, 'qcow2', dst, 'raw', direct_read=True)

    assert _same_content(src, 'qcow2', dst, 'raw')
    assert not qemu_img.supports_direct_io(src, exists=True, write=False)
    assert qemu_img.supports_direct_io(dst)


def test_probe_of_a_missing_directory_says_no(tmp_path):
    assert not qemu_img.supports_direct_io(str(tmp_path / 'no' / 'file'))
    assert qemu_img._DIRECT_IO == {}


def _qcow2_corrupt_past_its_first_gib(path):
    """A 2 GiB compressed qcow2 with data at 0 and at 1 GiB, the
    compressed bytes of the cluster at 1 GiB overwritten: its tables are
    sound (qemu-img sees nothing wrong before it reads that cluster), so
    a convert creates its target and writes the first GiB, then fails
    with EIO."""
    raw = path + '.src.raw'
    with open(raw, 'wb') as f:
        f.truncate(2 * GiB)
        f.write(b'first GiB ' * (MiB // 10))
        f.seek(GiB)
        f.write(b'second GiB' * (MiB // 10))
    try:
        hostile.qemu_img('convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2',
                         raw, path)
    finally:
        os.unlink(raw)
    with open(path, 'r+b') as f:
        header = f.read(48)
        cluster_bits, = struct.unpack('>I', header[20:24])
        l1_offset, = struct.unpack('>Q', header[40:48])
        l1_index, l2_index = divmod(GiB >> cluster_bits,
                                    (1 << cluster_bits) // 8)
        f.seek(l1_offset + 8 * l1_index)
        l2_offset = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
        f.seek(l2_offset + 8 * l2_index)
        entry, = struct.unpack('>Q', f.read(8))
        assert entry & (1 << 62), 'the cluster at 1 GiB is not compressed'
        # A compressed entry: its host offset in the low 62 - (bits - 8).
        f.seek(entry & ((1 << (62 - (cluster_bits - 8))) - 1))
        f.write(b'\xff' * 64)
    return path


def test_failing_convert_leaves_a_typed_error(tmp_path):
    src = _qcow2_corrupt_past_its_first_gib(str(tmp_path / 'src.qcow2'))
    dst = str(tmp_path / 'dst.raw')
    with pytest.raises(exception.ProcessFailed) as e:
        qemu_img.convert(src, 'qcow2', dst, 'raw')
    assert 'qemu-img convert' in str(e.value)
    assert 'error while reading at byte %d' % GiB in str(e.value)


# --- bounds (doc/security.rst, rule 3) ------------------------------------

@pytest.mark.parametrize('limits', [qemu_img.QEMU_IMG_LIMITS,
                                    qemu_img.CHECK_LIMITS,
                                    qemu_img.CONVERT_LIMITS])
def test_commands_run_under_their_limits(limits):
    # The limits the kernel holds for the command itself, soft and hard.
    code, out, _err = qemu_img._run_bounded(
        ['sh', '-c', 'ulimit -St; ulimit -Ht; ulimit -Sv; ulimit -Hv'],
        limits)
    assert code == 0
    cpu, address_space = limits.cpu_time, limits.address_space // 1024
    assert out.split() == [str(cpu), str(cpu), str(address_space),
                           str(address_space)]


def test_qemu_img_beyond_its_address_space_fails_typed(tmp_path):
    path = str(tmp_path / 'disk.qcow2')
    qemu_img.create(path, 'qcow2', MiB)
    tiny = processutils.ProcessLimits(address_space=4 * MiB, cpu_time=30)
    with pytest.raises(exception.ProcessFailed) as e:
        qemu_img.execute('info', '-f', 'qcow2', path, limits=tiny)
    assert 'qemu-img info' in str(e.value)


def test_a_failing_command_names_itself_and_its_error(tmp_path):
    with pytest.raises(exception.ProcessFailed) as e:
        qemu_img.info(str(tmp_path / 'missing'), 'raw')
    assert 'qemu-img info' in str(e.value)
    assert 'No such file' in str(e.value)


def test_without_prlimit_nothing_runs(monkeypatch):
    # Fail closed: a host without util-linux prlimit runs no qemu-img at
    # all rather than an unbounded one.
    monkeypatch.setattr(qemu_img, '_PRLIMIT', 'no-such-prlimit-here')
    with pytest.raises(OSError):
        qemu_img.execute('--version')


def _returns_despite_the_fifo(call, fifo):
    """Run ``call()`` in a thread; [its result] once it returned. If it
    is still blocked after 60 s (on the FIFO: a regression), the FIFO's
    reader is let go, and [] is returned to fail the test, never hang it.
    """
    done = []
    worker = threading.Thread(target=lambda: done.append(call()),
                              daemon=True)
    worker.start()
    worker.join(60)
    if worker.is_alive():
        done.append('blocked')
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(60)
    return done


def test_an_overlay_is_made_without_opening_its_backing_file(tmp_path):
    # The backing file is only named in the new overlay's header: a FIFO
    # at its name (planted in a shared _base) must not block the create.
    backing = str(tmp_path / 'base')
    os.mkfifo(backing)
    overlay = str(tmp_path / 'overlay')
    assert _returns_despite_the_fifo(lambda: qemu_img.create(
        overlay, 'qcow2', 64 << 20, backing_file=backing,
        backing_fmt='raw'), backing) == [None]
    info = qemu_img.info(overlay, 'qcow2')
    assert info['backing-filename'] == backing
    assert info['virtual-size'] == 64 << 20


def test_an_overlay_grows_without_opening_its_backing_file(tmp_path):
    # The same FIFO planted at the base of an existing overlay: the resize
    # rewrites the overlay's own tables and never opens its base.
    backing = str(tmp_path / 'base')
    os.mkfifo(backing)
    overlay = str(tmp_path / 'overlay')
    qemu_img.create(overlay, 'qcow2', 64 << 20, backing_file=backing,
                    backing_fmt='raw')
    assert _returns_despite_the_fifo(lambda: qemu_img.resize(
        overlay, 'qcow2', 96 << 20), backing) == [None]
    info = qemu_img.info(overlay, 'qcow2')
    assert info['backing-filename'] == backing
    assert info['backing-filename-format'] == 'raw'
    assert info['virtual-size'] == 96 << 20


@pytest.mark.parametrize('base_fmt', ['raw', 'qcow2'])
def test_an_overlay_is_read_over_the_base_given(tmp_path, base_fmt):
    # The header names a FIFO; the spec gives another (checked) base,
    # whose own backing, if it names one, is not opened either.
    named = str(tmp_path / 'named')
    os.mkfifo(named)
    raw = tmp_path / 'data'
    raw.write_bytes(b'\x5a' * (1 << 20))
    base = str(tmp_path / 'base')
    qemu_img.convert(str(raw), 'raw', base, base_fmt)
    if base_fmt == 'qcow2':
        subprocess.run(['qemu-img', 'rebase', '-q', '-u', '-f', 'qcow2',
                        '-b', named, '-F', 'raw', base], check=True)
    overlay = str(tmp_path / 'overlay')
    qemu_img.create(overlay, 'qcow2', 2 << 20, backing_file=named,
                    backing_fmt=base_fmt)
    out = str(tmp_path / 'out')
    spec = qemu_img.image_spec(overlay, 'qcow2', backing=(base, base_fmt))

    assert _returns_despite_the_fifo(lambda: qemu_img.convert(
        spec, 'qcow2', out, 'raw'), named) == [None]
    with open(out, 'rb') as f:
        assert f.read() == b'\x5a' * (1 << 20) + b'\0' * (1 << 20)


def test_a_raw_image_takes_no_backing():
    with pytest.raises(exception.InvalidInput):
        qemu_img.image_spec('/x', 'raw', backing=('/y', 'raw'))


@pytest.mark.parametrize('fmt', ['raw', 'qcow2'])
def test_resize_keeps_the_format_pinned(tmp_path, fmt):
    # A raw file that starts with a qcow2 header is grown as raw: its
    # length, never the header's size.
    path = str(tmp_path / 'disk')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', path, '1G'],
                   check=True)
    qemu_img.resize(path, fmt, 2 << 30)
    if fmt == 'raw':
        assert os.path.getsize(path) == 2 << 30
        assert qemu_img.info(path, 'qcow2')['virtual-size'] == 1 << 30
    else:
        # Its tables grew a little; the file is nowhere near 2 GiB.
        assert os.path.getsize(path) < 1 << 20
        assert qemu_img.info(path, 'qcow2')['virtual-size'] == 2 << 30


# The bound only turns a qemu-img blocked on the FIFO into a failure.
@pytest.mark.timeout(120)
def test_check_never_opens_the_backing_file_a_header_names(tmp_path):
    # A FIFO at the named backing file: opening it would block qemu-img
    # for ever (no writer ever comes).
    fifo = str(tmp_path / 'fifo')
    os.mkfifo(fifo)
    overlay = str(tmp_path / 'overlay.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-u', '-b',
                    fifo, '-F', 'raw', overlay, '1M'], check=True)
    report = qemu_img.check(overlay, 'qcow2')
    assert report['check-errors'] == 0
    assert report['image-end-offset'] > 0


def test_a_part_s_descriptor_path_is_probed_as_its_file(tmp_path):
    # A new part is handed to qemu-img as /proc/<pid>/fd/<n>: its own
    # filesystem is probed (tmp_path's takes O_DIRECT here), not /proc's.
    assert qemu_img.supports_direct_io(str(tmp_path))
    qemu_img._DIRECT_IO.clear()
    with staging.open_root(str(tmp_path)) as d:
        with staging.Part(d, 'disk') as part:
            assert qemu_img.supports_direct_io(part.path)

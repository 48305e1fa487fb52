"""Unit tests of the image cache (nova/virt/libvirt/imagebackend/cache.py).

The fetch is replaced by DictFetchCache (bytes from a dict); everything
else (locks, sidecars, safety checks, cleanup) is the real code on real
files.
"""

import concurrent.futures
import hashlib
import json
import os
import time

import pytest

import nova.conf
from nova import exception
from nova.objects import libvirt_disk
from nova.virt.libvirt.imagebackend import cache as image_cache
from tests.unit.virt.libvirt.imagebackend import helpers

CONF = nova.conf.CONF


def sha1(text):
    return hashlib.sha1(text.encode()).hexdigest()


def base_dir():
    return os.path.join(CONF.instances_path, '_base')


def tree():
    """Every name under instances_path (so _base and its parent), with
    the size of each file: what a refused call must leave as it was."""
    found = []
    for path, dirs, files in os.walk(CONF.instances_path):
        for name in dirs + files:
            full = os.path.join(path, name)
            found.append((os.path.relpath(full, CONF.instances_path),
                          None if name in dirs else os.lstat(full).st_size))
    return sorted(found)


# --- names ------------------------------------------------------------------

def test_image_entry_names_are_sha1_of_the_id_and_the_format():
    assert image_cache.image_entry_name('abc', 'raw') == sha1('abc') + '.raw'
    assert image_cache.image_entry_name('abc', 'qcow2') == \
        sha1('abc') + '.qcow2'


@pytest.mark.parametrize('fmt', ['vmdk', 'ploop', None, ''])
def test_image_entry_name_refuses_other_formats(fmt):
    with pytest.raises(exception.InvalidInput):
        image_cache.image_entry_name('abc', fmt)


@pytest.mark.parametrize('image_id', ['', None, 5])
def test_image_entry_name_refuses_bad_ids(image_id):
    with pytest.raises(exception.InvalidInput):
        image_cache.image_entry_name(image_id, 'raw')


def test_hostile_image_id_still_gives_a_plain_name(conf, cache):
    path = cache.image_path('../../etc/passwd\0', 'raw')
    assert os.path.dirname(path) == os.path.realpath(base_dir())


@pytest.mark.parametrize('name', [
    '../x', 'a/b', '', '.', '..', 'x\0y', sha1('a'), sha1('a') + '.qcow2',
    sha1('a') + '.raw', 'swap_512.raw', 'swap_512.info', 'swap_512.part'])
def test_template_names_are_checked(conf, cache, name):
    before = tree()
    with pytest.raises((exception.InvalidName, exception.PathOutsideRoot)):
        cache.ensure_template(name, lambda t, s: None, 4096)
    assert tree() == before


def test_record_names():
    def record(**kw):
        fields = dict(backend='flat', format='raw', size=1, disk_name='disk')
        fields.update(kw)
        record = libvirt_disk.LibvirtDiskMetadata(**fields)
        record.validate()
        return record

    assert image_cache.entry_name_for_record(record(image_id='i')) == \
        {sha1('i') + '.raw'}
    assert image_cache.entry_name_for_record(
        record(format='qcow2', image_id='i')) == {sha1('i') + '.qcow2'}
    assert image_cache.entry_name_for_record(
        record(backend='qcow2', format='qcow2', backing_format='raw',
               image_id='i')) == {sha1('i') + '.raw'}
    assert image_cache.entry_name_for_record(
        record(backend='ploop', format='ploop', image_id='i')) == \
        {sha1('i') + '.raw', sha1('i') + '.qcow2'}
    assert image_cache.entry_name_for_record(
        record(cache_name='swap_512')) == {'swap_512.raw'}
    # An adopted upstream file: the record's base_name, alone.
    assert image_cache.entry_name_for_record(
        record(backend='qcow2', format='qcow2', backing_format='qcow2',
               image_id='i', base_name=sha1('i'))) == {sha1('i')}
    assert image_cache.entry_name_for_record(
        record(backend='qcow2', format='qcow2', backing_format='raw',
               cache_name='swap_512', base_name='swap_512')) == {'swap_512'}
    assert image_cache.entry_name_for_record(record()) == set()


def test_default_paths_follow_conf(conf):
    cache = image_cache.ImageCache()
    assert cache.base_dir == base_dir()
    assert cache.lock_path == os.path.join(CONF.instances_path, 'locks')
    conf.config(subdirectory_name='_other', group='image_cache')
    assert cache.base_dir == os.path.join(CONF.instances_path, '_other')


# --- images ---------------------------------------------------------------

def test_ensure_image_fetches_once_and_writes_a_sidecar(conf, cache):
    entry = cache.ensure_image(None, 'raw-image', 'raw')
    assert entry == image_cache.CacheEntry(
        path=os.path.join(os.path.realpath(base_dir()),
                          sha1('raw-image') + '.raw'),
        format='raw', virtual_size=1 << 20, name=sha1('raw-image') + '.raw')
    with open(entry.path + '.info') as f:
        sidecar = json.load(f)
    assert sidecar == {'format': 'raw', 'virtual_size': 1 << 20,
                       'image_id': 'raw-image', 'version': 1}
    assert cache.ensure_image(None, 'raw-image', 'raw') == entry
    assert cache.fetches['raw-image'] == 1
    assert sorted(os.listdir(base_dir())) == [
        sha1('raw-image') + '.raw', sha1('raw-image') + '.raw.info']
    assert oct(os.stat(entry.path).st_mode & 0o777) == '0o644'


def test_qcow2_entry_keeps_its_suffix(conf, cache):
    entry = cache.ensure_image(None, 'qcow2-image', 'qcow2')
    assert entry.name == sha1('qcow2-image') + '.qcow2'
    assert (entry.format, entry.virtual_size) == ('qcow2', 2 << 20)


def test_sidecar_not_data_is_the_source_of_truth(conf, cache):
    """The sidecar is never re-probed: what it says is what we return."""
    entry = cache.ensure_image(None, 'qcow2-image', 'qcow2')
    cache.images.clear()  # a second fetch would fail
    assert cache.ensure_image(None, 'qcow2-image', 'qcow2') == entry


def test_concurrent_requests_fetch_once(conf, images):
    cache = helpers.DictFetchCache(images, delay=0.2)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        entries = list(pool.map(
            lambda _: cache.ensure_image(None, 'raw-image', 'raw'),
            range(8)))
    assert cache.fetches['raw-image'] == 1
    assert len(set(entries)) == 1


def test_data_without_sidecar_is_rebuilt(conf, cache):
    entry = cache.ensure_image(None, 'raw-image', 'raw')
    os.unlink(entry.path + '.info')
    assert cache.ensure_image(None, 'raw-image', 'raw') == entry
    assert cache.fetches['raw-image'] == 2


def test_sidecar_without_data_is_rebuilt(conf, cache):
    entry = cache.ensure_image(None, 'raw-image', 'raw')
    os.unlink(entry.path)
    assert cache.ensure_image(None, 'raw-image', 'raw') == entry
    assert cache.fetches['raw-image'] == 2


def test_stale_partial_files_do_not_block_a_fetch(conf, cache):
    os.makedirs(base_dir())
    # Parts of makers that died (no flock held on them).
    name = sha1('raw-image') + '.raw'
    for leftover in (os.path.join(base_dir(), '.%s.0123456789abcdef.part' %
                                  name),
                     os.path.join(base_dir(), '.%s.info.0123456789abcdef'
                                  '.part' % name)):
        with open(leftover, 'wb') as f:
            f.write(b'half')
    cache.ensure_image(None, 'raw-image', 'raw')
    assert sorted(os.listdir(base_dir())) == [name, name + '.info']


def test_failed_fetch_leaves_nothing(conf, cache):
    with pytest.raises(exception.ImageNotFound):
        cache.ensure_image(None, 'missing', 'raw')
    assert os.listdir(base_dir()) == []


def test_too_large_is_refused_cold_and_warm(conf, cache):
    with pytest.raises(exception.ImageTooLarge):
        cache.ensure_image(None, 'raw-image', 'raw',
                           max_virtual_size=(1 << 20) - 1)
    assert os.listdir(base_dir()) == []
    cache.ensure_image(None, 'raw-image', 'raw')
    with pytest.raises(exception.ImageTooLarge):
        cache.ensure_image(None, 'raw-image', 'raw',
                           max_virtual_size=(1 << 20) - 1)
    assert cache.ensure_image(None, 'raw-image', 'raw',
                              max_virtual_size=1 << 20)


def test_fetch_of_the_wrong_format_is_not_recorded(conf, cache):
    # The fetch promised qcow2 but wrote raw: nothing may be recorded.
    cache.images['liar'] = ('raw', b'x' * 512, 4096)
    with pytest.raises(exception.CacheEntryInvalid):
        cache.ensure_image(None, 'liar', 'qcow2')
    assert os.listdir(base_dir()) == []


def test_tampered_qcow2_base_is_refused_before_use(conf, cache):
    entry = cache.ensure_image(None, 'qcow2-image', 'qcow2')
    with open(entry.path, 'r+b') as f:
        f.write(helpers.qcow2_header(2 << 20, '/etc/shadow'))
    with pytest.raises(exception.CacheEntryInvalid, match='backing_file'):
        cache.ensure_image(None, 'qcow2-image', 'qcow2')


def test_qcow2_base_that_is_not_qcow2_any_more_is_refused(conf, cache):
    entry = cache.ensure_image(None, 'qcow2-image', 'qcow2')
    with open(entry.path, 'r+b') as f:
        f.write(b'\0' * 512)
    with pytest.raises(exception.CacheEntryInvalid):
        cache.ensure_image(None, 'qcow2-image', 'qcow2')


def test_raw_base_of_another_size_is_refused(conf, cache):
    entry = cache.ensure_image(None, 'raw-image', 'raw')
    os.truncate(entry.path, 2 << 20)
    with pytest.raises(exception.CacheEntryInvalid, match='recorded'):
        cache.ensure_image(None, 'raw-image', 'raw')


@pytest.mark.parametrize('body', [
    b'not json', b'{}', b'{"format": "raw", "virtual_size": -1, '
    b'"version": 1}', b'{"format": "raw", "virtual_size": 1, '
    b'"version": 2}', b'{"format": "qcow2", "virtual_size": 1048576, '
    b'"version": 1}'])
def test_bad_sidecar_is_refused(conf, cache, body):
    entry = cache.ensure_image(None, 'raw-image', 'raw')
    with open(entry.path + '.info', 'wb') as f:
        f.write(body)
    with pytest.raises(exception.CacheEntryInvalid):
        cache.ensure_image(None, 'raw-image', 'raw')


def test_use_touches_the_sidecar(conf, cache):
    entry = cache.ensure_image(None, 'raw-image', 'raw')
    os.utime(entry.path + '.info', (1, 1))
    cache.ensure_image(None, 'raw-image', 'raw')
    # Set to the epoch's second 1 above: any touch moves it forward.
    assert os.stat(entry.path + '.info').st_mtime > 1


# --- templates ------------------------------------------------------------

def test_template_made_once_sparse_and_fsynced(conf, cache):
    calls = []

    def func(target, size):
        calls.append((target, size, os.stat(target).st_size))
        with open(target, 'r+b') as f:
            f.write(b'FS')

    entry = cache.ensure_template('ephemeral_1_ext4', func, 1 << 20)
    assert cache.ensure_template('ephemeral_1_ext4', func, 1 << 20) == entry
    target, size, size_seen = calls[0]
    assert len(calls) == 1
    # func filled a private part of the full size, named by its
    # descriptor (never by a name in _base), published afterwards.
    assert target.startswith('/proc/%d/fd/' % os.getpid())
    assert size == size_seen == 1 << 20
    assert (entry.format, entry.virtual_size) == ('raw', 1 << 20)
    st = os.stat(entry.path)
    assert st.st_size == 1 << 20 and st.st_blocks * 512 < (1 << 20)
    assert sorted(os.listdir(base_dir())) == [
        'ephemeral_1_ext4.raw', 'ephemeral_1_ext4.raw.info']


def test_failed_template_leaves_nothing(conf, cache):
    def func(target, size):
        raise RuntimeError('mkfs failed')

    with pytest.raises(RuntimeError):
        cache.ensure_template('swap_1', func, 1 << 20)
    assert os.listdir(base_dir()) == []


def test_template_function_must_not_change_the_size(conf, cache):
    with pytest.raises(exception.CacheEntryInvalid):
        cache.ensure_template('swap_1', lambda t, s: os.truncate(t, s * 2),
                              1 << 20)
    assert os.listdir(base_dir()) == []


def test_template_of_another_size_is_refused(conf, cache):
    entry = cache.ensure_template('swap_1', lambda t, s: None, 1 << 20)
    before = tree()
    with pytest.raises(exception.CacheEntryInvalid):
        cache.ensure_template('swap_1', lambda t, s: None, 2 << 20)
    assert tree() == before
    assert os.stat(entry.path).st_size == 1 << 20


def test_templates_are_raw(conf, cache):
    before = tree()
    with pytest.raises(exception.InvalidInput):
        cache.ensure_template('swap_1', lambda t, s: None, 1 << 20,
                              fmt='qcow2')
    assert tree() == before


# --- cleanup ----------------------------------------------------------------

def _age(cache, name, seconds):
    for fname in image_cache._files_of(name):
        path = os.path.join(cache.base_dir, fname)
        if os.path.exists(path):
            t = time.time() - seconds
            os.utime(path, (t, t))


def test_cleanup_removes_old_unused_entries_only(conf, cache):
    conf.config(remove_unused_original_minimum_age_seconds=100,
                group='image_cache')
    raw = cache.ensure_image(None, 'raw-image', 'raw')
    qcow = cache.ensure_image(None, 'qcow2-image', 'qcow2')
    swap = cache.ensure_template('swap_1', lambda t, s: None, 1 << 20)
    eph = cache.ensure_template('ephemeral_1_ext4', lambda t, s: None,
                                1 << 20)
    for entry in (raw, qcow, swap):
        _age(cache, entry.name, 1000)
    removed = cache.cleanup(None, in_use={swap.name}, unrecorded=False)
    # raw and qcow2 are old and unused; swap is in use; eph is young.
    assert removed == sorted([raw.name, qcow.name])
    assert sorted(os.listdir(base_dir())) == sorted([
        swap.name, swap.name + '.info', eph.name, eph.name + '.info'])


def test_cleanup_removes_crash_leftovers(conf, cache):
    os.makedirs(base_dir())
    for name in ('a' * 40 + '.raw', 'b' * 40 + '.qcow2.part',
                 'swap_2.raw.info.part',
                 '.%s.raw.0123456789abcdef.raw.part' % ('c' * 40)):
        with open(os.path.join(base_dir(), name), 'wb'):
            pass
    for name in ('a' * 40 + '.raw', 'b' * 40 + '.qcow2', 'swap_2.raw'):
        _age(cache, name, 10 ** 6)
    assert cache.cleanup(None, in_use=(), unrecorded=False) == [
        'a' * 40 + '.raw', 'b' * 40 + '.qcow2', 'swap_2.raw']
    assert os.listdir(base_dir()) == []


def test_cleanup_can_be_disabled(conf, cache):
    conf.config(remove_unused_base_images=False, group='image_cache')
    entry = cache.ensure_image(None, 'raw-image', 'raw')
    _age(cache, entry.name, 10 ** 6)
    assert cache.cleanup(None, in_use=(), unrecorded=False) == []
    assert os.path.exists(entry.path)


def test_cleanup_with_no_cache_dir(conf, cache):
    assert cache.cleanup(None, in_use=(), unrecorded=False) == []


def test_removed_entry_is_fetched_again(conf, cache):
    entry = cache.ensure_image(None, 'raw-image', 'raw')
    _age(cache, entry.name, 10 ** 6)
    assert cache.cleanup(None, in_use=(), unrecorded=False) == [entry.name]
    assert cache.ensure_image(None, 'raw-image', 'raw') == entry
    assert cache.fetches['raw-image'] == 2


def test_get_cache_is_one_per_process():
    assert image_cache.get_cache() is image_cache.get_cache()


@pytest.mark.parametrize('planted', [
    '....0123456789abcdef.part', '....0123456789abcdef.raw.part',
    '...0123456789abcdef.part', '..info.0123456789abcdef.part'])
def test_cleanup_skips_leftovers_that_name_no_entry(conf, cache, planted):
    """A planted '.<name>.<token>.part' whose <name> is '..' (or another
    name no entry can have) is skipped: it leads out of the cache, and
    must neither be acted on nor abort the cleanup of the real entries."""
    entry = cache.ensure_image(None, 'raw-image', 'raw')
    _age(cache, entry.name, 10 ** 6)
    path = os.path.join(base_dir(), planted)
    with open(path, 'wb'):
        pass
    old = time.time() - 10 ** 6
    for p in (path, CONF.instances_path, base_dir()):
        os.utime(p, (old, old))
    outside = sorted(os.listdir(CONF.instances_path))

    assert cache.cleanup(None, in_use=(), unrecorded=False) == [entry.name]
    assert os.listdir(base_dir()) == [planted]
    assert sorted(os.listdir(CONF.instances_path)) == outside


def test_names_in_use_reads_records_through_the_objects(monkeypatch):
    """What names_in_use makes of the mappings' records. The unit tree
    has no database fixture (unit tests are pure logic, doc/testing.rst),
    so the list of mappings is given here; the real read through SQLite
    is in tests/functional/virt/libvirt/imagebackend/
    test_cache_cleanup_db.py. Only the names returned are asserted."""
    from nova import objects
    from nova.objects import block_device

    def bdm(**record):
        rec = libvirt_disk.LibvirtDiskMetadata(
            size=1, disk_name='disk', **record)
        rec.validate()
        return objects.BlockDeviceMapping(driver_info=rec.to_driver_info())

    bdms = [bdm(backend='flat', format='raw', image_id='i'),
            bdm(backend='qcow2', format='qcow2', backing_format='raw',
                cache_name='swap_1')]

    # Stands in for the database, which the unit tree does not have.
    monkeypatch.setattr(block_device.BlockDeviceMappingList,
                        'get_all_with_driver_info',
                        classmethod(lambda cls, context: bdms))
    assert image_cache.names_in_use('ctx') == {sha1('i') + '.raw',
                                               'swap_1.raw'}

    bdms.append(objects.BlockDeviceMapping(driver_info='{not json'))
    with pytest.raises(exception.CacheEntryInvalid):
        image_cache.names_in_use('ctx')


# --- entries opened by descriptor -----------------------------------------

def test_open_entry_gives_the_checked_file(conf, cache):
    entry = cache.ensure_image(None, 'raw-image', 'raw')
    fd = cache.open_entry(entry)
    try:
        assert os.path.samestat(os.fstat(fd), os.stat(entry.path))
    finally:
        os.close(fd)


@pytest.mark.parametrize('plant', ['symlink', 'fifo'])
def test_open_entry_and_check_base_refuse_a_planted_file(conf, cache,
                                                         tmp_path, plant):
    entry = cache.ensure_image(None, 'raw-image', 'raw')
    other = tmp_path / 'other'
    other.write_bytes(b'\0' * entry.virtual_size)
    os.unlink(entry.path)
    if plant == 'symlink':
        os.symlink(other, entry.path)
    else:
        os.mkfifo(entry.path)
    with pytest.raises(exception.CacheEntryInvalid):
        cache.open_entry(entry)
    with pytest.raises(exception.CacheEntryInvalid):
        cache.check_base(entry.path, 'raw')


def test_check_base_refuses_a_path_outside_the_cache(conf, cache, tmp_path):
    entry = cache.ensure_image(None, 'raw-image', 'raw')
    assert cache.check_base(entry.path, 'raw') == entry
    with pytest.raises(exception.CacheEntryInvalid):
        cache.check_base(str(tmp_path / os.path.basename(entry.path)), 'raw')
    with pytest.raises(exception.CacheEntryInvalid):
        cache.check_base(entry.path, 'qcow2')


# --- upstream files and adoption ------------------------------------------

def _upstream_file(name, data, size=None):
    """A file Nova 34 left in _base (no sidecar)."""
    os.makedirs(base_dir(), exist_ok=True)
    path = os.path.join(base_dir(), name)
    with open(path, 'wb') as f:
        f.write(data)
        if size:
            f.truncate(size)
    return path


def _qcow2(size, backing_file=None):
    return helpers.qcow2_header(size, backing_file=backing_file)


def _state(path):
    st = os.stat(path)
    with open(path, 'rb') as f:
        return st.st_ino, st.st_mtime_ns, f.read()


def test_own_entries_never_take_an_upstream_name(conf, cache):
    """Nova 34's base of an image and its swap template keep their names
    and bytes; this cache makes its own beside them."""
    base = _upstream_file(sha1('raw-image'), b'nova34', 4096)
    swap = _upstream_file('swap_1', b'', 1 << 20)
    before = (_state(base), _state(swap))
    entry = cache.ensure_image(None, 'raw-image', 'raw')
    template = cache.ensure_template('swap_1', lambda t, s: None, 1 << 20)
    assert (entry.name, template.name) == (sha1('raw-image') + '.raw',
                                           'swap_1.raw')
    assert (_state(base), _state(swap)) == before
    assert not os.path.exists(base + '.info')
    # ... and cleanup leaves them alone, however old and unused.
    for path in (base, swap):
        os.utime(path, (0, 0))
    for name in (entry.name, template.name):
        _age(cache, name, 10 ** 6)
    assert cache.cleanup(None, in_use=(), unrecorded=False) == sorted(
        [entry.name, template.name])
    assert sorted(os.listdir(base_dir())) == sorted([sha1('raw-image'),
                                                     'swap_1'])


def test_adopt_writes_a_sidecar_after_inspecting(conf, cache):
    path = _upstream_file(sha1('img'), _qcow2(3 << 20))
    entry = cache.adopt(sha1('img'), 'qcow2', {'image_id': 'img'})
    assert entry == image_cache.CacheEntry(
        path=os.path.join(os.path.realpath(base_dir()), sha1('img')),
        format='qcow2', virtual_size=3 << 20, name=sha1('img'))
    with open(path + '.info') as f:
        assert json.load(f) == {'adopted': True, 'format': 'qcow2',
                                'image_id': 'img', 'version': 1,
                                'virtual_size': 3 << 20}
    # An entry from now on: checked at define, adopted again as it is.
    assert cache.check_base(entry.path, 'qcow2') == entry
    assert cache.adopt(sha1('img'), 'qcow2', {'image_id': 'img'}) == entry
    with pytest.raises(exception.CacheEntryInvalid):
        cache.adopt(sha1('img'), 'raw', {'image_id': 'img'})


def test_adopt_check_only_writes_nothing(conf, cache):
    path = _upstream_file('swap_1', b'', 1 << 20)
    entry = cache.adopt('swap_1', 'raw', {'template': 'swap_1'},
                        check_only=True)
    assert entry.virtual_size == 1 << 20
    assert os.listdir(base_dir()) == ['swap_1']
    with pytest.raises(exception.CacheEntryInvalid):
        cache.check_base(path, 'raw')


@pytest.mark.parametrize('name,fmt,data,error', [
    # A qcow2 "base" naming a host file: not adopted.
    (sha1('img'), 'qcow2', _qcow2(1 << 20, '/etc/passwd'),
     exception.CacheEntryInvalid),
    # Not a qcow2 at all.
    (sha1('img'), 'qcow2', b'\0' * 4096, exception.CacheEntryInvalid),
    # Templates are raw.
    ('swap_1', 'qcow2', _qcow2(1 << 20),
     exception.CacheEntryInvalid),
    # Names this cache makes are not adopted, nor are strangers' names.
    (sha1('img') + '.raw', 'raw', b'x', exception.InvalidName),
    ('ephemeral_1_ext4', 'raw', b'x', exception.InvalidName),
])
def test_adopt_refuses(conf, cache, name, fmt, data, error):
    _upstream_file(name, data)
    with pytest.raises(error):
        cache.adopt(name, fmt, {'image_id': 'img'})
    assert os.listdir(base_dir()) == [name]


def test_adopt_refuses_a_link_and_a_missing_file(conf, cache, tmp_path):
    target = tmp_path / 'host-file'
    target.write_bytes(b'\0' * 4096)
    os.makedirs(base_dir())
    os.symlink(target, os.path.join(base_dir(), sha1('img')))
    with pytest.raises(exception.CacheEntryInvalid, match='regular file'):
        cache.adopt(sha1('img'), 'raw', {'image_id': 'img'})
    with pytest.raises(FileNotFoundError):
        cache.adopt(sha1('other'), 'raw', {'image_id': 'other'})
    assert os.listdir(base_dir()) == [sha1('img')]


def test_a_sidecar_this_cache_did_not_write_is_refused(conf, cache):
    path = _upstream_file(sha1('img'), b'', 4096)
    with open(path + '.info', 'w') as f:
        json.dump({'version': 1, 'format': 'raw', 'virtual_size': 4096}, f)
    with pytest.raises(exception.CacheEntryInvalid, match='not one this'):
        cache.check_base(path, 'raw')
    with pytest.raises(exception.CacheEntryInvalid, match='not one this'):
        cache.adopt(sha1('img'), 'raw', {'image_id': 'img'})


@pytest.mark.parametrize('unrecorded', [True, False])
def test_cleanup_of_adopted_entries(conf, cache, unrecorded):
    _upstream_file(sha1('img'), b'', 4096)
    _upstream_file('swap_1', b'', 1 << 20)
    stray = _upstream_file(sha1('gone'), b'', 4096)
    cache.adopt(sha1('img'), 'raw', {'image_id': 'img'})
    cache.adopt('swap_1', 'raw', {'template': 'swap_1'})
    for name in (sha1('img'), 'swap_1', sha1('gone')):
        _age(cache, name, 10 ** 6)
    removed = cache.cleanup(None, in_use={'swap_1'}, unrecorded=unrecorded)
    # While a disk has no record, it may sit on any adopted file.
    assert removed == ([] if unrecorded else [sha1('img')])
    left = sorted(os.listdir(base_dir()))
    assert (sha1('img') in left) is unrecorded
    assert 'swap_1' in left and 'swap_1.info' in left
    assert os.path.basename(stray) in left

"""LocalImageService.import_file with real qemu-img: what it records, how
it stores the bytes, and what it refuses (the fetch's rules)."""

import hashlib
import os
import subprocess
import sys
import threading

import pytest

import nova.conf
from nova import exception
from tests.functional import hostile_images as hostile
from tests.functional.virt import helpers

ctx = helpers.ctx
store = helpers.store
image_api = helpers.image_api

CONF = nova.conf.CONF
MiB = hostile.MiB
SIZE = 24 * MiB
DATA_AT = ((0, 2 * MiB), (SIZE - MiB, MiB))


def _hash(path, algo):
    digest = hashlib.new(algo)
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(MiB), b''):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.parametrize('fmt', ['raw', 'qcow2'])
def test_import_records_what_it_stored(ctx, store, image_api, src_dir, fmt):
    build = hostile.raw if fmt == 'raw' else hostile.qcow2
    src = build(os.path.join(src_dir, 'img'), SIZE, DATA_AT)
    calls = []

    meta = image_api.import_file(
        ctx, src, fmt, name='test image', properties={'os_type': 'linux'},
        progress=lambda done, total: calls.append((done, total)))

    # [image_store] hashing_algorithm's default; no legacy md5.
    assert meta == {
        'id': meta['id'], 'name': 'test image', 'status': 'active',
        'disk_format': fmt, 'container_format': 'bare',
        'size': os.path.getsize(src), 'checksum': None,
        'os_hash_algo': 'sha256', 'os_hash_value': _hash(src, 'sha256'),
        'virtual_size': SIZE, 'min_disk': 0,
        'properties': {'os_type': 'linux'}}
    assert image_api.get(ctx, meta['id']) == meta
    data = os.path.join(store.image_dir(meta['id']), 'data')
    assert helpers.same_content(src, fmt, data, fmt)
    # Holes stay holes in the store.
    assert helpers.allocated(data) <= helpers.allocated(src) + 64 * 1024
    assert calls[-1] == (os.path.getsize(src), os.path.getsize(src))
    assert b''.join(image_api.download(ctx, meta['id'])) == open(
        src, 'rb').read()
    assert sorted(os.listdir(store.image_dir(meta['id']))) == [
        'data', 'metadata.json']


@pytest.mark.parametrize('algo', ['sha512', 'sha3_256'])
def test_import_uses_the_configured_hash(ctx, image_api, src_dir, algo):
    CONF.set_override('hashing_algorithm', algo, group='image_store')
    try:
        src = hostile.raw(os.path.join(src_dir, 'img'))
        meta = image_api.import_file(ctx, src, 'raw')
    finally:
        CONF.clear_override('hashing_algorithm', group='image_store')
    assert meta['os_hash_algo'] == algo
    assert meta['os_hash_value'] == _hash(src, algo)


def test_import_gpt_disk_as_raw(ctx, image_api, src_dir):
    src = hostile.gpt(os.path.join(src_dir, 'gpt.raw'))
    meta = image_api.import_file(ctx, src, 'raw')
    assert meta['virtual_size'] == os.path.getsize(src)


@pytest.mark.parametrize('build,declared,error', [
    (hostile.qcow2_with_backing_file, 'qcow2', exception.ImageUnsafe),
    (hostile.qcow2_with_data_file, 'qcow2', exception.ImageUnsafe),
    (hostile.qcow2, 'raw', exception.ImageFormatMismatch),
    (hostile.raw, 'qcow2', exception.ImageFormatMismatch),
    (hostile.vmdk_flat_descriptor, 'raw', exception.ImageFormatMismatch),
    (hostile.iso_with_qcow2_header, 'iso', exception.ImageFormatMismatch),
    (hostile.gpt_bad_protective_mbr, 'raw', exception.ImageUnsafe),
    (hostile.truncated_qcow2, 'qcow2', exception.ImageDamaged),
    (hostile.qed, 'raw', exception.ImageFormatMismatch),
], ids=['backing-file', 'data-file', 'qcow2-as-raw', 'raw-as-qcow2',
        'vmdk-descriptor', 'iso-qcow2', 'bad-pmbr', 'truncated', 'qed'])
def test_import_refuses_hostile_content(ctx, store, image_api, src_dir,
                                        build, declared, error):
    src = build(os.path.join(src_dir, 'img'))
    with pytest.raises(error):
        image_api.import_file(ctx, src, declared)
    # Nothing half-imported remains.
    assert os.listdir(store.root) == []
    assert image_api.get_all(ctx) == []


@pytest.mark.parametrize('kwargs', [
    {'disk_format': 'vmdk'}, {'disk_format': 'qed'},
    {'disk_format': 'raw', 'container_format': 'docker'},
    {'disk_format': 'raw', 'properties': {1: 'x'}},
    {'disk_format': 'raw', 'min_disk': -1},
])
def test_import_refuses_bad_arguments(ctx, store, image_api, src_dir,
                                      kwargs):
    src = hostile.raw(os.path.join(src_dir, 'img'))
    with pytest.raises(exception.InvalidInput):
        image_api.import_file(ctx, src, **kwargs)
    assert not os.path.exists(store.root) or os.listdir(store.root) == []


def test_import_refuses_non_files(ctx, store, image_api, src_dir):
    missing = os.path.join(src_dir, 'missing')
    with pytest.raises(exception.InvalidInput) as err:
        image_api.import_file(ctx, src_dir, 'raw')
    assert 'not a regular file' in str(err.value)
    # Refused before the store is even made.
    assert not os.path.exists(store.root)
    kept = image_api.import_file(
        ctx, hostile.raw(os.path.join(src_dir, 'img')), 'raw')
    before = sorted(os.listdir(store.root))

    with pytest.raises(exception.InvalidInput) as err:
        image_api.import_file(ctx, src_dir, 'raw')
    assert 'not a regular file' in str(err.value)
    with pytest.raises(exception.InvalidInput) as err:
        image_api.import_file(ctx, missing, 'raw')
    assert 'cannot read' in str(err.value)

    assert sorted(os.listdir(store.root)) == before
    assert image_api.get_all(ctx) == [kept]
    assert not os.path.exists(missing)


def test_get_all_and_delete(ctx, store, image_api, src_dir):
    a = image_api.import_file(
        ctx, hostile.raw(os.path.join(src_dir, 'a')), 'raw', name='a')
    b = image_api.import_file(
        ctx, hostile.qcow2(os.path.join(src_dir, 'b')), 'qcow2', name='b')
    assert image_api.get_all(ctx) == sorted([a, b], key=lambda m: m['id'])
    image_api.delete(ctx, a['id'])
    assert image_api.get_all(ctx) == [b]
    with pytest.raises(exception.ImageNotFound):
        image_api.get(ctx, a['id'])
    with pytest.raises(exception.ImageNotFound):
        image_api.delete(ctx, a['id'])


def test_import_refuses_a_fifo_without_blocking(ctx, store, image_api,
                                                src_dir):
    # No writer ever opens the FIFO: a blocking open would never return.
    fifo = os.path.join(src_dir, 'fifo')
    os.mkfifo(fifo)
    outcome = []

    def run():
        try:
            image_api.import_file(ctx, fifo, 'raw')
        except exception.InvalidInput as e:
            outcome.append(e)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), 'import_file blocked on a FIFO'
    assert len(outcome) == 1 and 'not a regular file' in str(outcome[0])
    assert not os.path.exists(store.root) or os.listdir(store.root) == []


_SLOW_IMPORT = '''
import sys, time
from nova import context
from nova.image import local
store = local.LocalImageService(root=sys.argv[1])

def progress(done, total):
    print('chunk', done, flush=True)
    time.sleep(60)
store.import_file(context.get_admin_context(), sys.argv[2], 'raw',
                  progress=progress)
'''


def test_killed_import_leaves_nothing_the_next_one_keeps(ctx, store,
                                                         image_api, src_dir):
    src = hostile.raw(os.path.join(src_dir, 'img'), SIZE, DATA_AT)
    for _attempt in range(3):
        child = subprocess.Popen(
            [sys.executable, '-c', _SLOW_IMPORT, store.root, src],
            stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().startswith('chunk')
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
        # Each import removes the previous dead one's directory: one
        # leftover at a time, never an accumulation.
        leftovers = os.listdir(store.root)
        assert len(leftovers) == 1
        assert any(name.endswith('.part') for name in os.listdir(
            os.path.join(store.root, leftovers[0])))
    # The next import removes the last one, keeping only its own image.
    meta = image_api.import_file(ctx, src, 'raw')
    assert os.listdir(store.root) == [meta['id']]
    assert sorted(os.listdir(store.image_dir(meta['id']))) == [
        'data', 'metadata.json']
    assert store.remove_unfinished() == []


def test_remove_unfinished_leaves_a_live_import_alone(ctx, store, image_api,
                                                      src_dir):
    src = hostile.raw(os.path.join(src_dir, 'img'), SIZE, DATA_AT)
    seen = []

    def progress(done, total):
        if not seen:
            # Mid-import: its directory has no metadata yet, but its
            # importer is alive.
            seen.append(store.remove_unfinished())
    meta = image_api.import_file(ctx, src, 'raw', progress=progress)
    assert seen == [[]]
    assert image_api.get(ctx, meta['id']) == meta


@pytest.mark.parametrize('kwargs,reason', [
    ({'min_disk': True}, 'min_disk'),
    ({'properties': {'x': 'a' * (2 * MiB)}}, 'more than'),
    ({'name': 'n' * (2 * MiB)}, 'more than'),
], ids=['min-disk-bool', 'huge-properties', 'huge-name'])
def test_import_refuses_a_record_get_would_refuse(ctx, store, image_api,
                                                  src_dir, kwargs, reason):
    """Arguments whose record ``get`` would refuse are refused before
    anything is stored: no image that can never be read, nothing left."""
    src = hostile.raw(os.path.join(src_dir, 'img'))
    kept = image_api.import_file(ctx, src, 'raw')
    before = sorted(os.listdir(store.root))

    with pytest.raises(exception.InvalidInput) as err:
        image_api.import_file(ctx, src, 'raw', **kwargs)

    assert reason in str(err.value)
    assert sorted(os.listdir(store.root)) == before
    assert image_api.get_all(ctx) == [kept]
    assert store.remove_unfinished() == []


def test_remove_unfinished_never_sees_a_new_import_unlocked(
        ctx, store, image_api, src_dir, monkeypatch):
    """A concurrent remove_unfinished (another thread: its own opening of
    the store, so its own flocks) run just after an import made its image
    directory and before that import flocked it. It must not remove the
    new directory: the import succeeds and nothing unfinished is left.

    The only mock forces that window: os.mkdir, when it has made an image
    directory, starts the other remove_unfinished and gives it a second
    to run (time it has if nothing holds it back) before returning."""
    src = hostile.raw(os.path.join(src_dir, 'img'))
    first = image_api.import_file(ctx, src, 'raw')   # makes the store
    mkdir = os.mkdir
    racer = []

    def mkdir_then_race(name, *args, **kwargs):
        mkdir(name, *args, **kwargs)
        if not racer and kwargs.get('dir_fd') is not None:
            result = []
            thread = threading.Thread(
                target=lambda: result.append(store.remove_unfinished()),
                daemon=True)
            racer.append((thread, result))
            thread.start()
            thread.join(1)
    monkeypatch.setattr(os, 'mkdir', mkdir_then_race)

    meta = image_api.import_file(ctx, src, 'raw')

    monkeypatch.undo()
    thread, result = racer[0]
    thread.join(60)
    assert not thread.is_alive()
    assert result == [[]]
    assert image_api.get(ctx, meta['id']) == meta
    assert sorted(os.listdir(store.root)) == sorted([first['id'],
                                                     meta['id']])
    assert sorted(os.listdir(store.image_dir(meta['id']))) == [
        'data', 'metadata.json']
    assert store.remove_unfinished() == []

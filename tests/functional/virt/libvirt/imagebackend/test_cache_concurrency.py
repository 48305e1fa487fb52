"""One fetch however many create at once; what each create costs.

Downloads are counted by the in-test image service (in process, and through
a file for other processes); external commands by a pass-through spy on
oslo.concurrency's execute, which every qemu-img call goes through.
"""

import concurrent.futures
import contextlib
import fcntl
import json
import os
import subprocess
import time
import traceback
import uuid

from oslo_concurrency import processutils
import pytest

import nova.conf
from nova.virt.libvirt import imagebackend
from nova.virt.libvirt.imagebackend import cache as image_cache
from nova.virt import qemu_img
from nova.virt import staging
from tests.functional import helpers as func_helpers
from tests.functional.virt.libvirt.imagebackend import helpers

CONF = nova.conf.CONF
IMAGE_SIZE = helpers.IMAGE_SIZE
WORKER = 'tests.functional.virt.libvirt.imagebackend.concurrency_worker'


@pytest.mark.parametrize('backend,image_format,cache_format', [
    ('qcow2', 'qcow2', 'raw'), ('qcow2', 'qcow2', 'qcow2'),
    ('flat', 'raw', 'raw')])
def test_threads_fetch_once(backend, image_format, cache_format,
                            cache, image_service, image_files):
    image_id = image_service.ids[image_format]

    def create(_):
        record = helpers.make_record(backend, cache_format, IMAGE_SIZE,
                                     image_id=image_id)
        disk = imagebackend.backend_for(helpers.Instance(), record,
                                        cache=cache)
        disk.create_from_image(None, image_id)
        return disk

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        disks = list(pool.map(create, range(8)))

    assert image_service.downloads[image_id] == 1
    for disk in disks:
        assert helpers.same_content(disk.path, disk.record.format,
                                    image_files['raw'], 'raw')


@pytest.mark.parametrize('backend,image_format,cache_format', [
    ('qcow2', 'qcow2', 'raw'), ('flat', 'qcow2', 'qcow2')])
def test_processes_fetch_once(backend, image_format, cache_format,
                              conf, image_service, image_files, tmp_path):
    image_id = image_service.ids[image_format]
    go = str(tmp_path / 'go')
    workers = []
    for n in range(8):
        args = {
            'instances_path': CONF.instances_path,
            'lock_path': CONF.oslo_concurrency.lock_path,
            'service': image_service.spec(), 'uuid': str(uuid.uuid4()),
            'backend': backend, 'cache_format': cache_format,
            'size': IMAGE_SIZE, 'image_id': image_id,
            'ready': str(tmp_path / ('ready%d' % n)), 'go': go,
        }
        workers.append((args, subprocess.Popen(
            func_helpers.module_argv(WORKER, json.dumps(args)),
            cwd=func_helpers.ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)))
    deadline = time.monotonic() + 60
    while not all(os.path.exists(a['ready']) for a, _ in workers):
        assert time.monotonic() < deadline, 'workers did not start'
        assert all(p.poll() is None for _, p in workers), [
            p.communicate() for _, p in workers if p.poll() is not None]
        time.sleep(0.01)
    open(go, 'w').close()  # all eight start together

    paths = []
    for _args, proc in workers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        paths.append(out.strip())

    assert image_service.counted_downloads(image_id) == 1
    assert len(set(paths)) == 8
    for path in paths:
        assert helpers.same_content(path, 'qcow2' if backend == 'qcow2'
                                    else cache_format, image_files['raw'],
                                    'raw')


class CommandSpy:
    """Records every external command; behaviour unchanged."""

    def __init__(self, monkeypatch):
        self.commands = []

        def spy(module, name, prefix=()):
            real = getattr(module, name)

            def execute(*cmd, **kwargs):
                in_fetch = any(frame.filename.endswith(
                    os.path.join('nova', 'virt', 'images.py'))
                    for frame in traceback.extract_stack())
                self.commands.append(
                    (in_fetch, [str(c) for c in prefix + cmd]))
                return real(*cmd, **kwargs)

            monkeypatch.setattr(module, name, execute)

        spy(processutils, 'execute')
        # qemu-img runs bounded by prlimit, not through processutils.
        spy(qemu_img, 'execute', ('qemu-img',))

    def take(self):
        commands, self.commands = self.commands, []
        return commands


def _published(commands, disk):
    """``commands`` with the descriptor of the private part each disk was
    built in (``/proc/<pid>/fd/<n>``, see staging.Part) named as the
    disk."""
    return [(in_fetch, [disk.path if staging.is_fd_path(arg) else arg
                        for arg in cmd]) for in_fetch, cmd in commands]


def _disk(backend, cache_format, image_id, cache, size=IMAGE_SIZE):
    record = helpers.make_record(backend, cache_format, size,
                                 image_id=image_id)
    return imagebackend.backend_for(helpers.Instance(), record, cache=cache)


@pytest.mark.parametrize('image_format,cache_format', [
    ('qcow2', 'raw'), ('qcow2', 'qcow2'), ('raw', 'raw')])
def test_qcow2_costs_one_create(image_format, cache_format, cache,
                                image_service, monkeypatch):
    spy = CommandSpy(monkeypatch)
    image_id = image_service.ids[image_format]
    base = cache.image_path(image_id, cache_format)

    cold = _disk('qcow2', cache_format, image_id, cache, 2 * IMAGE_SIZE)
    cold.create_from_image(None, image_id)
    commands = _published(spy.take(), cold)
    # Cold: the fetch's own commands (its checks, a convert if asked for
    # raw), then exactly one create; nothing probes outside the fetch.
    fetch = [cmd for in_fetch, cmd in commands if in_fetch]
    ours = [cmd for in_fetch, cmd in commands if not in_fetch]
    assert ('convert' in [c[1] for c in fetch]) == (
        image_format != cache_format)
    assert ours == [['qemu-img', 'create', '-f', 'qcow2', '-b', base, '-F',
                     cache_format, '-u', cold.path, str(2 * IMAGE_SIZE)]]

    warm = _disk('qcow2', cache_format, image_id, cache)
    warm.create_from_image(None, image_id)
    # Warm: one process, the create. No qemu-img info anywhere.
    assert _published(spy.take(), warm) == [(False, [
        'qemu-img', 'create', '-f', 'qcow2', '-b', base, '-F', cache_format,
        '-u', warm.path, str(IMAGE_SIZE)])]


@pytest.mark.parametrize('backend', ['qcow2', 'flat'])
def test_qcow2_resize_costs_one_check_and_the_resize(backend, cache,
                                                     image_service,
                                                     monkeypatch):
    # The disk is proven (qemu-img info) once, through the descriptor
    # the resize then works on: one check, one resize.
    image_id = image_service.ids['qcow2']
    disk = _disk(backend, 'qcow2', image_id, cache)
    disk.create_from_image(None, image_id)
    spy = CommandSpy(monkeypatch)

    disk.resize(2 * IMAGE_SIZE)

    assert [cmd[:2] for _in_fetch, cmd in spy.take()] == [
        ['qemu-img', 'info'], ['qemu-img', 'resize']]


def test_flat_warm_costs_no_process_for_raw(cache, image_service,
                                            monkeypatch):
    image_id = image_service.ids['raw']
    _disk('flat', 'raw', image_id, cache).create_from_image(None, image_id)
    spy = CommandSpy(monkeypatch)
    disk = _disk('flat', 'raw', image_id, cache, 2 * IMAGE_SIZE)
    disk.create_from_image(None, image_id)
    disk.resize(3 * IMAGE_SIZE)
    # Copy, grow and resize of a raw disk are syscalls: the record says
    # raw, so there is nothing to ask qemu-img.
    assert spy.take() == []


def test_flat_qcow2_grows_with_one_pinned_resize(cache, image_service,
                                                 monkeypatch):
    image_id = image_service.ids['qcow2']
    _disk('flat', 'qcow2', image_id, cache).create_from_image(None, image_id)
    spy = CommandSpy(monkeypatch)
    disk = _disk('flat', 'qcow2', image_id, cache, 2 * IMAGE_SIZE)
    disk.create_from_image(None, image_id)
    [(in_fetch, cmd)] = spy.take()
    assert not in_fetch
    assert cmd[:2] == ['qemu-img', 'resize']
    assert cmd[3:] == [str(2 * IMAGE_SIZE)]
    # The format pinned, the new disk's private part named by descriptor,
    # no backing file opened.
    assert cmd[2].startswith('json:')
    spec = json.loads(cmd[2][len('json:'):])
    assert staging.is_fd_path(spec['file'].pop('filename'))
    assert spec == {'driver': 'qcow2', 'backing': None,
                    'file': {'driver': 'file'}}


def _flock_is_held(path):
    """True if another open file holds an flock on ``path`` (a LOCK_NB
    probe of our own fails)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        return False
    finally:
        os.close(fd)  # also lets go of the probe's flock, if it got it


def test_entry_locks_are_shared_with_hosts_sharing_base(
        conf, cache, image_service, tmp_path):
    # Two hosts share instances_path (NFS), each with a local lock_path
    # of its own. The other host's boot holds the entry's lock where
    # every host sharing _base looks for it (locks beside _base, as
    # upstream keeps them): this host's fetch of the entry waits for it,
    # and its local lock_path is never used for the entry.
    conf.config(group='oslo_concurrency',
                lock_path=str(tmp_path / 'this-host-locks'))
    image_id = image_service.ids['raw']
    shared = os.path.join(CONF.instances_path, 'locks')
    os.makedirs(shared, exist_ok=True)
    lock_name = image_cache._LOCK_PREFIX + image_cache.image_entry_name(
        image_id, 'raw')
    lock_file = os.path.join(shared, lock_name)
    other_host = contextlib.ExitStack()
    locks = other_host.enter_context(staging.open_root(shared))
    other_host.enter_context(locks.lock(lock_name))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        boot = pool.submit(cache.ensure_image, None, image_id, 'raw')
        # The fetch either blocks on the other host's flock (the kernel
        # lists it as a waiter on that very file) or, if it does not use
        # that lock, runs to its end: wait for whichever comes first.
        # The deadline only keeps a hung run from hanging the suite.
        deadline = time.monotonic() + 120
        while not func_helpers.lock_waiters(lock_file) and not boot.done():
            assert time.monotonic() < deadline, 'fetch neither blocked ' \
                'on the shared lock nor finished'
            time.sleep(0.01)
        assert not boot.done(), 'the fetch did not wait for the lock'
        assert func_helpers.lock_waiters(lock_file) == 1
        assert _flock_is_held(lock_file)
        # Blocked: nothing fetched, nothing in the cache.
        assert image_service.downloads[image_id] == 0
        assert not os.path.exists(cache.image_path(image_id, 'raw'))
        other_host.close()
        boot.result(timeout=120)
    assert image_service.downloads[image_id] == 1
    assert os.path.exists(cache.image_path(image_id, 'raw'))
    assert func_helpers.lock_waiters(lock_file) == 0
    assert not _flock_is_held(lock_file)
    assert not os.path.exists(tmp_path / 'this-host-locks')


def test_cleanup_keeps_what_records_name(conf, cache, image_service):
    conf.config(remove_unused_original_minimum_age_seconds=0,
                group='image_cache')
    raw_id, qcow2_id = image_service.ids['raw'], image_service.ids['qcow2']
    kept = _disk('qcow2', 'qcow2', qcow2_id, cache)
    kept.create_from_image(None, qcow2_id)
    gone = _disk('flat', 'raw', raw_id, cache)
    gone.create_from_image(None, raw_id)
    in_use = image_cache.entry_name_for_record(kept.record)

    removed = cache.cleanup(None, in_use=in_use, now=time.time() + 1)

    assert removed == [image_cache.image_entry_name(raw_id, 'raw')]
    assert helpers.same_content(kept.path, 'qcow2', cache.image_path(
        qcow2_id, 'qcow2'), 'qcow2')
    assert os.path.exists(gone.path)  # a flat disk needs no base

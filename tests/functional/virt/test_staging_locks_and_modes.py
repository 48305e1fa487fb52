"""Lock files a neighbour plants links at, and StrictModes: directories
others can write are refused with the directory named and the fix."""

from concurrent import futures
import contextlib
import os

import pytest

import nova.conf
from nova import exception
from nova.image import local
from nova import utils
from nova.virt.libvirt.imagebackend import cache as image_cache
from nova.virt import staging
from tests.functional import helpers as func_helpers
from tests.functional.virt.libvirt import helpers as libvirt_helpers
from tests.functional.virt import racer

CONF = nova.conf.CONF
ROUNDS = 20


def _lock_name(name):
    return image_cache._LOCK_PREFIX + name


def test_link_planted_at_a_lock_file_is_never_followed(cache, context,
                                                       images, outside):
    # The link points where no file is: following it would create one.
    target = os.path.join(outside, 'created-by-boot')
    name = image_cache.image_entry_name(images['raw']['id'], 'raw')
    os.makedirs(cache.lock_path, exist_ok=True)
    os.symlink(target, os.path.join(cache.lock_path, _lock_name(name)))
    with pytest.raises(exception.UnsafePath):
        cache.ensure_image(context, images['raw']['id'], 'raw')
    assert not os.path.lexists(target)
    assert not os.path.exists(cache.image_path(images['raw']['id'], 'raw'))


def test_lock_files_swapped_for_links_during_boots(cache, context, images,
                                                   outside):
    target = os.path.join(outside, 'created-by-boot')
    os.makedirs(cache.lock_path, exist_ok=True)
    with racer.Racer(cache.lock_path, r'^%s' % image_cache._LOCK_PREFIX,
                     target) as race:
        for n in range(ROUNDS):
            try:
                cache.ensure_template('swap_%d' % (n + 1),
                                      lambda t, s: None, 4096)
            except exception.UnsafePath:
                pass
            # A lock file replaced by a link while held: the next attempt
            # finds the link and refuses it.
    assert race.swaps > 0
    assert not os.path.lexists(target)


@pytest.mark.parametrize('which', ['instances_path', '_base', 'lock_path'])
@pytest.mark.parametrize('problem', ['world-writable', 'group-writable',
                                     'other-owner'])
def test_strict_modes_refuse_a_directory_others_can_change(
        cache, context, images, which, problem):
    path = {'instances_path': CONF.instances_path, '_base': cache.base_dir,
            'lock_path': cache.lock_path}[which]
    os.makedirs(path, exist_ok=True)
    if problem == 'world-writable':
        os.chmod(path, 0o777)
    elif problem == 'group-writable':
        os.chmod(path, 0o775)
    else:
        os.chown(path, 65534, 65534)
    with pytest.raises(exception.UnsafeDirectory) as err:
        cache.ensure_image(context, images['raw']['id'], 'raw')
    message = str(err.value)
    assert path in message
    assert ('chmod go-w %s' % path) in message
    if problem == 'other-owner':
        assert ('chown %d %s' % (os.geteuid(), path)) in message
    assert not os.path.exists(os.path.join(
        cache.base_dir, image_cache.image_entry_name(images['raw']['id'],
                                                     'raw')))


def test_strict_modes_refuse_a_writable_image_store(conf, context, src_dir):
    store = local.LocalImageService()
    os.makedirs(store.root)
    os.chmod(store.root, 0o777)
    source = libvirt_helpers.make_image_file(src_dir, 'raw')
    with pytest.raises(exception.UnsafeDirectory) as err:
        store.import_file(context, source, 'raw')
    assert store.root in str(err.value)
    assert os.listdir(store.root) == []


def test_strict_modes_refuse_a_writable_state_path(conf):
    os.makedirs(CONF.state_path)
    os.chmod(CONF.state_path, 0o757)
    with pytest.raises(exception.UnsafeDirectory) as err:
        utils.ensure_tree(CONF.state_path, mode=0o700)
    assert 'writable by others' in str(err.value)
    assert 'chmod go-w %s' % CONF.state_path in str(err.value)


def test_service_directories_are_created_private(cache, context, images):
    cache.ensure_image(context, images['raw']['id'], 'raw')
    for path in (CONF.instances_path, cache.base_dir, cache.lock_path):
        st = os.stat(path)
        assert st.st_uid == os.geteuid()
        assert not st.st_mode & 0o022, path
    with staging.open_root(cache.lock_path) as locks:
        for name in locks.listdir():
            assert not locks.lstat(name).st_mode & 0o077


def test_a_lock_file_removed_by_its_holder_still_excludes(tmp_path):
    # The holder removes the lock file before letting go (what it guarded
    # is gone); a waiter then gets the flock of the removed file, while a
    # newcomer holds the file now at the name. Never both at once.
    held = []
    with staging.open_root(str(tmp_path), create=True) as locks:
        path = locks.join('nova-x')

        def waiter():
            with locks.lock('nova-x') as waited:
                held.append(waited)

        with futures.ThreadPoolExecutor(1) as pool, \
                contextlib.ExitStack() as newcomer:
            with locks.lock('nova-x') as waited:
                assert waited is False
                worker = pool.submit(waiter)
                func_helpers.wait_for_a_waiter(path, worker)
                locks.unlink('nova-x')
                newcomer.enter_context(locks.lock('nova-x'))
            # The holder let go: the waiter woke on the removed file and
            # now waits for the newcomer's.
            func_helpers.wait_for_a_waiter(path, worker)
            assert held == []
            newcomer.close()
            worker.result()
    # It says it waited: what the lock guards may have changed.
    assert held == [True]

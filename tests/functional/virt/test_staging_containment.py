"""Containment: _base, the instance directory and cached bases are what
they must be, whatever a neighbour put at their names."""

import os
import shutil

import pytest

import nova.conf
from nova import exception
from tests.functional.virt.libvirt import helpers as libvirt_helpers
from tests.functional.virt import racer

CONF = nova.conf.CONF
ROUNDS = 20


def _old_files(directory, names):
    """Files older than any cleanup age; returns their Victims."""
    return [racer.Victim(os.path.join(directory, n)) for n in names]


def test_symlinked_base_is_never_cleaned(conf, cache, context, outside):
    # The victims look like cache entries and are old: a cleanup that
    # followed the link would delete them all.
    conf.config(remove_unused_original_minimum_age_seconds=0,
                group='image_cache')
    names = ['a' * 40, 'a' * 40 + '.info', 'swap_1', 'swap_1.info', 'passwd']
    victims = _old_files(outside, names)
    os.makedirs(os.path.dirname(cache.base_dir))
    os.symlink(outside, cache.base_dir)
    with pytest.raises(exception.UnsafePath):
        cache.cleanup(context, in_use=())
    for victim in victims:
        victim.assert_untouched()
    assert os.path.islink(cache.base_dir)


def test_base_swapped_for_a_link_during_cleanups(conf, cache, context,
                                                 outside):
    conf.config(remove_unused_original_minimum_age_seconds=0,
                group='image_cache')
    victims = _old_files(outside, ['b' * 40, 'b' * 40 + '.info', 'swap_2'])
    cache.ensure_template('swap_1', lambda target, size: None, 4096)
    base_dir = cache.base_dir
    parking = base_dir + '.real'

    def swap(path):
        # The real _base moves away and a link takes its name, then back.
        os.rename(path, parking)
        os.symlink(outside, path)
        os.unlink(path)
        os.rename(parking, path)

    with racer.Racer(os.path.dirname(base_dir), r'^_base$', None,
                     swap=swap) as race:
        for _ in range(ROUNDS):
            try:
                cache.cleanup(context, in_use=())
            except (exception.UnsafePath, FileNotFoundError):
                pass
    assert race.swaps > 0
    for victim in victims:
        victim.assert_untouched()


def test_cleanup_leaves_planted_entries_alone_and_goes_on(conf, cache,
                                                          context, outside):
    conf.config(remove_unused_original_minimum_age_seconds=0,
                group='image_cache')
    victim = racer.Victim(os.path.join(outside, 'target'))
    unused = cache.ensure_template('swap_1', lambda target, size: None, 4096)
    base_dir = cache.base_dir
    # A directory and a link at names an entry would have, and at names
    # no entry has.
    os.mkdir(os.path.join(base_dir, 'c' * 40 + '.raw'))
    os.mkdir(os.path.join(base_dir, 'planted-dir.info'))
    os.symlink(victim.path, os.path.join(base_dir, 'd' * 40 + '.raw'))
    os.symlink(victim.path, os.path.join(base_dir, 'swap_9.info'))
    os.symlink(victim.path, os.path.join(base_dir, '.hidden'))

    assert cache.cleanup(context, in_use=()) == ['swap_1.raw']

    assert not os.path.exists(unused.path)
    assert sorted(os.listdir(base_dir)) == sorted([
        '.hidden', 'c' * 40 + '.raw', 'd' * 40 + '.raw', 'planted-dir.info',
        'swap_9.info'])
    assert os.path.isdir(os.path.join(base_dir, 'c' * 40 + '.raw'))
    assert os.path.islink(os.path.join(base_dir, 'd' * 40 + '.raw'))
    victim.assert_untouched()


def _spawn(driver, context, image_meta, conf, backend='qcow2'):
    libvirt_helpers.configure(conf, backend, force_raw=True)
    instance, bdms = libvirt_helpers.create_instance(
        context, image_meta, ephemerals=0, swap_mb=0)
    driver.spawn(context, instance, image_meta, bdms)
    return instance


def test_instance_dir_linked_to_another_instances(conf, context, images,
                                                  driver, tmp_path):
    a = _spawn(driver, context, images['raw'], conf)
    b = _spawn(driver, context, images['raw'], conf)
    a_dir = os.path.join(CONF.instances_path, a.uuid)
    b_dir = os.path.join(CONF.instances_path, b.uuid)
    b_disk = racer.Victim.existing(os.path.join(b_dir, 'disk'))
    shutil.rmtree(a_dir)
    os.symlink(b_dir, a_dir)

    with pytest.raises(exception.UnsafePath):
        driver.destroy(context, a)

    b_disk.assert_untouched()
    assert os.path.islink(a_dir)
    assert driver.get_domain_state(a) == 'running'


def test_cached_base_swapped_before_a_reboot(conf, context, images, driver,
                                             cache, victim):
    instance = _spawn(driver, context, images['raw'], conf)
    base = cache.image_path(images['raw']['id'], 'raw')
    # The neighbour replaces the base by a link to a host file of the
    # same size: the guest would read the host file as its disk.
    os.truncate(victim.path, os.path.getsize(base))
    victim.arm()
    os.unlink(base)
    os.symlink(victim.path, base)

    for operation in (driver.reboot, driver.power_on):
        with pytest.raises(exception.CacheEntryInvalid):
            operation(context, instance)
        assert driver.get_domain_state(instance) == 'shut off'
    victim.assert_untouched()


@pytest.mark.parametrize('change', ['fifo', 'other-owner', 'resized'])
def test_cached_base_checked_at_every_define(conf, context, images, driver,
                                             cache, change):
    instance = _spawn(driver, context, images['raw'], conf)
    driver.power_off(context, instance)
    base = cache.image_path(images['raw']['id'], 'raw')
    if change == 'fifo':
        os.unlink(base)
        os.mkfifo(base)
    elif change == 'other-owner':
        os.chown(base, 65534, 65534)
    else:
        os.truncate(base, os.path.getsize(base) + 4096)
    with pytest.raises(exception.CacheEntryInvalid):
        driver.power_on(context, instance)
    assert driver.get_domain_state(instance) == 'shut off'

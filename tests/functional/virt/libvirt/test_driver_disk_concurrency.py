"""DiskManager makes an instance's disks together, and fails cleanly.

Real spawns on real files. The template functions are the real ones,
wrapped to note which disks are being formatted at the same moment; the
rendezvous that proves two of them overlap is a barrier whose timeout is
only a guard against a hang (a spawn that made its disks one by one never
passes it).
"""

import threading

import pytest

from nova import exception
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt.imagebackend import manager as disk_manager

from tests.functional.virt.libvirt import helpers

# Long enough for any loaded machine to start two threads; the barrier is
# passed at once when the code is right.
GUARD_S = 60


class Watched:
    """The real template functions, noting how many run at once; each
    waits at ``barrier`` first, and the kinds in ``failing`` raise there
    instead of formatting."""

    def __init__(self, barrier=None, failing=()):
        self.barrier = barrier
        self.failing = failing
        self.running = 0
        self.most = 0
        self.kinds = []
        self._lock = threading.Lock()

    def funcs(self):
        def wrap(kind):
            def factory(template):
                real = disk_manager.TEMPLATE_FUNCS[kind](template)

                def func(target, size):
                    with self._lock:
                        self.running += 1
                        self.most = max(self.most, self.running)
                        self.kinds.append(kind)
                    try:
                        if self.barrier:
                            self.barrier.wait(GUARD_S)
                        if kind in self.failing:
                            raise OSError('%s template refused' % kind)
                        return real(target, size)
                    finally:
                        with self._lock:
                            self.running -= 1
                return func
            return factory
        return {kind: wrap(kind) for kind in disk_manager.TEMPLATE_FUNCS}


def spawn_driver(host, watched):
    return libvirt_driver.LibvirtDriver(
        host=host, disks=disk_manager.DiskManager(
            template_funcs=watched.funcs()))


def create_threads():
    return [t for t in threading.enumerate()
            if t.name.startswith('disk-create')]


@pytest.mark.parametrize('backend', helpers.FILE_BACKENDS)
def test_disks_of_an_instance_are_made_together(conf, context, images,
                                                host, backend):
    conf.config(group='libvirt', images_type=backend)
    # The ephemeral template and the swap template are formatted at the
    # same time, or neither passes the barrier.
    watched = Watched(barrier=threading.Barrier(2))
    driver = spawn_driver(host, watched)
    image_meta = images['qcow2']
    instance, bdms = helpers.create_instance(context, image_meta,
                                             ephemerals=2)

    driver.spawn(context, instance, image_meta, bdms)

    assert watched.most == 2
    assert sorted(watched.kinds) == ['ephemeral', 'swap']
    assert helpers.disk_files(instance) == [
        'disk', 'disk.eph1', 'disk.local', 'disk.swap']
    assert create_threads() == []
    driver.destroy(context, instance)
    assert helpers.disk_files(instance) == []


def test_one_at_a_time_when_configured(conf, context, images, host):
    conf.config(group='libvirt', disk_create_concurrency=1)
    watched = Watched()
    driver = spawn_driver(host, watched)
    image_meta = images['raw']
    instance, bdms = helpers.create_instance(context, image_meta,
                                             ephemerals=2)

    driver.spawn(context, instance, image_meta, bdms)

    # Attach order: the ephemerals' one template, then swap's.
    assert watched.most == 1
    assert watched.kinds == ['ephemeral', 'swap']
    assert helpers.disk_files(instance) == [
        'disk', 'disk.eph1', 'disk.local', 'disk.swap']
    driver.destroy(context, instance)


@pytest.mark.parametrize('backend', helpers.FILE_BACKENDS)
def test_a_failed_disk_removes_the_others_once_they_end(conf, context,
                                                        images, host,
                                                        backend):
    conf.config(group='libvirt', images_type=backend)
    # swap fails while the ephemeral template is being made beside it:
    # the root and ephemeral disks finish, then are removed.
    watched = Watched(barrier=threading.Barrier(2), failing=('swap',))
    driver = spawn_driver(host, watched)
    image_meta = images['qcow2']
    instance, bdms = helpers.create_instance(context, image_meta,
                                             ephemerals=2)

    with pytest.raises(exception.DiskCreateFailed) as e:
        driver.spawn(context, instance, image_meta, bdms)

    assert e.value.kwargs['disk_name'] == 'disk.swap'
    assert 'swap template refused' in str(e.value)
    assert instance.uuid in str(e.value)
    assert watched.most == 2
    assert helpers.disk_files(instance) == []
    assert driver.host.lookup_domain(instance) is None
    assert create_threads() == []
    # The records stay: a retry makes exactly those disks.
    records = helpers.records(context, instance)
    assert sorted(records) == ['disk', 'disk.eph1', 'disk.local',
                               'disk.swap']
    retry = spawn_driver(host, Watched())
    retry.spawn(context, instance, image_meta, bdms)
    assert helpers.disk_files(instance) == sorted(records)
    retry.destroy(context, instance)


def test_an_interrupt_while_a_worker_starts_leaves_nothing(
        conf, context, images, host, monkeypatch):
    # Ctrl-C (or SIGTERM, which the CLI turns into one) lands while the
    # pool starts the thread of a template disk: the thread runs, with its
    # work, but the pool has not recorded it, so the pool's exit does not
    # wait for it. The spawn must wait for that disk all the same before
    # it cleans up, or the disk is made after the cleanup and left behind
    # (seen once in CI: an instance directory left by an interrupted
    # boot). The interrupt is raised where Python would raise it, right
    # after the thread started; a signal cannot be aimed that precisely.
    real_start = threading.Thread.start
    interrupted = []

    def start_then_interrupt(thread):
        real_start(thread)
        if thread.name.startswith('disk-create') and not interrupted:
            interrupted.append(thread)
            raise KeyboardInterrupt()

    monkeypatch.setattr(threading.Thread, 'start', start_then_interrupt)
    driver = spawn_driver(host, Watched())
    image_meta = images['raw']
    instance, bdms = helpers.create_instance(context, image_meta,
                                             ephemerals=1)

    with pytest.raises(KeyboardInterrupt):
        driver.spawn(context, instance, image_meta, bdms)

    [worker] = interrupted
    worker.join(GUARD_S)
    assert not worker.is_alive()
    assert helpers.disk_files(instance) == []
    assert driver.host.lookup_domain(instance) is None

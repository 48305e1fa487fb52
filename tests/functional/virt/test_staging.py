"""The staging protocol itself (nova/virt/staging.py), on real files."""

import errno
import fcntl
import os
import threading

import pytest

from nova import exception
from nova.virt import staging


@pytest.fixture
def d(tmp_path):
    with staging.open_root(str(tmp_path / 'dir'), create=True) as directory:
        yield directory


def _names(directory):
    return sorted(directory.listdir())


def test_part_is_private_and_published_without_replacing(d):
    with staging.Part(d, 'disk') as part:
        assert part.name.startswith('.disk.') and part.name.endswith('.part')
        assert d.lstat(part.name).st_mode & 0o777 == 0o600
        os.write(part.fd, b'mine')
        assert part.publish() == d.join('disk')
    assert _names(d) == ['disk']
    with open(d.join('disk'), 'rb') as f:
        assert f.read() == b'mine'
    with pytest.raises(FileExistsError) as err:
        with staging.Part(d, 'disk') as part:
            part.publish()
    assert err.value.filename == d.join('disk')
    assert _names(d) == ['disk']


def test_published_file_is_the_descriptor_not_the_name(d, tmp_path):
    other = tmp_path / 'other'
    other.write_bytes(b'theirs')
    with pytest.raises(OSError):
        with staging.Part(d, 'disk') as part:
            os.write(part.fd, b'mine')
            # The name is swapped: publishing follows the descriptor, and
            # the file we made has no name left to link from.
            d.unlink(part.name)
            os.symlink(str(other), d.join(part.name))
            part.publish()
    assert not d.lexists('disk')
    assert other.read_bytes() == b'theirs'


def test_rename_fallback_never_replaces(d, monkeypatch):
    real_link = os.link

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, 'no hard links here')
    monkeypatch.setattr(os, 'link', no_links)
    with staging.Part(d, 'disk') as part:
        part.publish()
    with open(d.join('taken'), 'w') as f:
        f.write('x')
    with pytest.raises(FileExistsError):
        with staging.Part(d, 'taken') as part:
            part.publish()
    monkeypatch.setattr(os, 'link', real_link)
    assert _names(d) == ['disk', 'taken']


def test_stale_parts_only_of_dead_makers(d):
    live = staging.Part(d, 'disk')
    dead = os.open(d.join('.disk.0123456789abcdef.part'),
                   os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(dead)
    os.mkdir(d.join('.disk.fedcba9876543210.part'))
    os.mkfifo(d.join('.disk.00000000000000ff.part'))
    try:
        assert staging.remove_stale_parts(d, 'disk') == 1
        names = _names(d)
        assert live.name in names
        assert '.disk.0123456789abcdef.part' not in names
        assert '.disk.fedcba9876543210.part' in names
        assert '.disk.00000000000000ff.part' in names
    finally:
        live.discard()


def test_a_part_whose_maker_cannot_be_told_is_kept(d, monkeypatch):
    # Faked: on NFS a flock is a byte-range lock taken through the lock
    # manager, which fails with ENOLCK when that is not running; this
    # kernel has no NFS (/proc/filesystems) to show it for real.
    dead = d.join('.disk.0123456789abcdef.part')
    os.close(os.open(dead, os.O_CREAT | os.O_WRONLY, 0o600))
    real_flock = fcntl.flock

    def nfs_flock(fd, operation):
        if operation & fcntl.LOCK_EX and (
                os.fstat(fd).st_ino == os.stat(dead).st_ino):
            raise OSError(errno.ENOLCK, 'No locks available')
        return real_flock(fd, operation)
    monkeypatch.setattr(staging.fcntl, 'flock', nfs_flock)
    fds_before = len(os.listdir('/proc/self/fd'))

    assert staging.remove_stale_parts(d, 'disk') == 0

    assert os.path.exists(dead)
    assert len(os.listdir('/proc/self/fd')) == fds_before


@pytest.mark.parametrize('make', [staging.Part, staging.PartDirectory])
def test_part_interrupted_while_made_is_not_left(d, monkeypatch, make):
    # Ctrl-C lands right after the part is locked, before any caller holds
    # it to discard it: nothing stays (a leftover, flocked by this live
    # process, would pass for a live maker's and never be removed).
    real_flock = fcntl.flock

    def flock_then_interrupt(fd, operation):
        real_flock(fd, operation)
        raise KeyboardInterrupt()

    monkeypatch.setattr(fcntl, 'flock', flock_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        make(d, 'disk')
    monkeypatch.undo()
    assert _names(d) == []


def test_open_regular_refuses_links_and_fifos_without_blocking(d, tmp_path):
    os.mkfifo(d.join('fifo'))
    os.symlink(str(tmp_path), d.join('link'))
    for name in ('fifo', 'link'):
        with pytest.raises(exception.UnsafePath):
            d.open_regular(name)
    with pytest.raises(exception.UnsafePath):
        d.subdir('link')


def test_lock_refuses_a_planted_link_and_locks_between_threads(d, tmp_path):
    target = tmp_path / 'created'
    os.symlink(str(target), d.join('l1'))
    with pytest.raises(exception.UnsafePath):
        with d.lock('l1'):
            pass
    assert not target.exists()
    with d.lock('l2'):
        fd = d.open_regular('l2')
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def test_fd_path_names_the_descriptor(d):
    with staging.Part(d, 'x') as part:
        assert staging.is_fd_path(part.path)
        assert os.path.samestat(os.stat(part.path), os.fstat(part.fd))
        part.discard()
    assert not staging.is_fd_path('/proc/1/fd/3') or os.getpid() == 1
    assert not staging.is_fd_path(d.join('x'))


def test_part_directory_is_private_and_published_without_replacing(d):
    with staging.PartDirectory(d, 'disk', mode=0o700) as part:
        assert d.lstat(part.name).st_mode & 0o777 == 0o700
        # Files inside are reached through the directory's descriptor.
        with open(os.path.join(part.path, 'root.hds'), 'wb') as f:
            f.write(b'mine')
        part.publish()
    assert _names(d) == ['disk']
    with open(os.path.join(d.join('disk'), 'root.hds'), 'rb') as f:
        assert f.read() == b'mine'
    # An empty directory at the name is not replaced either.
    os.rename(d.join('disk'), d.join('kept'))
    os.mkdir(d.join('disk'))
    with pytest.raises(FileExistsError):
        with staging.PartDirectory(d, 'disk') as part:
            os.close(os.open(os.path.join(part.path, 'x'),
                             os.O_CREAT | os.O_WRONLY, 0o600))
            part.publish()
    assert _names(d) == ['disk', 'kept']
    assert os.listdir(d.join('disk')) == []


def test_part_directory_swapped_after_its_check_is_not_published(d,
                                                                 tmp_path):
    # A directory cannot be linked: it is renamed, after a check that its
    # name is still ours. A neighbour's swap right after that check is a
    # window too short for a racer thread to hit reliably, so the swap is
    # made by the check itself, once it has passed.
    other = tmp_path / 'other'
    other.mkdir()

    class Raced(staging.PartDirectory):
        swapped = False

        def still_ours(self):
            ours = super().still_ours()
            if not self.swapped:
                self.swapped = True
                os.rename(d.join(self.name), d.join('moved'))
                os.symlink(str(other), d.join(self.name))
            return ours

    with pytest.raises(OSError) as e:
        with Raced(d, 'disk') as part:
            part.publish()

    assert e.value.errno == errno.ESTALE
    assert not d.lexists('disk')
    assert os.listdir(str(other)) == []


def test_stale_part_directories_only_with_directories(d, tmp_path):
    victim = tmp_path / 'victim'
    victim.write_bytes(b'keep')
    live = staging.PartDirectory(d, 'disk')
    dead = staging.PartDirectory(d, 'disk')
    os.symlink(str(victim), os.path.join(dead.path, 'link'))
    dead_name = dead.name
    dead.close()  # its maker is gone: the flock is free
    assert staging.remove_stale_parts(d, 'disk') == 0
    assert staging.remove_stale_parts(d, 'disk', directories=True) == 1
    assert _names(d) == [live.name]
    assert not d.lexists(dead_name)
    assert victim.read_bytes() == b'keep'
    live.discard()
    assert _names(d) == []


def _open_fds():
    return len(os.listdir('/proc/self/fd'))


def test_batched_publishes_name_complete_files_and_close_what_they_hold(
        d):
    before = _open_fds()
    with staging.directory_syncs() as syncs:
        with d.subdir('inst', create=True, batched=True) as inst:
            for name in ('disk', 'disk.eph0'):
                with staging.Part(inst, name) as part:
                    os.write(part.fd, name.encode())
                    part.publish(batched=True)
        # Published at once: the names are there before the batch ends.
        assert sorted(os.listdir(d.join('inst'))) == ['disk', 'disk.eph0']
        # Two directories wait: the new entry 'inst' and the disks in it.
        assert len(syncs) == 2
    assert _open_fds() == before
    with open(os.path.join(d.path, 'inst', 'disk.eph0'), 'rb') as f:
        assert f.read() == b'disk.eph0'


def test_nested_batch_joins_the_outer_one(d):
    with staging.directory_syncs() as outer:
        with staging.directory_syncs() as inner:
            assert inner is outer
            with staging.Part(d, 'disk') as part:
                part.publish(batched=True)
        # The inner block's end syncs nothing of the outer batch's.
        assert len(outer)
    assert not len(outer)
    assert _names(d) == ['disk']


def test_batch_sync_failure_raises_and_keeps_the_names(d, monkeypatch):
    # An fsync failing with EIO cannot be produced on this host (no
    # device-mapper for a failing device): os.fsync is replaced for the
    # directory alone.
    directory_ino = os.fstat(d.fd).st_ino
    real_fsync = os.fsync

    def fsync(fd):
        if os.fstat(fd).st_ino == directory_ino:
            raise OSError(errno.EIO, 'I/O error')
        return real_fsync(fd)
    monkeypatch.setattr(os, 'fsync', fsync)
    before = _open_fds()
    with pytest.raises(OSError) as err:
        with staging.directory_syncs() as syncs:
            with staging.Part(d, 'disk') as part:
                part.publish(batched=True)
            syncs.sync()
    assert err.value.errno == errno.EIO
    assert _names(d) == ['disk']
    assert _open_fds() == before


def test_unbatched_publish_in_a_batch_syncs_at_once(d):
    with staging.directory_syncs() as syncs:
        with staging.Part(d, 'base') as part:
            part.publish()
        # The image cache's publishes: never left to the batch.
        assert not len(syncs)


def test_failure_in_a_batch_propagates_after_syncing(d):
    with pytest.raises(ValueError):
        with staging.directory_syncs() as syncs:
            with staging.Part(d, 'disk') as part:
                part.publish(batched=True)
            raise ValueError('boom')
    assert not len(syncs)
    assert _names(d) == ['disk']


def test_discard_in_the_background_removes_the_name_at_once(d):
    before = _open_fds()
    part = staging.Part(d, 'disk')
    os.write(part.fd, b'x' * 4096)
    part.discard(background=True)
    assert part.fd is None
    assert _names(d) == []
    for thread in threading.enumerate():
        if thread.name == 'close-part':
            thread.join()
    assert _open_fds() == before


def test_a_sweep_never_sees_a_live_part_unlocked(d, monkeypatch):
    # The only mock forces the window: a sweep of the same target runs
    # from inside Part's fchmod (between the part's creation and its
    # flock). The part must not be named there yet, or be flocked.
    real_fchmod = os.fchmod
    swept = []

    def fchmod_then_sweep(fd, mode):
        real_fchmod(fd, mode)
        swept.append(staging.remove_stale_parts(d, 'disk'))
    monkeypatch.setattr(staging.os, 'fchmod', fchmod_then_sweep)
    part = staging.Part(d, 'disk')
    monkeypatch.undo()
    try:
        assert swept == [0]
        assert _names(d) == [part.name] and part.still_ours()
        os.write(part.fd, b'mine')
        assert part.publish() == d.join('disk')
    finally:
        part.discard()
    assert _names(d) == ['disk']
    with open(d.join('disk'), 'rb') as f:
        assert f.read() == b'mine'


def test_part_without_o_tmpfile_is_made_at_its_name(d, monkeypatch):
    # The filesystem refuses O_TMPFILE (NFS does; this host's does not,
    # hence the mock): the part is made at its name, flocked, and works
    # as any part.
    real_open = os.open

    def no_tmpfile(path, flags, *args, **kwargs):
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, 'Operation not supported')
        return real_open(path, flags, *args, **kwargs)
    monkeypatch.setattr(os, 'open', no_tmpfile)
    part = staging.Part(d, 'disk')
    try:
        assert _names(d) == [part.name]
        assert d.lstat(part.name).st_mode & 0o777 == 0o600
        assert staging.remove_stale_parts(d, 'disk') == 0
        os.write(part.fd, b'mine')
        part.publish()
    finally:
        part.discard()
        monkeypatch.undo()
    assert _names(d) == ['disk']

"""Staging: the one way files are made under the service's directories.

``instances_path``, its ``_base``, the image store and ``lock_path`` are
often shared (NFS, for live migration) with hosts or users this service
does not trust. Anything that checks a path and then uses it again by name
lets such a neighbour swap a symlink or a FIFO in between, and the service
(as root) then writes, formats or deletes whatever the link points at.
This module removes the name from every step after the first:

* A service directory is opened once (``open_root``, following the
  operator's configured path but refusing one that anyone but the service
  user could change: sshd's StrictModes) and each directory under it with
  ``O_DIRECTORY | O_NOFOLLOW`` (``Directory.subdir``). Everything else is
  an ``*at()`` call on that descriptor.
* A new file is a ``Part``: created unnamed (``O_TMPFILE``), flocked,
  then linked at an unpredictable name (``.<target>.<16 hex>[.<suffix>]
  .part``), so that the name never names an unlocked part (or, where the
  filesystem has no ``O_TMPFILE``, created there with ``O_EXCL |
  O_NOFOLLOW`` and then flocked); flocked while its maker lives, and
  handed to tools as ``/proc/<pid>/fd/<n>``, the descriptor that was
  created (see ``Part.path``), never as its name.
* ``Part.publish`` gives the finished, fsynced file its name without ever
  replacing one: ``linkat`` of the descriptor itself (so a swapped part
  name publishes nothing else), or ``renameat2(RENAME_NOREPLACE)`` where
  the filesystem has no hard links.
* A ``PartDirectory`` is the same for a target that is a directory (a
  ploop disk): made 0700, flocked, renamed without replacing.
* ``remove_stale_parts`` removes the parts of makers that died (their
  flock is free), only regular files, only names of that pattern.
* ``directory_syncs`` batches the directory fsyncs of several publishes
  (an instance's disks): one per directory, at the end of the batch.

Reading a file of ours is ``Directory.open_regular``: ``O_NOFOLLOW |
O_NONBLOCK`` then ``fstat``, so neither a link nor a FIFO is followed or
blocks.
"""

import binascii
import contextlib
import contextvars
import errno
import fcntl
import os
import re
import shutil
import stat
import threading

from oslo_log import log as logging

from nova import exception
from nova.virt import libc

LOG = logging.getLogger(__name__)

PART_SUFFIX = '.part'
_TOKEN_BYTES = 8
#: ``.<target>.<16 hex>[.<suffix>].part``: every part this module makes.
_PART_RE = re.compile(r'^\.(?P<target>.+)\.[0-9a-f]{%d}(\.[a-z0-9]+)?%s$' % (
    2 * _TOKEN_BYTES, re.escape(PART_SUFFIX)))

_FD_PATH_RE = re.compile(r'^/proc/[0-9]+/fd/[0-9]+$')
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# link() is missing or refused on some filesystems: rename instead.
_NO_LINK = (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS)
# O_TMPFILE unsupported: by the filesystem (NFS: EOPNOTSUPP), or by a
# kernel older than 3.11 (EISDIR: it reads O_TMPFILE's O_DIRECTORY).
_NO_TMPFILE = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL)
_NAME_ATTEMPTS = 5


def fd_path(fd):
    """A path naming the open file ``fd`` itself, for a tool to open.

    ``/proc/<pid>/fd/<n>`` of this process: a child (qemu-img, mkfs) opens
    the very file this process created and checked, whatever has been
    done to its name meanwhile. (``/proc/self`` would name the child; this
    works without passing the descriptor, so tools run through
    processutils, which closes inherited descriptors, get it too.)
    """
    return '/proc/%d/fd/%d' % (os.getpid(), fd)


def is_fd_path(path):
    """True if ``path`` is one ``fd_path`` made in this process."""
    return isinstance(path, str) and _FD_PATH_RE.match(path) is not None \
        and path.split('/')[2] == str(os.getpid())


def _fix_for(path, st):
    return 'chown %d %s && chmod go-w %s' % (os.geteuid(), path, path) \
        if st.st_uid != os.geteuid() else 'chmod go-w %s' % path


def check_strict(fd, path):
    """Refuse a directory that anyone but this service's user can change.

    Like sshd's StrictModes: owned by the effective user, and not
    writable by group or others.

    :raises: UnsafeDirectory naming ``path`` and the command that fixes it.
    """
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        reason = 'it is owned by uid %d, not by this service (uid %d)' % (
            st.st_uid, os.geteuid())
    elif st.st_mode & 0o022:
        reason = 'it is writable by %s (mode %04o)' % (
            'group and others' if st.st_mode & 0o022 == 0o022 else
            'group' if st.st_mode & 0o020 else 'others',
            stat.S_IMODE(st.st_mode))
    else:
        return
    raise exception.UnsafeDirectory(path=path, reason=reason,
                                    fix=_fix_for(path, st))


class Directory:
    """An open directory of the service: a descriptor and its path.

    The path is for messages, and for what must name a file to others
    (libvirt's XML); everything this code does inside goes through ``fd``.
    Use as a context manager, or ``close()`` it.
    """

    def __init__(self, fd, path):
        self.fd = fd
        self.path = path

    def __repr__(self):
        return '<Directory %s fd=%s>' % (self.path, self.fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def join(self, name):
        """The path of entry ``name`` (for messages and for libvirt)."""
        return os.path.join(self.path, _plain(name))

    def subdir(self, name, create=False, mode=0o700, strict=True,
               batched=False):
        """Open directory ``name`` in this one, never through a link.

        :param create: make it (``mode``, owned by this service) if
            missing; its new entry here is then fsynced (see
            ``sync_entries``).
        :param strict: apply ``check_strict`` to it.
        :param batched: a new entry's fsync may wait for the end of the
            ``directory_syncs`` batch this thread is in.
        :raises: UnsafePath (a link, a file, a FIFO at that name: left
            alone), FileNotFoundError (missing, not ``create``),
            UnsafeDirectory.
        """
        made = False
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(_plain(name), mode, dir_fd=self.fd)
                made = True
        path = self.join(name)
        try:
            fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=self.fd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise exception.UnsafePath(path=path, kind='directory',
                                           reason=e.strerror) from None
            raise
        directory = _checked(fd, path, strict)
        if made:
            # The new entry is durable before anything inside it is.
            self.sync_entries(batched)
        return directory

    def listdir(self):
        return os.listdir(self.fd)

    def lstat(self, name):
        """``fstatat(name, AT_SYMLINK_NOFOLLOW)``."""
        return os.stat(_plain(name), dir_fd=self.fd, follow_symlinks=False)

    def lexists(self, name):
        try:
            self.lstat(name)
        except FileNotFoundError:
            return False
        return True

    def unlink(self, name, missing_ok=True):
        """Remove the entry ``name`` itself (a link, never its target)."""
        try:
            os.unlink(_plain(name), dir_fd=self.fd)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmdir(self, name):
        os.rmdir(_plain(name), dir_fd=self.fd)

    def fsync(self):
        os.fsync(self.fd)

    def sync_entries(self, batched=False):
        """Make this directory's entries durable: fsync now or, if
        ``batched`` and this thread is in a ``directory_syncs`` block,
        once at the end of that batch."""
        batch = _BATCH.get() if batched else None
        if batch is None:
            self.fsync()
        else:
            batch.add(self)

    def touch(self, name):
        """Set ``name``'s times to now, never through a link."""
        os.utime(_plain(name), dir_fd=self.fd, follow_symlinks=False)

    def open_regular(self, name, flags=os.O_RDONLY):
        """Open the regular file ``name``: never a link, never blocking.

        ``O_NOFOLLOW | O_NONBLOCK``, then ``fstat`` of what was opened: a
        link (ELOOP) or anything that is not a regular file (a FIFO, a
        device, a directory) is refused without waiting for a writer.

        :returns: a descriptor in blocking mode (close it).
        :raises: FileNotFoundError; UnsafePath.
        """
        fd = self._open_file(name, flags, 'file')
        os.set_blocking(fd, True)
        return fd

    def _open_file(self, name, flags, kind, mode=0o600):
        """``openat(name, flags | O_NOFOLLOW | O_NONBLOCK)``, then a regular
        file or UnsafePath (the descriptor closed)."""
        path = self.join(name)
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK |
                         os.O_CLOEXEC, mode, dir_fd=self.fd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                raise exception.UnsafePath(path=path, kind=kind,
                                           reason=e.strerror) from None
            raise
        try:
            check_regular(fd, path, kind=kind)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def same_file(self, name, fd):
        """True if ``name`` here is (still) the file open as ``fd``."""
        try:
            st = self.lstat(name)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    @contextlib.contextmanager
    def lock(self, name):
        """Hold an exclusive flock on the lock file ``name`` here.

        The lock file is created ``O_NOFOLLOW`` (mode 0600) and must be a
        regular file: a link planted at its name is neither followed nor
        created through. A flock belongs to one open file description, so
        threads of one process exclude each other too.

        The holder may remove the lock file (``unlink(name)``) before it
        lets go, when what the lock guards is gone: a waiter that then
        gets the flock of the removed file sees that it is no longer the
        file at ``name``, and locks the one there now.

        :yields: True if another holder had to be waited for (what it
            guards may have changed since the caller last looked), else
            False.
        :raises: UnsafePath for a planted link or FIFO (left alone).
        """
        waited = False
        while True:
            fd = self._open_file(name, os.O_RDWR | os.O_CREAT, 'lock file')
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    waited = True
                    fcntl.flock(fd, fcntl.LOCK_EX)
                if self.same_file(name, fd):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            waited = True
        try:
            yield waited
        finally:
            os.close(fd)


def check_regular(fd, path, kind='file'):
    """Raise UnsafePath unless ``fd`` is a regular file."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise exception.UnsafePath(path=path, kind=kind,
                                   reason='file type %o' % stat.S_IFMT(
                                       st.st_mode))
    return st


def _plain(name):
    if (not isinstance(name, str) or not name or name in ('.', '..') or
            '/' in name or '\0' in name):
        raise exception.InvalidName(kind='path component', name=name,
                                    reason='must be one plain name')
    return name


def open_root(path, create=False, mode=0o700, strict=True):
    """Open a configured service directory (``instances_path``...).

    The operator's path is followed as configured (it may well be a link
    to a mount); the directory it leads to must then be the service's own
    (``check_strict``): no one else can swap anything in it.

    :param create: make it and its missing parents (``mode``) first.
    :returns: Directory (its path absolute, as configured).
    :raises: FileNotFoundError, NotADirectoryError, UnsafeDirectory.
    """
    path = os.path.abspath(path)
    if create:
        os.makedirs(path, mode=mode, exist_ok=True)
    return _checked(os.open(path, _DIR_FLAGS), path, strict)


def _checked(fd, path, strict):
    """Directory of the open ``fd``, StrictModes-checked if ``strict``
    (``fd`` is closed if the check fails)."""
    try:
        if strict:
            check_strict(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return Directory(fd, path)


def open_parent(path, create=False, strict=True):
    """Open the directory of the file ``path``: its parent's parent as a
    configured root (``open_root``), the parent itself never through a
    link (``subdir``).

    :returns: (Directory, file name).
    """
    path = os.path.abspath(path)
    directory, name = os.path.split(path)
    parent, dirname = os.path.split(directory)
    _plain(name)
    if not dirname:
        return open_root(directory, strict=strict), name
    with open_root(parent, create=create, strict=False) as root:
        return root.subdir(dirname, create=create, strict=strict), name


def part_target(name):
    """The target whose ``Part`` is named ``name``, or None.

    ``disk`` for ``.disk.0123456789abcdef.part`` or ``...abcdef.raw.part``.
    """
    match = _PART_RE.match(name)
    return match.group('target') if match else None


def _part_names(target, suffix):
    """Candidate part names for ``target``: unpredictable, a few tries."""
    for _attempt in range(_NAME_ATTEMPTS):
        token = binascii.hexlify(os.urandom(_TOKEN_BYTES)).decode()
        yield '.%s.%s%s%s' % (target, token, suffix, PART_SUFFIX)


class Part:
    """A private file being made in ``directory``, for ``target``.

    Flocked while this process lives: the kernel drops the lock when the
    process dies, however it dies, which is how ``remove_stale_parts``
    tells a dead maker's leftover from a live one's. So that no sweep
    ever sees it unlocked, it is created unnamed (``O_TMPFILE``),
    ``mode`` set and flocked, and only then linked at an unpredictable
    name. Where the filesystem cannot (no ``O_TMPFILE``, as on NFS, or no
    hard links) it is created at that name ``O_EXCL | O_NOFOLLOW`` and
    then flocked: a sweep of the same target in between can remove it
    there. Use ``path`` (the descriptor, see ``fd_path``) for tools;
    ``publish`` when finished; ``discard`` on failure (``with`` does it
    if the block raises).

    :raises: FileExistsError if no free part name was found; OSError.
    """

    def __init__(self, directory, target, suffix='', mode=0o600):
        self.directory = directory
        self.target = _plain(target)
        self.fd = None
        self.name = None
        self.fd = self._create_unnamed(mode)
        if self.fd is not None:
            self._lock(mode)
            self._link_unnamed(suffix)
        if self.fd is None:
            self._create_named(suffix, mode)
            self._lock(mode)

    def _lock(self, mode):
        """Set ``mode`` and take the part's flock; discard it on any
        exception."""
        try:
            # umask must not decide who reads a file that others use (a
            # base).
            os.fchmod(self.fd, mode)
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            # Also an interrupt (Ctrl-C; SIGTERM in the CLI): no caller
            # holds this part yet to discard it, and once flocked by this
            # live process it would pass for a live maker's part.
            self.discard()
            raise

    def _create_unnamed(self, mode):
        """A new unnamed file in the directory (``O_TMPFILE``), its fd; or
        None where the filesystem or kernel cannot make one."""
        flag = getattr(os, 'O_TMPFILE', None)
        if flag is None:
            return None
        try:
            return os.open('.', flag | os.O_RDWR | os.O_CLOEXEC, mode,
                           dir_fd=self.directory.fd)
        except OSError as e:
            if e.errno in _NO_TMPFILE:
                return None
            raise

    def _link_unnamed(self, suffix):
        """Give the flocked unnamed part a free part name (``linkat`` of
        its descriptor, never replacing). Where the filesystem has no hard
        links, close it instead (``fd`` None: make a named part).

        :raises: FileExistsError if no name was free (the part discarded).
        """
        try:
            for name in _part_names(self.target, suffix):
                try:
                    os.link(self.path, name, dst_dir_fd=self.directory.fd,
                            follow_symlinks=True)
                except FileExistsError:
                    continue
                except OSError as e:
                    if e.errno not in _NO_LINK:
                        raise
                    self.close()
                    return
                self.name = name
                return
            raise FileExistsError(errno.EEXIST, 'no free part name',
                                  self.target_path)
        except BaseException:
            self.discard()
            raise

    def _create_named(self, suffix, mode):
        """Create the part at a free part name (``_create``)."""
        for name in _part_names(self.target, suffix):
            try:
                self.fd = self._create(name, mode)
            except FileExistsError:
                continue
            self.name = name
            return
        raise FileExistsError(errno.EEXIST, 'no free part name',
                              self.target_path)

    def _create(self, name, mode):
        """Create ``name`` exclusively, never through a link; its fd."""
        return os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL |
                       os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                       dir_fd=self.directory.fd)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.discard()
        else:
            self.close()

    @property
    def path(self):
        """The part's file itself, for a tool to open (see ``fd_path``)."""
        return fd_path(self.fd)

    @property
    def target_path(self):
        return self.directory.join(self.target)

    def still_ours(self):
        """True if the part's name still names the file we created."""
        return self.directory.same_file(self.name, self.fd)

    def fsync(self):
        os.fsync(self.fd)

    def publish(self, target=None, batched=False):
        """fsync the part and give it the name ``target``; never replace.

        ``linkat`` of the descriptor (``/proc/<pid>/fd/<n>``, followed):
        the file published is the one we made and wrote, whatever is at
        the part's name now. Where the filesystem has no hard links,
        ``renameat2(RENAME_NOREPLACE)`` of the part's name, after checking
        that it is still ours, and checked again once renamed (what was
        swapped in between is renamed back, and ESTALE raised). The
        part's name is then removed and the
        directory fsynced (with ``batched``, once at the end of the
        ``directory_syncs`` batch this thread is in, if any); if that fails
        here, the new name is taken back.

        :raises: FileExistsError (``filename`` = the target's path) if
            anything is at ``target``: it is left alone.
        """
        target = _plain(target or self.target)
        dest = self.directory.join(target)
        os.fsync(self.fd)
        try:
            os.link(self.path, target, dst_dir_fd=self.directory.fd,
                    follow_symlinks=True)
            linked = True
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, 'exists', dest) from None
        except OSError as e:
            if e.errno not in _NO_LINK:
                raise
            linked = False
        if not linked:
            if not self.still_ours():
                raise OSError(errno.ESTALE, 'part was replaced', dest)
            libc.rename_noreplace(self.directory.fd, self.name, target,
                                  dest)
            if not self.directory.same_file(target, self.fd):
                # Swapped in between the check and the rename: what now
                # has the target's name is not ours. It goes back to the
                # part's name (which is no longer ours either).
                libc.rename_noreplace(self.directory.fd, target, self.name,
                                      dest)
                raise OSError(errno.ESTALE, 'part was replaced', dest)
        try:
            if linked and self.still_ours():
                self.directory.unlink(self.name)
            self.directory.sync_entries(batched)
        except BaseException:
            if self.directory.same_file(target, self.fd):
                self.directory.unlink(target)
            raise
        self.close()
        return dest

    def discard(self, background=False):
        """Remove the part (if its name is still ours) and close it.

        :param background: close the descriptor in a thread of its own.
            The last close of a removed file frees its page cache, which
            takes 0.05-0.15 s per GiB here: a large download converted to
            another part need not wait for that. The name is removed now.
        """
        if self.fd is None:
            return
        try:
            if self.name is not None and self.still_ours():
                self.directory.unlink(self.name)
        finally:
            if background:
                fd, self.fd = self.fd, None
                threading.Thread(target=os.close, args=(fd,), daemon=True,
                                 name='close-part').start()
            else:
                self.close()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class PartDirectory(Part):
    """A private directory being made in ``directory``, for a ``target``
    that is a directory (a ploop disk: an image and its descriptor).

    As ``Part``: created exclusively (``mkdir``, then opened ``O_DIRECTORY
    | O_NOFOLLOW``) at an unpredictable name, ``mode`` (0700: nobody else
    can make, swap or read anything inside), flocked while its maker
    lives. A directory cannot be made unnamed: between its ``mkdir`` and
    its flock, a ``remove_stale_parts(directories=True)`` of the same
    target can remove it (its maker then fails). ``path`` is its
    descriptor, so ``path + '/name'`` reaches a file inside it whatever
    happens to its name; ``inside`` is the Directory of it. ``publish``
    fsyncs the files in it and renames it to ``target`` without replacing
    (a directory cannot be linked); ``discard`` removes it with everything
    in it, never following a link inside.
    """

    def _create_unnamed(self, mode):
        return None  # no O_TMPFILE for a directory

    def _create(self, name, mode):
        os.mkdir(name, mode, dir_fd=self.directory.fd)
        return os.open(name, _DIR_FLAGS | os.O_NOFOLLOW,
                       dir_fd=self.directory.fd)

    @property
    def inside(self):
        """The part as a Directory (sharing its descriptor: not closed)."""
        return Directory(self.fd, self.directory.join(self.name))

    def publish(self, target=None, batched=False):
        for name in os.listdir(self.fd):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK |
                         os.O_CLOEXEC, dir_fd=self.fd)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return super().publish(target, batched)

    def discard(self):
        if self.fd is None:
            return
        try:
            if self.name is not None and self.still_ours():
                shutil.rmtree(self.name, dir_fd=self.directory.fd)
        finally:
            self.close()


#: The ``DirectorySyncs`` of the ``directory_syncs`` block this thread
#: (context) is in, if any.
_BATCH = contextvars.ContextVar('staging_directory_syncs', default=None)


class DirectorySyncs:
    """Directories whose entries changed, to fsync once each (see
    ``directory_syncs``)."""

    def __init__(self):
        # (st_dev, st_ino) -> a descriptor of our own, so that the caller's
        # Directory can be closed before the batch ends.
        self._fds = {}
        # Threads that run in a copy of the batch's context add to it.
        self._lock = threading.Lock()

    def __len__(self):
        """Directories waiting for their fsync."""
        return len(self._fds)

    def add(self, directory):
        """fsync the Directory ``directory`` at ``sync()`` (once)."""
        st = os.fstat(directory.fd)
        key = (st.st_dev, st.st_ino)
        with self._lock:
            if key not in self._fds:
                self._fds[key] = os.dup(directory.fd)

    def sync(self):
        """fsync every directory added so far, once; close them.

        :raises: OSError of the first fsync that failed (every directory is
            still tried and closed).
        """
        with self._lock:
            fds, self._fds = self._fds, {}
        error = None
        for fd in fds.values():
            try:
                os.fsync(fd)
            except OSError as e:
                error = error or e
            finally:
                os.close(fd)
        if error is not None:
            raise error


@contextlib.contextmanager
def directory_syncs():
    """Batch the directory fsyncs of the publishes in the block.

    ``Part.publish`` fsyncs the file, links it, then fsyncs the directory
    so that the new name is durable. Inside this block the last step of a
    ``batched`` publish (or ``subdir`` made) is gathered instead: each
    such directory is fsynced once, by ``sync()`` on the yielded
    ``DirectorySyncs`` or at the end of the block. Publishes that others
    rely on at once (the image cache's bases, which disks name) are not
    batched. Each file is still fsynced before its name is linked, so a
    name only ever names a complete file; what waits is only that the
    names survive a crash. Use it where nothing relies on the names before
    the batch is synced (a spawn: the guest is defined only after its
    disks are synced; a crash before leaves disks that a retry keeps or
    makes again, and their records).

    Threads do not inherit the batch (a context variable): a publish in
    another thread fsyncs its directory at once, unless the thread runs in
    a copy of the block's context (``contextvars.copy_context().run``, as
    the disk manager's creates do), which adds to the batch.

    A block inside another joins the outer batch. Leaving the block by an
    exception syncs what was gathered without raising a second error.
    """
    if _BATCH.get() is not None:
        yield _BATCH.get()
        return
    batch = DirectorySyncs()
    token = _BATCH.set(batch)
    try:
        yield batch
    except BaseException:
        _BATCH.reset(token)
        token = None
        try:
            batch.sync()
        except OSError as e:
            LOG.warning('Could not sync directories after a failure: '
                        '%(err)s', {'err': e})
        raise
    finally:
        if token is not None:
            _BATCH.reset(token)
    batch.sync()


def _open_to_lock(directory, name):
    """Open the part ``name`` in ``directory`` to take its flock: for
    writing where it can be (on NFS an exclusive flock is a byte-range
    lock, which needs that), else read-only (a directory, a file this
    service may not write). Never follows a link, never blocks on a FIFO,
    never takes a terminal. What it opens is checked by the caller.
    """
    flags = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        return os.open(name, os.O_RDWR | flags, dir_fd=directory.fd)
    except OSError as e:
        if e.errno not in (errno.EISDIR, errno.EACCES, errno.EPERM,
                           errno.EROFS, errno.ETXTBSY):
            raise
    return os.open(name, os.O_RDONLY | flags, dir_fd=directory.fd)


def remove_stale_parts(directory, target=None, directories=False):
    """Remove the parts (of ``target``, or all) whose maker died.

    A part whose flock can be taken has no living maker. Only regular
    files with a part's name are removed (and, with ``directories``, the
    directories a ``PartDirectory`` makes, with what is in them, never
    following a link inside; a link at such a name is
    unlinked itself: the name is ours, its target never touched); a live
    maker's part is left alone. Errors are logged, never raised: a
    leftover never becomes a target (only a finished part is published).

    :returns: the number of parts removed.
    """
    removed = 0
    try:
        names = directory.listdir()
    except OSError:
        return 0
    for name in names:
        owner = part_target(name)
        if owner is None or (target is not None and owner != target):
            continue
        try:
            fd = _open_to_lock(directory, name)
        except FileNotFoundError:
            continue
        except OSError as e:
            if e.errno == errno.ELOOP:
                with contextlib.suppress(OSError):
                    directory.unlink(name)
                    removed += 1
            else:
                LOG.warning('Leaving %(path)s alone: %(err)s',
                            {'path': directory.join(name), 'err': e})
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live maker
        except OSError as e:
            # Whether its maker lives cannot be told (on NFS, a lock
            # manager that is down: ENOLCK): kept.
            os.close(fd)
            LOG.warning('Leaving %(path)s alone: cannot tell whether its '
                        'maker is alive: %(err)s',
                        {'path': directory.join(name), 'err': e})
            continue
        try:
            mode = os.fstat(fd).st_mode
            if not directory.same_file(name, fd):
                continue
            if stat.S_ISREG(mode):
                directory.unlink(name)
            elif directories and stat.S_ISDIR(mode):
                shutil.rmtree(name, dir_fd=directory.fd)
            else:
                continue
            removed += 1
            LOG.info('Removed %(path)s, left by an interrupted '
                     'operation', {'path': directory.join(name)})
        except OSError as e:
            LOG.warning('Could not remove stale %(path)s: %(err)s',
                        {'path': directory.join(name), 'err': e})
        finally:
            os.close(fd)
    return removed

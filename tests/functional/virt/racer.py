"""A hostile neighbour: swaps names in a shared directory while the
service works, and the host file it aims at.

``Racer`` is a thread that watches a directory with a retry loop (a
listdir per turn, yielding the GIL between turns) and replaces every entry
whose name matches with a symlink to its target, at the moment it appears:
a part file being written, a directory being used. It counts its swaps, so
a test can prove the race was run, not just hoped for.
"""

import os
import re
import threading
import time


class Victim:
    """A regular file outside the service's directories.

    ``assert_untouched()`` proves nothing wrote, truncated, replaced or
    removed it: same content, same mtime, same inode, still a regular file.
    """

    CONTENT = b'host secret: never copy, write or format me\n' * 2048

    def __init__(self, path):
        self.path = path
        self.arm()

    @classmethod
    def existing(cls, path):
        """A Victim of a file that exists (e.g. another instance's disk)."""
        victim = cls.__new__(cls)
        victim.path = path
        with open(path, 'rb') as f:
            victim.CONTENT = f.read()
        victim.stat = os.lstat(path)
        return victim

    def arm(self):
        """(Re)write the content and note the state to compare with (after
        a test's setup has used the file, e.g. as a qcow2's data-file)."""
        with open(self.path, 'wb') as f:
            f.write(self.CONTENT)
        past = time.time() - 3600
        os.utime(self.path, (past, past))
        self.stat = os.lstat(self.path)

    def assert_untouched(self):
        st = os.lstat(self.path)
        assert (st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns) == (
            self.stat.st_ino, self.stat.st_mode, self.stat.st_size,
            self.stat.st_mtime_ns), 'the victim was touched'
        with open(self.path, 'rb') as f:
            assert f.read() == self.CONTENT, 'the victim was changed'


class Racer(threading.Thread):
    """Replace entries of ``directory`` matching ``pattern`` by a symlink
    to ``target`` as soon as they appear, until ``stop()``.

    :param swap: optional ``swap(path)`` doing the replacement instead
        (e.g. for a directory).
    """

    def __init__(self, directory, pattern, target, swap=None):
        super().__init__(daemon=True, name='racer')
        self.directory = directory
        self.pattern = re.compile(pattern)
        self.target = target
        self.swaps = 0
        self._swap = swap or self._symlink
        self._stopped = threading.Event()

    def _symlink(self, path):
        os.unlink(path)
        os.symlink(self.target, path)

    def run(self):
        while not self._stopped.is_set():
            try:
                names = os.listdir(self.directory)
            except OSError:
                names = []
            for name in names:
                path = os.path.join(self.directory, name)
                if not self.pattern.match(name) or os.path.islink(path):
                    continue
                try:
                    self._swap(path)
                    self.swaps += 1
                except OSError:
                    pass  # gone or changed meanwhile: next turn
            time.sleep(0)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def stop(self):
        self._stopped.set()
        self.join()

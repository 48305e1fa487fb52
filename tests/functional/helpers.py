"""Helpers shared by every package of the functional tests.

``ROOT`` and ``module_argv`` start a worker module of this tree in a
process of its own, as ``python -m tests.<...>`` from ``ROOT``, so that
it imports this tree's ``tests`` and ``nova`` whatever the caller's
working directory (pass ``cwd=ROOT``). ``qemu_info`` is the one reading
of ``qemu-img info`` the tests compare records with.
"""

import json
import os
import subprocess
import sys
import time

#: The top of the source tree (the directory holding ``nova`` and
#: ``tests``).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def module_argv(module, *args):
    """argv running the module ``module`` (dotted, e.g.
    ``tests.functional.virt.fetch_child``) with this interpreter; run it
    with ``cwd=ROOT``."""
    return [sys.executable, '-m', module, *args]


def qemu_info(path, fmt):
    """``qemu-img info`` of ``path`` read as ``fmt`` (pinned, never
    probed), as a dict; ``-U`` so that a disk a guest or another process
    holds open can be read too."""
    out = subprocess.run(
        ['qemu-img', 'info', '--output=json', '-U', '-f', fmt, path],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def lock_waiters(path):
    """How many flocks wait for the lock file at ``path`` now
    (``/proc/locks``: a blocked request is a line with ``->``)."""
    inode = ':%d ' % os.stat(path).st_ino
    with open('/proc/locks') as f:
        return sum(1 for line in f if '->' in line and inode in line)


def wait_for_a_waiter(path, worker):
    """Return once a flock waits for the lock file at ``path``; fail if
    ``worker`` (a Future) ended first."""
    while not lock_waiters(path):
        assert worker.running(), worker.result()
        time.sleep(0.01)

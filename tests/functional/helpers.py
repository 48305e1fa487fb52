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

"""Helpers shared by the benchmarks in this directory (not a benchmark
itself: run-benchmarks.sh runs bench_*.py only)."""

import json
import logging
import os
import subprocess
import tempfile
import time

import nova.conf
from nova import objects

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPSTREAM_DRIVER = os.path.join(ROOT, 'bench', 'upstream_disks.py')


def run(*cmd, **kwargs):
    """Run ``cmd`` (checked); return the CompletedProcess, text output."""
    return subprocess.run([str(c) for c in cmd], check=True,
                          capture_output=True, text=True, **kwargs)


def drop_caches():
    """Write back and drop the page cache, as root (a cold start)."""
    os.sync()
    with open('/proc/sys/vm/drop_caches', 'w') as f:
        f.write('3\n')


def upstream_python():
    """Upstream Nova 34.0.0's python (NOVA_TEST_UPSTREAM_PYTHON, else
    made or found by tools/upstream/venv.sh)."""
    found = os.environ.get('NOVA_TEST_UPSTREAM_PYTHON')
    if found:
        return found
    out = run('bash', os.path.join(ROOT, 'tools', 'upstream', 'venv.sh'))
    for line in out.stdout.splitlines():
        if line.startswith('NOVA_TEST_UPSTREAM_PYTHON='):
            return line.split('=', 1)[1]
    raise RuntimeError('tools/upstream/venv.sh named no python')


def upstream_disks(work, image_path, disk_format, instances, fresh,
                   backend='qcow2', ephemerals=0, swap_mb=0, root_gb=4):
    """Upstream creating one instance's disks (bench/upstream_disks.py);
    ``fresh`` empties its image cache and drops the page cache first.

    :returns: its JSON report (``disks_s``, ``commands``, ``fetches``).
    """
    args = [upstream_python(), '-P', UPSTREAM_DRIVER, '--image', image_path,
            '--disk-format', disk_format, '--images-type', backend,
            '--instances-path', instances, '--root-gb', root_gb,
            '--ephemerals', ephemerals, '--swap-mb', swap_mb]
    if fresh:
        args += ['--fresh', '--drop-caches']
    # cwd outside the checkout: its nova/ must not shadow upstream's.
    out = run(*args, cwd=work,
              env=dict(os.environ, OS_NOVA_DISABLE_EVENTLET_PATCHING='1',
                       PYTHONWARNINGS='ignore'))
    return json.loads(out.stdout.strip().splitlines()[-1])


class DiskTimer:
    """Seconds spent in DiskManager.create_local_disks (pass-through)."""

    def __init__(self, manager):
        self.seconds = 0.0
        real = manager.create_local_disks

        def create_local_disks(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        manager.create_local_disks = create_local_disks


def start(prefix, directory=None):
    """Configure nova for a benchmark (no config files, warnings only)
    and return a new work directory (default in /var/tmp, not tmpfs,
    whose writes never reach storage)."""
    nova.conf.CONF([], project='nova', default_config_files=[],
                   default_config_dirs=[])
    logging.basicConfig(level=logging.WARNING)
    objects.register_all()
    return tempfile.mkdtemp(prefix=prefix, dir=directory or '/var/tmp')

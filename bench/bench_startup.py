#!/usr/bin/env python3
"""Start-up cost of the nova-libvirt command, one run.

Prints the whole-process wall time (fork, interpreter start, imports,
configuration, the command itself, exit) of ``nova-libvirt --help``,
``list`` and ``show`` next to three baselines measured in the same run:
``python -c pass`` (the interpreter alone), ``python -c "import
oslo_config"`` (the least a command configured by oslo.config loads) and
the database libraries alone (oslo.config, SQLAlchemy and oslo.db's
enginefacade: the least a command that reads the database loads). Ratios
against the baselines are the result; absolute times on these machines
are noise. Never asserts on time.

``list`` and ``show`` run against a private state directory holding one
instance, booted once before timing on the embedded defaults (SQLite,
libvirt's test driver)::

    .venv/bin/python bench/bench_startup.py [--reps 15]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


_DB_LIBRARIES = ('import oslo_config.cfg, sqlalchemy, '
                 'oslo_db.sqlalchemy.enginefacade')


def _script():
    script = os.path.join(os.path.dirname(sys.executable), 'nova-libvirt')
    if os.path.exists(script):
        return [script]
    return [sys.executable, '-m', 'nova.cmd.libvirt']


def _timed(cases, env, reps):
    """Median and minimum wall time (s) of each case's command over
    ``reps`` rounds. Each round runs every case once, so that a change in
    the machine's load falls on all of them alike."""
    times = {label: [] for label, _ in cases}
    for _ in range(reps):
        for label, cmd in cases:
            start = time.perf_counter()
            subprocess.run(cmd, env=env, check=True,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            times[label].append(time.perf_counter() - start)
    return [(label, (statistics.median(times[label]), min(times[label])))
            for label, _ in cases]


def _prepare(state, env):
    """One image and one instance in ``state``; returns the instance's
    uuid."""
    conf = os.path.join(state, 'nova.conf')
    with open(conf, 'w') as f:
        f.write('[DEFAULT]\nstate_path = %s\n' % state)
    base = _script() + ['--config-file', conf, '--format', 'json']
    raw = os.path.join(state, 'image.raw')
    with open(raw, 'wb') as f:
        f.truncate(16 << 20)
    image = json.loads(subprocess.run(
        base + ['image-import', raw, '--disk-format', 'raw'], env=env,
        check=True, capture_output=True, text=True).stdout)
    instance = json.loads(subprocess.run(
        base + ['boot', '--image', image['id']], env=env, check=True,
        capture_output=True, text=True).stdout)
    return conf, instance['uuid']


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--reps', type=int, default=15,
                        help='Runs of each command (the median counts).')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix='bench-startup-') as state:
        env = dict(os.environ, HOME=os.path.join(state, 'home'))
        conf, uuid = _prepare(state, env)
        cli = _script() + ['--config-file', conf]
        cases = [
            ('python -c pass', [sys.executable, '-c', 'pass']),
            ('python -c "import oslo_config"',
             [sys.executable, '-c', 'import oslo_config.cfg']),
            ('python -c "import <db libraries>"',
             [sys.executable, '-c', _DB_LIBRARIES]),
            ('nova-libvirt --help', cli + ['--help']),
            ('nova-libvirt list', cli + ['list']),
            ('nova-libvirt show', cli + ['show', uuid]),
        ]
        results = _timed(cases, env, args.reps)
    bare = results[0][1][0]
    oslo = results[1][1][0]
    dblibs = results[2][1][0]
    print('%-36s %9s %9s %8s %13s %10s' % (
        'command', 'median', 'min', 'x pass', 'x oslo_config', 'x db libs'))
    for label, (median, fastest) in results:
        print('%-36s %7.0fms %7.0fms %7.1fx %12.1fx %9.1fx' % (
            label, median * 1000, fastest * 1000, median / bare,
            median / oslo, median / dblibs))


if __name__ == '__main__':
    main()

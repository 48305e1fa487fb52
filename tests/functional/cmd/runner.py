"""Running the console scripts as a user runs them: in a subprocess, on a
private state directory (a config file naming it, or an empty HOME for
the embedded defaults)."""

import json
import os
import subprocess
import sys


def script(name='nova-libvirt'):
    """The console script ``name`` of this venv (or its module)."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(path):
        return [path]
    module = {'nova-libvirt': 'nova.cmd.libvirt',
              'nova-manage': 'nova.cmd.manage'}[name]
    return [sys.executable, '-m', module]


class CLI:
    """Runs nova-libvirt with a config file whose state_path is private."""

    def __init__(self, tmp_path, extra_conf='', state=None):
        self.state = state or tmp_path / 'state'
        self.conf = tmp_path / 'nova.conf'
        self.conf.write_text('[DEFAULT]\nstate_path = %s\n%s' % (
            self.state, extra_conf))
        self.env = dict(os.environ, HOME=str(tmp_path / 'home'))

    def command(self, *args, fmt='json'):
        return script() + ['--config-file', str(self.conf),
                           '--format', fmt] + list(args)

    def run(self, *args, check=True, fmt='json'):
        cmd = self.command(*args, fmt=fmt)
        result = subprocess.run(cmd, capture_output=True, text=True,
                                env=self.env, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError('%s exited %d\nstdout: %s\nstderr: %s' % (
                ' '.join(cmd), result.returncode, result.stdout,
                result.stderr))
        return result

    def json(self, *args):
        return json.loads(self.run(*args).stdout)

    def popen(self, *args):
        return subprocess.Popen(self.command(*args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env=self.env)


def make_qcow2(path, size='1G'):
    raw = str(path) + '.raw'
    with open(raw, 'wb') as f:
        f.write(b'cli!' * 65536)
        f.truncate(64 << 20)
    subprocess.run(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2',
                    raw, str(path)], check=True)
    if size:
        subprocess.run(['qemu-img', 'resize', '-q', '-f', 'qcow2', str(path),
                        size], check=True)
    return str(path)


def make_raw(path, size=16 << 20):
    with open(path, 'wb') as f:
        f.write(b'raw!' * 4096)
        f.truncate(size)
    return str(path)


def assert_one_line_error(result, *words, status=1):
    """``result`` failed with ``status`` and one line on stderr that
    contains every one of ``words``, and no traceback."""
    assert result.returncode == status, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 or status == 2, result.stderr
    assert 'Traceback' not in result.stderr
    for word in words:
        assert word in lines[-1], (word, result.stderr)
    return lines[-1]

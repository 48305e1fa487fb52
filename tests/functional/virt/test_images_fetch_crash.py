"""SIGKILL a fetch at every stage, then retry: the retry succeeds and
nothing a dead fetch left can be mistaken for the image."""

import os
import signal
import subprocess
import time

import pytest

from nova.virt import images
from tests.functional import helpers as func_helpers
from tests.functional import hostile_images as hostile
from tests.functional.virt import helpers

ctx = helpers.ctx
store = helpers.store
image_api = helpers.image_api
base_dir = helpers.base_dir

MiB = hostile.MiB
SIZE = 32 * MiB
DATA_AT = ((0, 8 * MiB), (16 * MiB, 8 * MiB))


def _parts(directory):
    return [n for n in os.listdir(directory) if n.endswith('.part')]


class Child:
    """A fetch_child process in its own process group."""

    def __init__(self, store, image_id, target, output_format, crash):
        self.proc = subprocess.Popen(
            func_helpers.module_argv(
                'tests.functional.virt.fetch_child', store.root, image_id,
                target, output_format, crash),
            cwd=func_helpers.ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True)

    def wait_for(self, prefix):
        """Read stdout until a line starting with ``prefix``."""
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line
        raise AssertionError('child ended before %r: %s' % (
            prefix, self.proc.stderr.read()))

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.wait()

    def wait(self):
        self.proc.wait(timeout=60)
        self.proc.stdout.close()
        self.proc.stderr.close()
        # A qemu-img (or a fork about to exec it) dies a little after the
        # python process; until it has, it may still hold the part's lock,
        # as a live fetch would. A restarted service sees them all gone.
        deadline = time.monotonic() + 30
        while _group_alive(self.proc.pid):
            assert time.monotonic() < deadline, 'process group survived'
            time.sleep(0.01)
        return self.proc.returncode


def _group_alive(pgid):
    """True while a process of group ``pgid`` runs (zombies do not)."""
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % pid) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != 'Z':
            return True
    return False


@pytest.fixture(params=['raw', 'qcow2'])
def image(request, ctx, image_api, src_dir):
    """(image_id, disk_format) of a 32 MiB image with 16 MiB of data."""
    fmt = request.param
    build = hostile.raw if fmt == 'raw' else hostile.qcow2
    src = build(os.path.join(src_dir, 'img.' + fmt), SIZE, DATA_AT)
    return image_api.import_file(ctx, src, fmt)['id'], fmt


def _retry_succeeds(ctx, image_api, image_id, target):
    result = images.fetch_verified(ctx, image_api, image_id, target, 'raw')
    assert result.virtual_size == SIZE
    assert os.path.getsize(target) == SIZE
    # The stale part is gone, not just ignored.
    assert helpers.leftovers(os.path.dirname(target)) == ['base']
    return result


@pytest.mark.parametrize('crash', ['download:1', 'download:%d' % (4 * MiB),
                                   'download:%d' % SIZE, 'publish'])
def test_killed_fetch_then_retry(ctx, store, image_api, base_dir, image,
                                 crash):
    image_id, fmt = image
    target = os.path.join(base_dir, 'base')
    if crash.startswith('download:') and int(crash.split(':')[1]) > 1:
        if fmt == 'qcow2':
            # A qcow2 of 16 MiB of data is smaller than SIZE: stop at its
            # last chunk instead.
            crash = 'download:%d' % min(int(crash.split(':')[1]),
                                        image_api.get(ctx, image_id)['size'])

    rc = Child(store, image_id, target, 'raw', crash).wait()

    assert rc == -signal.SIGKILL
    assert not os.path.lexists(target)
    # The crash left a partial file behind, under a name that is never
    # the target's, with data in it that a retry must not trust.
    assert len(_parts(base_dir)) >= 1
    _retry_succeeds(ctx, image_api, image_id, target)


def test_killed_during_conversion_then_retry(ctx, store, image_api,
                                             src_dir, base_dir):
    src = hostile.qcow2(os.path.join(src_dir, 'img.qcow2'), SIZE, DATA_AT)
    image_id = image_api.import_file(ctx, src, 'qcow2')['id']
    target = os.path.join(base_dir, 'base')
    child = Child(store, image_id, target, 'raw', 'convert')
    child.wait_for('converting')

    assert child.kill() == -signal.SIGKILL

    assert not os.path.lexists(target)
    assert _parts(base_dir)
    _retry_succeeds(ctx, image_api, image_id, target)


def test_live_fetch_part_is_never_removed(ctx, store, image_api, base_dir,
                                          image):
    image_id, _fmt = image
    target = os.path.join(base_dir, 'base')
    child = Child(store, image_id, target, 'raw', 'slow:30')
    try:
        child.wait_for('chunk')
        parts = _parts(base_dir)
        assert len(parts) == 1
        # Another fetch starting now (without the cache's lock, which
        # would prevent it) must leave the live one's file alone.
        assert images.remove_stale_parts(target) == 0
        assert _parts(base_dir) == parts
    finally:
        child.kill()
    assert images.remove_stale_parts(target) == 1
    assert _parts(base_dir) == []


def test_stale_parts_of_other_targets_are_left_alone(base_dir):
    other = os.path.join(base_dir, '.other.0123456789abcdef.part')
    mine = os.path.join(base_dir, '.base.0123456789abcdef.part')
    lookalike = os.path.join(base_dir, '.base.not-a-token.part')
    for path in (other, mine, lookalike):
        open(path, 'w').close()
    assert images.remove_stale_parts(os.path.join(base_dir, 'base')) == 1
    assert sorted(os.listdir(base_dir)) == sorted(
        os.path.basename(p) for p in (other, lookalike))


def test_completed_child_fetch(ctx, store, image_api, base_dir, image):
    image_id, _fmt = image
    target = os.path.join(base_dir, 'base')
    child = Child(store, image_id, target, 'raw', 'none')
    child.wait_for('done')
    assert child.wait() == 0
    assert helpers.leftovers(base_dir) == ['base']


@pytest.mark.parametrize('limit', [512 * 1024, 20 * MiB])
def test_full_disk_is_a_typed_error_and_leaves_nothing(ctx, store, base_dir,
                                                       image, limit):
    # RLIMIT_FSIZE makes writes fail with EFBIG, as a full disk fails with
    # ENOSPC: in the download (512 KiB; 20 MiB for the raw image, whose
    # data reaches 24 MiB) or, for the qcow2 (16 MiB), when the raw copy
    # of 32 MiB is made.
    image_id, fmt = image
    target = os.path.join(base_dir, 'base')
    child = Child(store, image_id, target, 'raw', 'fsize:%d' % limit)
    line = child.wait_for('error')
    assert child.wait() == 0
    assert line.split()[1] == 'ImageFetchFailed', line
    assert helpers.leftovers(base_dir) == []

"""fetch_verified with real qemu-img: honest images, hostile images, and
what is left on disk either way."""

import json
import os

import pytest

from nova import exception
from nova.virt import images
from nova.virt import sparse
from nova.virt import staging
from tests.functional import helpers as func_helpers
from tests.functional import hostile_images as hostile
from tests.functional import page_cache
from tests.functional.virt import helpers

# Fixtures, by name (no conftest here).
ctx = helpers.ctx
store = helpers.store
image_api = helpers.image_api
base_dir = helpers.base_dir

allocated = helpers.allocated
leftovers = helpers.leftovers
same_content = helpers.same_content
CountingAPI = helpers.CountingAPI

MiB = hostile.MiB
KiB = hostile.KiB

# Data at the start, in the middle and in the very last block: holes
# between, and the file's length must survive a trailing hole too.
SIZE = 48 * MiB
DATA_AT = ((0, 3 * MiB), (20 * MiB, 1 * MiB), (SIZE - 64 * KiB, 64 * KiB))
DATA = hostile.data_bytes(DATA_AT)


def _within(actual, expected, fraction=0.05):
    return abs(actual - expected) <= expected * fraction


# --- honest images ---------------------------------------------------------

@pytest.mark.parametrize('output_format', ['raw', 'qcow2'])
def test_qcow2_image(ctx, store, image_api, src_dir, base_dir,
                     output_format):
    src = hostile.qcow2(os.path.join(src_dir, 'img.qcow2'), SIZE, DATA_AT)
    image_id = image_api.import_file(ctx, src, 'qcow2')['id']
    target = os.path.join(base_dir, 'base')
    calls = []

    result = images.fetch_verified(
        ctx, image_api, image_id, target, output_format,
        progress=lambda done, total: calls.append((done, total)))

    assert result == images.VerifiedImage(
        format=output_format, virtual_size=SIZE, disk_format='qcow2',
        size=os.path.getsize(src))
    info = func_helpers.qemu_info(target, output_format)
    assert info['virtual-size'] == SIZE
    assert 'backing-filename' not in info
    assert same_content(src, 'qcow2', target, output_format)
    if output_format == 'raw':
        assert os.path.getsize(target) == SIZE
        assert _within(allocated(target), DATA)
    else:
        # Kept as it was published: the same bytes.
        with open(src, 'rb') as a, open(target, 'rb') as b:
            assert a.read() == b.read()
    assert leftovers(base_dir) == ['base']
    assert oct(os.stat(target).st_mode & 0o777) == oct(0o600)
    assert calls[-1] == (os.path.getsize(src), os.path.getsize(src))
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


def test_raw_image_stays_sparse(ctx, image_api, src_dir, base_dir):
    src = hostile.raw(os.path.join(src_dir, 'img.raw'), SIZE, DATA_AT)
    image_id = image_api.import_file(ctx, src, 'raw')['id']
    target = os.path.join(base_dir, 'base')

    result = images.fetch_verified(ctx, image_api, image_id, target, 'raw')

    assert result == images.VerifiedImage(
        format='raw', virtual_size=SIZE, disk_format='raw', size=SIZE)
    assert os.path.getsize(target) == SIZE
    assert _within(allocated(target), DATA)
    assert same_content(src, 'raw', target, 'raw')
    assert leftovers(base_dir) == ['base']


@pytest.mark.parametrize('disk_format', ['raw', 'qcow2'])
def test_kept_download_is_written_out_during_the_fetch(
        ctx, image_api, src_dir, base_dir, monkeypatch, disk_format):
    # A download that becomes the base as it is is handed to the disk as
    # it comes, so that the fsync that publishes it is short. (One that is
    # converted is not: it is removed unsynced, and its writes would only
    # compete with the conversion's.)
    size = 3 * sparse.WRITEBACK_BATCH
    make = hostile.raw if disk_format == 'raw' else hostile.qcow2
    src = make(os.path.join(src_dir, 'img'), size, ((0, size),))
    image_id = image_api.import_file(ctx, src, disk_format)['id']
    published = []
    publish = staging.Part.publish

    def spy(part, *args, **kwargs):
        published.append(page_cache.stat(part.fd, 0, sparse.WRITEBACK_BATCH))
        return publish(part, *args, **kwargs)
    monkeypatch.setattr(staging.Part, 'publish', spy)

    images.fetch_verified(ctx, image_api, image_id,
                          os.path.join(base_dir, 'base'), disk_format)

    assert [stat.dirty for stat in published] == [0]
    assert same_content(src, disk_format, os.path.join(base_dir, 'base'),
                        disk_format)
    assert leftovers(base_dir) == ['base']


def test_raw_image_detected_as_gpt_is_raw(ctx, store, image_api, src_dir,
                                          base_dir):
    src = hostile.gpt(os.path.join(src_dir, 'gpt.raw'))
    image_id = hostile.plant(store, src, 'raw')
    target = os.path.join(base_dir, 'base')

    result = images.fetch_verified(ctx, image_api, image_id, target, 'raw')

    assert result.format == 'raw'
    assert result.virtual_size == os.path.getsize(src)
    assert same_content(src, 'raw', target, 'raw')


def test_qcow2_version_2(ctx, image_api, src_dir, base_dir):
    src = hostile.qcow2(os.path.join(src_dir, 'v2.qcow2'), compat='0.10')
    image_id = image_api.import_file(ctx, src, 'qcow2')['id']
    target = os.path.join(base_dir, 'base')
    images.fetch_verified(ctx, image_api, image_id, target, 'raw')
    assert same_content(src, 'qcow2', target, 'raw')


@pytest.mark.parametrize('output_format', ['raw', 'iso'])
def test_iso_image_is_raw_on_disk(ctx, image_api, src_dir, base_dir,
                                  output_format):
    src = hostile.iso(os.path.join(src_dir, 'cd.iso'))
    image_id = image_api.import_file(ctx, src, 'iso')['id']
    target = os.path.join(base_dir, 'base')
    result = images.fetch_verified(ctx, image_api, image_id, target,
                                   output_format)
    assert result.format == 'raw'
    assert result.disk_format == 'iso'
    assert same_content(src, 'raw', target, 'raw')


# 512-byte clusters are checked without a fetch: qemu-img check of so many
# clusters fails now and then under QEMU_IMG_LIMITS' address space
# ("qemu_thread_create: Resource temporarily unavailable"), whatever the
# bound; the fetch would refuse them as damaged.
@pytest.mark.parametrize('options,fetch', [
    ([], True), (['-c'], True), (['-o', 'preallocation=full'], True),
    (['-o', 'cluster_size=2M'], True),
    (['-c', '-o', 'cluster_size=2M'], True), (['-o', 'compat=0.10'], True),
    (['-o', 'cluster_size=512'], False),
    (['-o', 'cluster_size=512,refcount_bits=64,preallocation=full'], False),
], ids=repr)
def test_qcow2_layouts_fit_the_byte_bound(ctx, store, image_api, src_dir,
                                          base_dir, options, fetch):
    # Every layout qemu-img makes ends where qemu-img check says it does
    # and is no larger than qcow2_max_bytes, even fully allocated.
    src_raw = hostile.raw(os.path.join(src_dir, 'img.raw'), SIZE, DATA_AT)
    src = os.path.join(src_dir, 'img.qcow2')
    hostile.qemu_img('convert', '-q', '-f', 'raw', '-O', 'qcow2', *options,
                     src_raw, src)
    size = os.path.getsize(src)
    assert size <= images.qcow2_max_bytes(SIZE)
    check = json.loads(hostile.qemu_img('check', '--output=json', '-f',
                                        'qcow2', src))
    assert size <= check['image-end-offset']
    if not fetch:
        return
    image_id = hostile.plant(store, src, 'qcow2')
    target = os.path.join(base_dir, 'base')
    result = images.fetch_verified(ctx, image_api, image_id, target,
                                   'qcow2', max_virtual_size=SIZE)
    assert result.size == size
    assert same_content(src, 'qcow2', target, 'qcow2')


def test_qcow2_padding_is_refused_at_its_header(ctx, store, image_api,
                                                src_dir, base_dir):
    src = hostile.qcow2_padded(os.path.join(src_dir, 'img'),
                               padding=200 * MiB)
    image_id = hostile.plant(store, src, 'qcow2')
    api = CountingAPI(image_api)
    with pytest.raises(exception.ImageDamaged):
        images.fetch_verified(ctx, api, image_id,
                              os.path.join(base_dir, 'base'), 'qcow2',
                              max_virtual_size=1 << 30)
    assert api.downloaded <= 2 * MiB
    assert leftovers(base_dir) == []


def test_max_virtual_size_equal_is_accepted(ctx, image_api, src_dir,
                                            base_dir):
    src = hostile.qcow2(os.path.join(src_dir, 'img.qcow2'), SIZE, DATA_AT)
    image_id = image_api.import_file(ctx, src, 'qcow2')['id']
    result = images.fetch_verified(ctx, image_api, image_id,
                                   os.path.join(base_dir, 'base'), 'raw',
                                   max_virtual_size=SIZE)
    assert result.virtual_size == SIZE


# --- refusals that are the caller's mistake --------------------------------

@pytest.fixture
def raw_image(ctx, image_api, src_dir):
    return image_api.import_file(
        ctx, hostile.raw(os.path.join(src_dir, 'img.raw')), 'raw')['id']


@pytest.mark.parametrize('output_format', ['qcow2', 'vmdk', None, 'RAW'])
def test_output_format_must_be_raw_or_declared(ctx, image_api, raw_image,
                                               base_dir, output_format):
    with pytest.raises(exception.InvalidInput):
        images.fetch_verified(ctx, image_api, raw_image,
                              os.path.join(base_dir, 'base'), output_format)
    assert leftovers(base_dir) == []


def test_existing_target_is_never_replaced(ctx, image_api, raw_image,
                                           base_dir):
    target = os.path.join(base_dir, 'base')
    with open(target, 'w') as f:
        f.write('precious')
    with pytest.raises(exception.InvalidInput):
        images.fetch_verified(ctx, image_api, raw_image, target, 'raw')
    with open(target) as f:
        assert f.read() == 'precious'
    assert leftovers(base_dir) == ['base']


def test_target_appearing_during_the_fetch_is_kept(
        ctx, image_api, raw_image, base_dir):
    target = os.path.join(base_dir, 'base')

    def theirs_appears(downloaded):
        # Another maker of the same target, mid-download: after the
        # fetch checked that the target is free, before it publishes.
        if not os.path.exists(target):
            with open(target, 'x') as f:
                f.write('theirs')
    api = CountingAPI(image_api, hook=theirs_appears)
    with pytest.raises(exception.InvalidInput):
        images.fetch_verified(ctx, api, raw_image, target, 'raw')
    assert api.downloaded > 0
    with open(target) as f:
        assert f.read() == 'theirs'
    assert leftovers(base_dir) == ['base']


def test_failed_publish_leaves_nothing(ctx, image_api, raw_image, base_dir,
                                       monkeypatch):
    # The target is linked, then the directory's fsync fails: the fetch
    # fails and takes its target with it. Faked: no filesystem here fails
    # a directory fsync (EIO from the disk) on demand, and no real fault
    # reaches the step between the link and that fsync.
    def eio(directory):
        raise OSError(5, 'Input/output error')
    monkeypatch.setattr(staging.Directory, 'fsync', eio)
    with pytest.raises(exception.ImageFetchFailed):
        images.fetch_verified(ctx, image_api, raw_image,
                              os.path.join(base_dir, 'base'), 'raw')
    assert leftovers(base_dir) == []


def test_symlink_target_is_never_followed(ctx, image_api, raw_image,
                                          base_dir, tmp_path):
    outside = tmp_path / 'outside'
    target = os.path.join(base_dir, 'base')
    os.symlink(outside, target)
    with pytest.raises(exception.InvalidInput):
        images.fetch_verified(ctx, image_api, raw_image, target, 'raw')
    assert not outside.exists()
    assert leftovers(base_dir) == ['base']


def _tree(top):
    """Every path under ``top``, with its kind: what a refusal must keep."""
    found = []
    for path, dirs, files in os.walk(top):
        found += [(os.path.relpath(os.path.join(path, name), top), kind)
                  for kind, names in (('dir', dirs), ('file', files))
                  for name in names]
    return sorted(found)


@pytest.mark.parametrize('target', [
    'relative/base', '', '{t}/missing/x', '{t}/', '{t}/\0x', '{t}/.',
    '{t}/..'])
def test_bad_target(ctx, image_api, raw_image, tmp_path, monkeypatch,
                    target):
    # Every target is in (or relative to) this test's directory, which
    # is the working directory: whatever a wrong acceptance would write
    # lands where the check below sees it.
    (tmp_path / 'relative').mkdir()
    (tmp_path / 't').mkdir()
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    with pytest.raises(exception.InvalidInput):
        images.fetch_verified(ctx, image_api, raw_image,
                              target.format(t=tmp_path / 't'), 'raw')
    assert _tree(tmp_path) == before


def test_unknown_image(ctx, image_api, base_dir):
    with pytest.raises(exception.ImageNotFound):
        images.fetch_verified(ctx, image_api,
                              'c1f9d9b0-8a3c-4e8e-9b67-2b1b8a4d2f10',
                              os.path.join(base_dir, 'base'), 'raw')
    assert leftovers(base_dir) == []


@pytest.mark.parametrize('image_id', ['../../etc/passwd', '/etc/passwd',
                                      'abc\0', ''])
def test_bad_image_id(ctx, image_api, base_dir, image_id):
    with pytest.raises(exception.InvalidUUID):
        images.fetch_verified(ctx, image_api, image_id,
                              os.path.join(base_dir, 'base'), 'raw')
    assert leftovers(base_dir) == []


# --- hostile images ----------------------------------------------------------

def _outputs(case):
    return sorted({'raw', case.declared})


@pytest.mark.parametrize('case,output_format', [
    pytest.param(case, out, id='%s->%s' % (case.name, out))
    for case in hostile.CASES for out in _outputs(case)])
def test_hostile_image_is_refused(ctx, store, image_api, src_dir, base_dir,
                                  case, output_format):
    src = case.build(os.path.join(src_dir, case.name))
    image_id = hostile.plant(store, src, case.declared, **case.meta)
    if case.after:
        case.after(store, image_id)
    target = os.path.join(base_dir, 'base')

    with pytest.raises(exception.NovaException) as excinfo:
        images.fetch_verified(ctx, image_api, image_id, target,
                              output_format,
                              max_virtual_size=case.max_virtual_size)

    assert type(excinfo.value) is case.error, excinfo.value
    assert excinfo.value.kwargs.get('image_id') == image_id
    assert leftovers(base_dir) == []


@pytest.mark.parametrize('build,declared,max_virtual_size', [
    (hostile.qcow2, 'raw', None),
    (hostile.qcow2_with_backing_file, 'qcow2', None),
    (hostile.vmdk_sparse, 'raw', None),
    (hostile.raw, 'qcow2', None),
    (hostile.qcow2_bomb, 'qcow2', 1 << 30),
    # Undecided inspectors (a VHDX region table in its header cluster):
    # its own qcow2 header still refuses it within images.MAX_PENDING.
    (hostile.qcow2_bomb_undecided, 'qcow2', 1 << 30),
], ids=['qcow2-as-raw', 'backing-file', 'vmdk-as-raw', 'raw-as-qcow2',
        'bomb', 'bomb-undecided'])
def test_refused_as_soon_as_the_header_is_read(ctx, store, image_api,
                                               src_dir, base_dir, build,
                                               declared, max_virtual_size):
    # Padded to 32 MiB so that a late refusal would show in the count.
    src = build(os.path.join(src_dir, 'img'))
    with open(src, 'r+b') as f:
        f.truncate(max(os.path.getsize(src), 32 * MiB))
        f.seek(31 * MiB)
        f.write(hostile.pattern(MiB))
    image_id = hostile.plant(store, src, declared)
    api = CountingAPI(image_api)
    with pytest.raises(exception.ImageUnacceptable):
        images.fetch_verified(ctx, api, image_id,
                              os.path.join(base_dir, 'base'), 'raw',
                              max_virtual_size=max_virtual_size)
    assert api.downloaded <= 2 * MiB
    assert leftovers(base_dir) == []


def test_refused_image_never_runs_qemu_img_on_host_file(
        ctx, store, image_api, src_dir, base_dir, tmp_path):
    # The backing file is a file only this test can see change: if anything
    # opened it for writing or as an image's data, its atime/bytes would
    # be the least of the problems; here we check it is still intact and
    # that the refusal happened before conversion.
    secret = tmp_path / 'secret'
    secret.write_bytes(b'top secret' * 100)
    src = hostile.qcow2_with_backing_file(os.path.join(src_dir, 'b.qcow2'),
                                          backing_file=str(secret))
    image_id = hostile.plant(store, src, 'qcow2')
    with pytest.raises(exception.ImageUnsafe):
        images.fetch_verified(ctx, image_api, image_id,
                              os.path.join(base_dir, 'base'), 'raw')
    assert leftovers(base_dir) == []
    assert secret.read_bytes() == b'top secret' * 100

"""The embedded SQLite database under concurrent use, as users meet it.

Many ``nova-libvirt`` processes on one state directory at once: each a
process of its own (the console script), with real qemu-img, SQLite and
libvirt's test driver. Every boot must succeed, the image must be fetched
once per image however many boots wait for it, and boots racing destroys
and image-cache-cleanup must all succeed too.

``NOVA_TEST_CONCURRENT_BOOT_ROUNDS`` sets how many rounds of 16 boots run
(20 by default, as the acceptance criteria ask).
"""

import json
import os
import subprocess

from tests.functional.cmd import test_libvirt_cli as cli_tests

BOOTS = 16
ROUNDS = int(os.environ.get('NOVA_TEST_CONCURRENT_BOOT_ROUNDS', '20'))
# Logged (at INFO) by the image cache once per entry it creates.
CACHE_CREATE = 'Creating image cache entry'


def _cli(tmp_path):
    # debug: the cache's INFO lines show how many fetches there were; no
    # minimum age: a cleanup may remove any entry that no record names.
    return cli_tests.CLI(tmp_path, 'debug = true\n[image_cache]\n'
                         'remove_unused_original_minimum_age_seconds = 0\n')


def _start(cli, *args):
    cmd = cli_tests._script() + ['--config-file', str(cli.conf),
                                 '--format', 'json', *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli.env)


def _finish(processes):
    """Wait for all; return [(args, returncode, stdout, stderr)]."""
    results = []
    for args, process in processes:
        stdout, stderr = process.communicate(timeout=900)
        results.append((args, process.returncode, stdout, stderr))
    return results


def _assert_all_succeeded(results):
    failed = [(args, code, stderr[-2000:])
              for args, code, _, stderr in results if code != 0]
    assert not failed, failed
    for _, _, _, stderr in results:
        assert 'Traceback' not in stderr and 'database is locked' not in (
            stderr)


def _import(cli, tmp_path, name):
    return cli.json('image-import',
                    cli_tests.make_qcow2(tmp_path / name, size=None),
                    '--disk-format', 'qcow2')


def _boots(cli, image_id, count):
    return [(('boot', image_id), _start(cli, 'boot', '--image', image_id))
            for _ in range(count)]


def test_16_concurrent_boots_of_one_image(tmp_path):
    cli = _cli(tmp_path)
    for round_ in range(ROUNDS):
        image = _import(cli, tmp_path, 'image%d.qcow2' % round_)
        results = _finish(_boots(cli, image['id'], BOOTS))
        _assert_all_succeeded(results)
        booted = [json.loads(stdout) for _, _, stdout, _ in results]
        assert [b['vm_state'] for b in booted] == ['active'] * BOOTS, round_
        assert len({b['uuid'] for b in booted}) == BOOTS
        # One fetch of the image, however many boots waited for it.
        fetches = sum(stderr.count(CACHE_CREATE)
                      for _, _, _, stderr in results)
        assert fetches == 1, (round_, fetches)
    listed = cli.json('list')
    assert len(listed) == ROUNDS * BOOTS
    assert {i['vm_state'] for i in listed} == {'active'}


def test_boots_race_destroys_and_image_cache_cleanup(tmp_path):
    cli = _cli(tmp_path)
    image = _import(cli, tmp_path, 'image.qcow2')
    old = [b['uuid'] for b in (
        json.loads(stdout) for _, _, stdout, _ in
        _finish(_boots(cli, image['id'], BOOTS // 2)))]

    racing = _boots(cli, image['id'], BOOTS // 2)
    racing += [(('destroy', uuid), _start(cli, 'destroy', uuid))
               for uuid in old]
    racing += [(('image-cache-cleanup',), _start(cli, 'image-cache-cleanup'))
               for _ in range(2)]
    results = _finish(racing)
    _assert_all_succeeded(results)

    new = [json.loads(stdout)['uuid'] for args, _, stdout, _ in results
           if args[0] == 'boot']
    listed = {i['uuid']: i['vm_state'] for i in cli.json('list')}
    assert listed == {uuid: 'active' for uuid in new}
    for uuid in old:
        assert not (cli.state / 'instances' / uuid).exists()
    # The new instances' disks still stand on their cache entry: a cleanup
    # that ran while they booted removed nothing that a record names.
    for uuid in new:
        shown = cli.json('show', uuid)
        for disk in shown['disks']:
            assert os.path.isfile(disk['path'])
            assert disk['on_disk']['backing_format'] == (
                disk['record']['backing_format'])
    assert os.listdir(cli.state / 'instances' / '_base')

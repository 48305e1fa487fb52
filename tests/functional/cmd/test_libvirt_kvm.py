"""The main command on libvirtd with QEMU/KVM (``NOVA_TEST_LIBVIRT_URI``):
what a failed rescue leaves of a guest that really runs."""

import os

import pytest

from tests.functional.cmd.runner import CLI
from tests.functional.cmd.runner import assert_one_line_error
from tests.functional.cmd.runner import make_raw

URI_ENV = 'NOVA_TEST_LIBVIRT_URI'


@pytest.fixture
def kvm_cli(tmp_path):
    """nova-libvirt on libvirtd; every instance left is destroyed after
    the test. Skips (outside CI) without libvirtd."""
    uri = os.environ.get(URI_ENV)
    if not uri:
        pytest.skip('%s not configured: run tools/services/libvirtd.sh '
                    'start and export what it prints' % URI_ENV)
    cli = CLI(tmp_path, extra_conf='[libvirt]\nconnection_uri = %s\n'
                                   'virt_type = kvm\n' % uri)
    yield cli
    for instance in cli.json('list'):
        cli.run('destroy', instance['uuid'], check=False)


def test_a_rescue_that_fails_after_stopping_the_guest_leaves_error(
        kvm_cli, tmp_path):
    cli = kvm_cli
    image = cli.json('image-import', make_raw(tmp_path / 'img.raw'),
                     '--disk-format', 'raw')
    rescue_image = cli.json('image-import', make_raw(tmp_path / 'r.raw'),
                            '--disk-format', 'raw')
    vm = cli.json('boot', '--image', image['id'], '--name', 'vm')
    assert (vm['vm_state'], vm['power_state']) == ('active', 'running')
    # The store's copy no longer matches the checksum it recorded: the
    # rescue's fetch refuses it, after the guest has been stopped.
    with open(cli.state / 'images' / rescue_image['id'] / 'data',
              'r+b') as f:
        f.write(b'evil')

    result = cli.run('rescue', 'vm', '--image', rescue_image['id'],
                     check=False)

    assert_one_line_error(result, rescue_image['id'])
    shown = cli.json('show', 'vm')
    # As Nova leaves it: ERROR, and the power state the guest really has.
    assert (shown['vm_state'], shown['power_state'],
            shown['domain_state']) == ('error', 'shutdown', 'shut off')
    assert sorted(d['disk_name'] for d in shown['disks']) == ['disk']
    disk_dir = cli.state / 'instances' / vm['uuid']
    assert sorted(os.listdir(disk_dir)) == ['disk']

    # Rescue, then unrescue, brings it back: running, ACTIVE.
    cli.json('rescue', 'vm', '--image', image['id'])
    back = cli.json('unrescue', 'vm')
    assert (back['vm_state'], back['power_state']) == ('active', 'running')


def test_a_refused_rescue_leaves_the_instance_as_it_was(kvm_cli, tmp_path):
    cli = kvm_cli
    image = cli.json('image-import', make_raw(tmp_path / 'img.raw'),
                     '--disk-format', 'raw')
    cli.json('boot', '--image', image['id'], '--name', 'vm')

    result = cli.run('rescue', 'vm', '--image',
                     '00000000-0000-4000-8000-000000000000', check=False)

    assert_one_line_error(result, '00000000-0000-4000-8000-000000000000')
    shown = cli.json('show', 'vm')
    assert (shown['vm_state'], shown['power_state'],
            shown['domain_state']) == ('active', 'running', 'running')

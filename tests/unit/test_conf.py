"""The options keep upstream Nova's names, types and defaults."""

import os
import subprocess
import sys

from oslo_config import cfg
import pytest

import nova.conf
from nova.conf import opts

CONF = nova.conf.CONF
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# (group, name): (type, upstream default). state_path and connection_uri
# have embedded defaults of ours, checked separately below.
UPSTREAM = {
    ('DEFAULT', 'use_cow_images'): (cfg.BoolOpt, True),
    ('DEFAULT', 'force_raw_images'): (cfg.BoolOpt, True),
    ('DEFAULT', 'preallocate_images'): (cfg.StrOpt, 'none'),
    ('DEFAULT', 'instances_path'): (cfg.StrOpt, '$state_path/instances'),
    ('libvirt', 'images_type'): (cfg.StrOpt, 'default'),
    ('libvirt', 'images_volume_group'): (cfg.StrOpt, None),
    ('libvirt', 'sparse_logical_volumes'): (cfg.BoolOpt, False),
    ('libvirt', 'volume_clear'): (cfg.StrOpt, 'zero'),
    ('libvirt', 'volume_clear_size'): (cfg.IntOpt, 0),
    ('libvirt', 'images_rbd_pool'): (cfg.StrOpt, 'rbd'),
    ('libvirt', 'images_rbd_ceph_conf'): (cfg.StrOpt, ''),
    ('libvirt', 'rbd_user'): (cfg.StrOpt, None),
    ('libvirt', 'rbd_secret_uuid'): (cfg.StrOpt, None),
    ('libvirt', 'virt_type'): (cfg.StrOpt, 'kvm'),
    ('libvirt', 'hw_disk_discard'): (cfg.StrOpt, None),
    ('image_cache', 'subdirectory_name'): (cfg.StrOpt, '_base'),
    ('image_cache', 'remove_unused_base_images'): (cfg.BoolOpt, True),
    ('image_cache', 'remove_unused_original_minimum_age_seconds'):
        (cfg.IntOpt, 86400),
    ('image_cache', 'remove_unused_resized_minimum_age_seconds'):
        (cfg.IntOpt, 3600),
    ('libvirt', 'disk_cachemodes'): (cfg.ListOpt, []),
    ('DEFAULT', 'default_ephemeral_format'): (cfg.StrOpt, None),
    ('DEFAULT', 'virt_mkfs'): (cfg.MultiStrOpt, []),
}


def _opts_by_key():
    found = {}
    for group, group_opts in opts.list_opts():
        name = getattr(group, 'name', group)
        for opt in group_opts:
            found[(name, opt.dest)] = opt
    return found


@pytest.mark.parametrize('key', sorted(UPSTREAM))
def test_upstream_name_type_default(key):
    opt = _opts_by_key()[key]
    opt_type, default = UPSTREAM[key]
    assert isinstance(opt, opt_type)
    assert opt.default == default


def test_images_type_choices_are_upstreams():
    opt = _opts_by_key()[('libvirt', 'images_type')]
    assert sorted(c for c, _ in opt.type.choices.items()) == sorted(
        ['raw', 'flat', 'qcow2', 'lvm', 'rbd', 'ploop', 'default'])


def test_embedded_defaults_need_no_root_and_no_daemon():
    CONF([], default_config_files=[])
    try:
        assert CONF.libvirt.connection_uri == 'test:///default'
        assert CONF.database.connection == 'sqlite:///' + os.path.join(
            CONF.state_path, 'nova.sqlite')
        assert CONF.instances_path == os.path.join(CONF.state_path,
                                                   'instances')
    finally:
        CONF.reset()


def test_lock_path_defaults_under_instances_path():
    CONF([], default_config_files=[])
    try:
        assert CONF.oslo_concurrency.lock_path == os.path.join(
            CONF.instances_path, 'locks')
    finally:
        CONF.reset()


def test_bad_choice_is_refused():
    CONF([], default_config_files=[])
    try:
        with pytest.raises(ValueError, match='vmdk'):
            CONF.set_override('images_type', 'vmdk', group='libvirt')
        assert CONF.libvirt.images_type == 'default'
    finally:
        CONF.reset()


def test_sample_config_is_current(tmp_path):
    """etc/nova/nova.conf.sample is what the generator writes today.

    Regenerate with ``tox -e genconfig`` after changing an option.
    """
    out = tmp_path / 'nova.conf.sample'
    subprocess.run(
        [sys.executable, '-m', 'oslo_config.generator',
         '--config-file', os.path.join(ROOT, 'etc', 'nova',
                                       'nova-config-generator.conf'),
         '--output-file', str(out)],
        check=True, cwd=ROOT, capture_output=True)
    with open(os.path.join(ROOT, 'etc', 'nova', 'nova.conf.sample')) as f:
        assert out.read_text() == f.read()


# An upstream-style nova.conf with the names upstream still accepts.
DEPRECATED_NAMES_CONF = """
[DEFAULT]
image_cache_subdirectory_name = _cache_old
remove_unused_base_images = false
remove_unused_original_minimum_age_seconds = 7200
virt_mkfs = linux=mkfs.ext4 -L %(fs_label)s -E stride=8 %(target)s
virt_mkfs = default=mkfs.vfat -n %(fs_label)s %(target)s
default_ephemeral_format = xfs

[libvirt]
remove_unused_resized_minimum_age_seconds = 60
disk_cachemodes = file=writethrough,block=none
"""


def test_upstreams_deprecated_names_are_read(tmp_path):
    conf_file = tmp_path / 'nova.conf'
    conf_file.write_text(DEPRECATED_NAMES_CONF)
    CONF(['--config-file', str(conf_file)], default_config_files=[])
    try:
        assert CONF.image_cache.subdirectory_name == '_cache_old'
        assert CONF.image_cache.remove_unused_base_images is False
        assert CONF.image_cache.remove_unused_original_minimum_age_seconds \
            == 7200
        assert CONF.image_cache.remove_unused_resized_minimum_age_seconds \
            == 60
        assert CONF.virt_mkfs == [
            'linux=mkfs.ext4 -L %(fs_label)s -E stride=8 %(target)s',
            'default=mkfs.vfat -n %(fs_label)s %(target)s']
        assert CONF.default_ephemeral_format == 'xfs'
        assert CONF.libvirt.disk_cachemodes == ['file=writethrough',
                                                'block=none']
    finally:
        CONF.reset()

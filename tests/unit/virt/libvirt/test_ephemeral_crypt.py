"""Encrypted LVM ephemeral disks without the kernel: settings, keys, the
cryptsetup command and the refusal (upstream's dm-crypt scheme)."""

import pytest

import nova.conf
from nova.virt.libvirt import ephemeral_crypt

from tests import fixtures

CONF = nova.conf.CONF

DMSETUP_TARGETS = """\
striped          v1.6.0
linear           v1.4.0
crypt            v1.24.0
error            v1.6.0
"""


@pytest.fixture
def conf():
    overrides = fixtures.ConfOverrides()
    yield overrides
    overrides.undo()


def test_upstreams_options_and_defaults():
    group = CONF.ephemeral_storage_encryption
    assert (group.enabled, group.cipher, group.key_size,
            group.default_format) == (False, 'aes-xts-plain64', 512, 'luks')


def test_spec_is_none_when_disabled_and_checked_when_enabled(conf):
    assert ephemeral_crypt.spec_from_conf(CONF) is None
    conf.config(group='ephemeral_storage_encryption', enabled=True)
    assert ephemeral_crypt.spec_from_conf(CONF) == \
        ephemeral_crypt.EncryptionSpec('aes-xts-plain64', 512)
    conf.config(group='ephemeral_storage_encryption', key_size=384)
    with pytest.raises(ephemeral_crypt.EphemeralEncryptionInvalid,
                       match='XTS needs a key_size of 256 or 512'):
        ephemeral_crypt.spec_from_conf(CONF)


@pytest.mark.parametrize('cipher,key_size', [
    ('aes-xts-plain64', 256), ('aes-xts-plain64', 512),
    ('aes-cbc-essiv:sha256', 256), ('aes-cbc-plain', 128),
    ('serpent-xts-plain64', 512)])
def test_valid_specs(cipher, key_size):
    assert ephemeral_crypt.validate_spec(cipher, key_size) == (cipher,
                                                               key_size)


@pytest.mark.parametrize('cipher,key_size,match', [
    ('aes', 256, 'cipher'),
    ('aes xts plain64', 256, 'cipher'),
    ('aes-xts-plain64;rm', 256, 'cipher'),
    ('', 256, 'cipher'),
    (None, 256, 'cipher'),
    ('aes-cbc-plain', 255, 'whole bytes'),
    ('aes-cbc-plain', 0, 'whole bytes'),
    ('aes-xts-plain64', 128, 'XTS'),
    ('aes-xts-plain64', 1024, 'XTS'),
])
def test_invalid_specs_are_refused(cipher, key_size, match):
    with pytest.raises(ephemeral_crypt.EphemeralEncryptionInvalid,
                       match=match):
        ephemeral_crypt.validate_spec(cipher, key_size)


def test_keys_are_random_and_sized():
    first, second = (ephemeral_crypt.new_key(512) for _ in range(2))
    assert len(first) == len(second) == 64
    assert first != second
    with pytest.raises(ephemeral_crypt.EphemeralEncryptionInvalid):
        ephemeral_crypt.new_key(100)


def test_key_is_given_to_cryptsetup_in_hex_and_must_fit_its_size():
    key = bytes(range(32))
    assert ephemeral_crypt.key_hex(key, 256) == key.hex()
    with pytest.raises(ephemeral_crypt.EphemeralEncryptionInvalid,
                       match='not 512 bits'):
        ephemeral_crypt.key_hex(key, 512)
    with pytest.raises(ephemeral_crypt.EphemeralEncryptionInvalid):
        ephemeral_crypt.key_hex(key.hex(), 256)


def test_mapping_names_are_upstreams():
    lv = 'b5c1d3d0-5d0b-4b4b-8c55-5e0bb0b0b0b0_disk.local'
    assert ephemeral_crypt.mapping_name(lv) == lv + '-dmcrypt'
    assert ephemeral_crypt.mapping_path(lv) == '/dev/mapper/' + lv + \
        '-dmcrypt'


def test_cryptsetup_command_reads_the_key_from_stdin():
    spec = ephemeral_crypt.EncryptionSpec('aes-xts-plain64', 512)
    assert ephemeral_crypt.cryptsetup_create_args(
        'u_disk-dmcrypt', '/dev/vg/u_disk', spec) == (
        'cryptsetup', 'create', 'u_disk-dmcrypt', '/dev/vg/u_disk',
        '--cipher=aes-xts-plain64', '--key-size=512', '--key-file=-')


def test_crypt_target_is_read_from_dmsetup_output():
    assert ephemeral_crypt.dmcrypt_in_targets(DMSETUP_TARGETS)
    assert not ephemeral_crypt.dmcrypt_in_targets(
        DMSETUP_TARGETS.replace('crypt ', 'thin  '))
    assert not ephemeral_crypt.dmcrypt_in_targets('')
    assert not ephemeral_crypt.dmcrypt_in_targets(None)


def test_refusal_names_instance_disk_and_reason():
    with pytest.raises(ephemeral_crypt.EphemeralEncryptionUnavailable) as e:
        ephemeral_crypt.check_host_can_encrypt(
            'u-1', 'disk.local', probe=lambda: (False, 'no dm-crypt here'))
    assert 'disk.local' in str(e.value) and 'u-1' in str(e.value)
    assert 'no dm-crypt here' in str(e.value)
    ephemeral_crypt.check_host_can_encrypt(
        'u-1', 'disk.local', probe=lambda: (True, None))

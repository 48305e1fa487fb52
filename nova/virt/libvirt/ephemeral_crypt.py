"""Encrypted LVM ephemeral disks: the settings, the key, the refusal.

Upstream Nova 34.0.0 encrypts an LVM disk with a plain dm-crypt mapping
over the logical volume: ``cryptsetup create <lv>-dmcrypt <lv device>
--cipher=<cipher> --key-size=<bits> --key-file=-`` with the key given in hex
on stdin, and the guest opens ``/dev/mapper/<lv>-dmcrypt``. It needs the
kernel's device-mapper and its ``crypt`` target. Where they are missing,
planning an encrypted disk must fail with a clear error before anything is
recorded or made: ``check_host_can_encrypt`` is that refusal.

Everything except ``probe_dmcrypt`` is a pure function::

    spec = spec_from_conf(CONF)          # None when encryption is off
    check_host_can_encrypt(instance_uuid, disk_name)
    key = new_key(spec.key_size)
    args = cryptsetup_create_args(mapping_name(lv), device, spec)
    stdin = key_hex(key, spec.key_size)
"""

import collections
import os
import re

from oslo_concurrency import processutils
from oslo_log import log as logging

from nova import exception

LOG = logging.getLogger(__name__)

#: Upstream's suffix of a dm-crypt mapping over a logical volume; kept so
#: that mappings made by Nova 34 have the names this code expects.
MAPPING_SUFFIX = '-dmcrypt'

#: ``<cipher>-<chainmode>[-<ivmode>[:<ivopts>]]``, as dm-crypt takes it.
_CIPHER = re.compile(r'^[a-z0-9]+(-[a-z0-9]+){1,2}(:[a-z0-9]+)?$')

#: XTS splits the key in two; each half must be an AES key.
_XTS_KEY_SIZES = (256, 512)

EncryptionSpec = collections.namedtuple('EncryptionSpec',
                                        ['cipher', 'key_size'])
EncryptionSpec.__doc__ = """How a new disk is encrypted: ``cipher`` such as
``aes-xts-plain64`` and ``key_size`` in bits."""


class EphemeralEncryptionInvalid(exception.Invalid):
    msg_fmt = ("Ephemeral storage encryption settings are invalid: "
               "%(reason)s")


class EphemeralEncryptionUnavailable(exception.NovaException):
    msg_fmt = ("Disk %(disk_name)s of instance %(instance_uuid)s cannot be "
               "encrypted on this host: %(reason)s")


def validate_spec(cipher, key_size):
    """Return EncryptionSpec(cipher, key_size) or refuse it.

    :raises: EphemeralEncryptionInvalid for a cipher not in dm-crypt's
        format, a key size that is not whole bytes, or an XTS key size
        other than 256 or 512 bits.
    """
    if not isinstance(cipher, str) or not _CIPHER.match(cipher):
        raise EphemeralEncryptionInvalid(
            reason='cipher %r is not <cipher>-<chainmode>-<ivmode>' %
                   (cipher,))
    if not isinstance(key_size, int) or key_size <= 0 or key_size % 8:
        raise EphemeralEncryptionInvalid(
            reason='key_size %r is not a positive number of whole bytes '
                   '(in bits)' % (key_size,))
    if '-xts-' in cipher + '-' and key_size not in _XTS_KEY_SIZES:
        raise EphemeralEncryptionInvalid(
            reason='XTS needs a key_size of %s bits, not %d' % (
                ' or '.join(str(s) for s in _XTS_KEY_SIZES), key_size))
    return EncryptionSpec(cipher, key_size)


def spec_from_conf(conf):
    """EncryptionSpec for new disks, or None when encryption is off.

    :param conf: nova.conf.CONF (``[ephemeral_storage_encryption]``).
    """
    group = conf.ephemeral_storage_encryption
    if not group.enabled:
        return None
    return validate_spec(group.cipher, group.key_size)


def new_key(key_size):
    """A new random key of ``key_size`` bits (bytes from os.urandom)."""
    if key_size <= 0 or key_size % 8:
        raise EphemeralEncryptionInvalid(
            reason='key_size %r is not whole bytes' % (key_size,))
    return os.urandom(key_size // 8)


def key_hex(key, key_size):
    """The key as cryptsetup reads it on stdin (``--key-file=-``): hex.

    :raises: EphemeralEncryptionInvalid if the key is not ``key_size``
        bits long (a wrong key would map garbage, not fail).
    """
    if not isinstance(key, bytes) or len(key) * 8 != key_size:
        raise EphemeralEncryptionInvalid(
            reason='the key is not %d bits long' % key_size)
    return key.hex()


def mapping_name(volume_name):
    """The dm-crypt mapping over logical volume ``volume_name``."""
    return volume_name + MAPPING_SUFFIX


def mapping_path(volume_name):
    """``/dev/mapper/<volume_name>-dmcrypt``: what the guest opens."""
    return os.path.join('/dev/mapper', mapping_name(volume_name))


def cryptsetup_create_args(target, device, spec):
    """The ``cryptsetup create`` command for a plain dm-crypt mapping."""
    return ('cryptsetup', 'create', target, device,
            '--cipher=' + spec.cipher,
            '--key-size=%d' % spec.key_size,
            '--key-file=-')


def dmcrypt_in_targets(targets_output):
    """True if ``dmsetup targets`` output lists the ``crypt`` target."""
    for line in (targets_output or '').splitlines():
        fields = line.split()
        if fields and fields[0] == 'crypt':
            return True
    return False


def probe_dmcrypt():
    """Ask the kernel: ``(True, None)`` or ``(False, reason)``.

    Runs ``dmsetup targets``, which fails where the kernel has no
    device-mapper driver (or dmsetup is not installed), and lists ``crypt``
    where dm-crypt is loaded.
    """
    try:
        out, _err = processutils.execute('dmsetup', 'targets')
    except (processutils.ProcessExecutionError, OSError) as e:
        detail = getattr(e, 'stderr', None) or str(e)
        return False, 'device-mapper is unavailable (dmsetup targets: ' \
            '%s)' % ' '.join(detail.split())
    if not dmcrypt_in_targets(out):
        return False, 'device-mapper has no crypt target (dm-crypt)'
    return True, None


def check_host_can_encrypt(instance_uuid, disk_name, probe=probe_dmcrypt):
    """Refuse to plan an encrypted disk where dm-crypt is unavailable.

    :param probe: callable() -> (available, reason); probe_dmcrypt asks
        this host's kernel.
    :raises: EphemeralEncryptionUnavailable naming the disk and the reason.
    """
    available, reason = probe()
    if not available:
        LOG.error('Refusing encrypted disk %(disk)s of instance '
                  '%(uuid)s: %(reason)s',
                  {'disk': disk_name, 'uuid': instance_uuid,
                   'reason': reason})
        raise EphemeralEncryptionUnavailable(
            instance_uuid=instance_uuid, disk_name=disk_name, reason=reason)

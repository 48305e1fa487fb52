"""The dm-crypt probe against this host's real kernel and dmsetup.

Whatever the kernel offers, the probe's answer and the refusal agree; on
the machines this project runs its tests on (no device-mapper), the
refusal is what happens, naming the disk and device-mapper.
"""

import pytest

from nova.virt.libvirt import ephemeral_crypt


def test_probe_and_refusal_agree_on_this_host():
    available, reason = ephemeral_crypt.probe_dmcrypt()
    if available:
        assert reason is None
        ephemeral_crypt.check_host_can_encrypt('u-1', 'disk.local')
        return
    assert 'device-mapper' in reason
    with pytest.raises(ephemeral_crypt.EphemeralEncryptionUnavailable,
                       match='disk.local of instance u-1 cannot be '
                             'encrypted on this host: device-mapper'):
        ephemeral_crypt.check_host_can_encrypt('u-1', 'disk.local')

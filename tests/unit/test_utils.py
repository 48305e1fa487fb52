"""nova.utils.validate_uuid: canonical UUID strings only."""

import uuid

import pytest

from nova import exception
from nova import utils

CANONICAL = '6f1c2e5e-8a44-4c1d-9d1e-8a2b7c3d4e5f'


@pytest.mark.parametrize('value', [
    CANONICAL, str(uuid.uuid4()), '00000000-0000-0000-0000-000000000000',
    str(uuid.uuid1()),
])
def test_canonical_uuid_is_returned(value):
    assert utils.validate_uuid(value) is value
    assert utils.validate_uuid(value, kind='image') is value


@pytest.mark.parametrize('value', [
    # uuid.UUID() reads all of these as a UUID; none is canonical.
    '12345678123412341234123456789abc----',
    '----12345678123412341234123456789abc',
    '6f1c2e5e8a444c1d9d1e8a2b7c3d4e5f',
    '6f1c2e5e-8a444c1d-9d1e-8a2b-7c3d4e5f',
    '6f1c2e5e8-a44-4c1d-9d1e-8a2b7c3d4e5f',
    '{6f1c2e5e-8a44-4c1d-9d1e-8a2b7c3d4e5f}',
    'urn:uuid:6f1c2e5e-8a44-4c1d-9d1e-8a2b7c3d4e5f',
    CANONICAL.upper(), CANONICAL[:-1] + 'F',
    # Not UUIDs at all.
    CANONICAL + '\n', ' ' + CANONICAL, CANONICAL + '\0', CANONICAL[:-1],
    CANONICAL + '0', '../../etc/passwd', '/etc/passwd', '', '..',
    CANONICAL[:-1] + 'g', CANONICAL + '/../x',
    None, 42, CANONICAL.encode(), uuid.UUID(CANONICAL), [CANONICAL],
], ids=repr)
def test_anything_else_is_refused(value):
    with pytest.raises(exception.InvalidUUID) as e:
        utils.validate_uuid(value)
    assert e.value.kwargs == {'uuid': value}

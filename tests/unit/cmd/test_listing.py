"""nova.cmd.listing: which flavor documents list reads without the objects
layer, and that it reads them as the objects layer does."""

import json
import types

import pytest

from nova.cmd import listing
from nova import objects
from nova.objects import instance as instance_obj


def _row(flavor):
    return types.SimpleNamespace(extra=types.SimpleNamespace(flavor=flavor))


def _document(swap=512, **changes):
    flavor = objects.Flavor.from_sizes(1, 2, swap)
    document = json.loads(instance_obj._flavor_to_json(flavor))
    document['cur'].update(changes)
    return document


@pytest.fixture(autouse=True)
def registered():
    objects.register_all()


def test_the_flavor_this_project_writes_is_read_as_the_objects_layer_does():
    text = instance_obj._flavor_to_json(objects.Flavor.from_sizes(1, 2, 512))
    assert listing.plain_swap(_row(text)) == 512 == (
        instance_obj._flavor_from_json(text).swap)


def test_older_minor_versions_are_plain():
    for version in ('1.0', '1.1', '1.2'):
        document = _document(**{'nova_object.version': version})
        assert listing.plain_swap(_row(json.dumps(document))) == 512


@pytest.mark.parametrize('changes', [
    {'nova_object.version': '2.0'},
    {'nova_object.version': '1.3'},
    {'nova_object.version': 'x'},
    {'nova_object.name': 'Instance'},
    {'nova_object.namespace': 'other'},
])
def test_other_documents_are_left_to_the_objects_layer(changes):
    assert listing.plain_swap(_row(json.dumps(_document(**changes)))) is None


@pytest.mark.parametrize('text', [
    None, '', 'not json', 'null', '{}', '{"cur": null}', '{"cur": []}',
    json.dumps({'cur': {'nova_object.version': '1.2'}}),
])
def test_malformed_documents_are_left_to_the_objects_layer(text):
    assert listing.plain_swap(_row(text)) is None


def test_a_swap_that_is_not_an_integer_is_left_to_the_objects_layer():
    for swap in ('512', 512.0, True, None):
        document = _document()
        document['cur']['nova_object.data']['swap'] = swap
        assert listing.plain_swap(_row(json.dumps(document))) is None
    assert listing.plain_swap(types.SimpleNamespace(extra=None)) is None

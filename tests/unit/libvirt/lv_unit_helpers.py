"""Helpers of the libvirt unit tests."""

from tests import fixtures

ConfOverrides = fixtures.ConfOverrides

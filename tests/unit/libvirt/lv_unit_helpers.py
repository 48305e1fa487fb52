"""Helpers of the libvirt unit tests."""

import nova.conf

CONF = nova.conf.CONF


class ConfOverrides:
    """``config(group=None, **values)`` sets overrides on CONF; ``undo()``
    clears exactly those.

    Not oslo's config fixture: its cleanup (``CONF.reset()``) also drops
    every default set with ``set_default()`` (the SQLite connection,
    lockutils' lock_path), for the rest of the test process.
    """

    def __init__(self):
        self._set = []

    def config(self, group=None, **values):
        for name, value in values.items():
            CONF.set_override(name, value, group=group)
            self._set.append((name, group))

    def undo(self):
        while self._set:
            name, group = self._set.pop()
            CONF.clear_override(name, group=group)

"""Ctrl-C and SIGTERM end a command the way any failure does.

Python turns SIGINT into KeyboardInterrupt; ``install()`` makes SIGTERM
raise ``Interrupted`` (a KeyboardInterrupt) too, so one cleanup path
serves both: a boot that is stopped ends in ERROR with what it made
removed. The first signal starts that cleanup; later ones are ignored, so
that a second Ctrl-C cannot cut the cleanup short and leak what it was
removing.
"""

import signal


class Interrupted(KeyboardInterrupt):
    """The command was told to stop by a signal (``signal_name``)."""

    def __init__(self, signal_name):
        super().__init__(signal_name)
        self.signal_name = signal_name


def _stop(signum, frame):
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


def install():
    """Make SIGINT and SIGTERM raise Interrupted (once)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop)

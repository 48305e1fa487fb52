"""Where this service keeps its state: ``[DEFAULT] state_path``."""

import os

from oslo_config import cfg

# Upstream Nova defaults state_path to the source tree; an installed service
# should not write into site-packages, so the embedded default is a directory
# of the invoking user. Operators set state_path (usually /var/lib/nova).
DEFAULT_STATE_PATH = os.path.join(
    os.path.expanduser('~'), '.local', 'state', 'nova-libvirt')

path_opts = [
    cfg.StrOpt('state_path',
               default=DEFAULT_STATE_PATH,
               sample_default='~/.local/state/nova-libvirt',
               help="""
The top-level directory for maintaining Nova's state.

It holds, unless configured otherwise, the SQLite database, the instances
directory (with its image cache and locks) and the local image store.

Like sshd's StrictModes, this directory and those under it that the
service uses (instances_path, its image cache, the image store,
lock_path) must be owned by the service's user and not writable by group
or others: the service creates them that way and refuses to work in one
that is not, naming the directory and the command that fixes it.
"""),
]


def state_path_def(*args):
    """Return a path under ``$state_path``, for use as an option default."""
    return os.path.join('$state_path', *args)


def register_opts(conf):
    conf.register_opts(path_opts)


def list_opts():
    return {'DEFAULT': path_opts}

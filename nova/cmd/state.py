"""What every nova-libvirt command needs before it runs: the state
directory and a database at this code's revision.

Kept out of the command-line module so that ``--help`` and usage errors
never import the database layer.
"""

import nova.conf
from nova import context as nova_context
from nova.db import migration
from nova import exception
from nova import utils

CONF = nova.conf.CONF


def open_state():
    """Make ``state_path`` (mode 0700) and bring an embedded database to
    this code's revision (see ``migration.db_ensure_current``).

    :returns: an admin RequestContext.
    :raises: StatePathInvalid when state_path is a file; as
        db_ensure_current.
    """
    try:
        utils.ensure_tree(CONF.state_path, mode=0o700)
    except (FileExistsError, NotADirectoryError) as e:
        raise exception.StatePathInvalid(path=CONF.state_path) from e
    migration.db_ensure_current()
    return nova_context.get_admin_context()

"""The entry point of oslo-config-generator for this project's options.

``oslo-config-generator --config-file etc/nova/nova-config-generator.conf``
(``tox -e genconfig``) writes ``etc/nova/nova.conf.sample`` from this
namespace (``nova.conf``) and oslo.concurrency's.
"""

import collections

from nova.conf import compute
from nova.conf import configdrive
from nova.conf import database
from nova.conf import ephemeral_storage
from nova.conf import image_cache
from nova.conf import image_store
from nova.conf import libvirt
from nova.conf import paths

_MODULES = (paths, compute, configdrive, libvirt, image_cache, image_store,
            database, ephemeral_storage)


def list_opts():
    """Return ``[(group, [opts])]`` for every option this project owns."""
    grouped = collections.defaultdict(list)
    for module in _MODULES:
        for group, opts in module.list_opts().items():
            grouped[group].extend(opts)
    return [(group, opts) for group, opts in grouped.items()]

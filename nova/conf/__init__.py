"""The configuration of this project: every option, registered once.

``nova.conf.CONF`` is the one ``cfg.ConfigOpts`` instance. Each module in this
package registers one option group; importing the package registers them all.
"""

from oslo_concurrency import lockutils
from oslo_config import cfg

from nova.conf import compute
from nova.conf import configdrive
from nova.conf import database
from nova.conf import ephemeral_storage
from nova.conf import image_cache
from nova.conf import image_store
from nova.conf import libvirt
from nova.conf import paths

CONF = cfg.CONF

paths.register_opts(CONF)
compute.register_opts(CONF)
configdrive.register_opts(CONF)
libvirt.register_opts(CONF)
image_cache.register_opts(CONF)
image_store.register_opts(CONF)
database.register_opts(CONF)
ephemeral_storage.register_opts(CONF)

# External locks (a boot's) live beside the instances they protect unless
# [oslo_concurrency] lock_path says otherwise. The image cache's are always
# beside _base (imagebackend/cache.py).
lockutils.set_defaults('$instances_path/locks')

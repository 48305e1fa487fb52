"""``[image_cache]``: the shared cache of base images and templates.

Upstream's older names are still accepted, as upstream accepts them:
``[DEFAULT] image_cache_subdirectory_name``, ``[DEFAULT]
remove_unused_base_images``, ``[DEFAULT]
remove_unused_original_minimum_age_seconds`` and ``[libvirt]
remove_unused_resized_minimum_age_seconds``.
"""

from oslo_config import cfg

image_cache_group = cfg.OptGroup(
    'image_cache',
    title='Image Cache Options',
    help="""
The image cache holds base images fetched from the image service and the
templates (formatted ephemeral and swap disks) that instance disks are made
from, under ``$instances_path/$subdirectory_name``.
""")

image_cache_opts = [
    cfg.StrOpt('subdirectory_name',
               default='_base',
               deprecated_name='image_cache_subdirectory_name',
               deprecated_group='DEFAULT',
               help="""
Location of cached images, relative to ``$instances_path``.
"""),
    cfg.BoolOpt('remove_unused_base_images',
                default=True,
                deprecated_group='DEFAULT',
                help="""
Should unused base images be removed?

A cache entry is unused when no persisted disk record names it as its
source.
"""),
    cfg.IntOpt('remove_unused_original_minimum_age_seconds',
               default=(24 * 3600),
               deprecated_group='DEFAULT',
               help="""
Unused unresized base images younger than this will not be removed.
"""),
    cfg.IntOpt('remove_unused_resized_minimum_age_seconds',
               default=3600,
               deprecated_group='libvirt',
               help="""
Unused resized base images younger than this will not be removed.
"""),
]


def register_opts(conf):
    conf.register_group(image_cache_group)
    conf.register_opts(image_cache_opts, group=image_cache_group)


def list_opts():
    return {image_cache_group: image_cache_opts}

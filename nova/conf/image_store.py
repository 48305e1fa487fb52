"""``[image_store]``: the local image store (the image service by default)."""

from oslo_config import cfg

image_store_group = cfg.OptGroup(
    'image_store',
    title='Local image store options',
    help="""
The local image store keeps imported images under ``$state_path/images``
and serves them the way Glance would: metadata (formats, size, hash) and a
byte stream that every fetch verifies.
""")

image_store_opts = [
    cfg.StrOpt('hashing_algorithm',
               default='sha256',
               choices=('sha256', 'sha384', 'sha512', 'sha3_256',
                        'sha3_384', 'sha3_512'),
               help="""
The secure hash recorded as an imported image's ``os_hash_algo``.

Every fetch of the image hashes all of its bytes (holes included) with it,
so it bounds the speed of a cold fetch: on x86-64 with SHA extensions
sha256 runs at about 1.7 GiB/s per core where sha512 (Glance's default
``hashing_algorithm``) runs at about 0.7 GiB/s. No md5 ``checksum`` is
recorded: it protects nothing that the secure hash does not.
"""),
]


def register_opts(conf):
    conf.register_group(image_store_group)
    conf.register_opts(image_store_opts, group=image_store_group)


def list_opts():
    return {image_store_group: image_store_opts}

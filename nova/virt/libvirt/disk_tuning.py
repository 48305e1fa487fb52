"""How a local disk is attached: cache, io, discard, QoS, SCSI unit.

The record says what a disk is (backend, format, location); this module
says how the guest is given it, the way upstream Nova 34.0.0 decides it in
its imagebackend's ``libvirt_info`` and the driver's ``_set_cache_mode``:

* cache: ``[libvirt] disk_cachemodes`` per source type (``file``,
  ``block``, ``network``), else ``none`` where the instances directory
  supports O_DIRECT and ``writeback`` where it does not;
* io: ``native`` for a preallocated file disk and for an LVM volume (both
  are fully allocated), but ``threads`` when the cache mode does not use
  O_DIRECT (``native`` needs it); none otherwise;
* discard: ``[libvirt] hw_disk_discard``;
* driver name: ``qemu`` for ``virt_type`` qemu or kvm on local sources,
  none for other hypervisors (parallels, lxc) and for network disks;
* QoS: the flavor extra specs ``quota:disk_{read,write,total}_{bytes,iops}
  _sec`` become ``<iotune>`` entries;
* SCSI: disks on a ``scsi`` bus get consecutive units on controller 0.

Everything here is a pure function of its arguments; ``settings_from_conf``
is the one place the options are read.

    settings = settings_from_conf(CONF, default_cache_mode='none')
    tuning = tune(settings, 'file', record, extra_specs={
        'quota:disk_read_bytes_sec': '10240000'})
    apply(disk_config, tuning)
"""

import collections
import dataclasses

from oslo_log import log as logging

LOG = logging.getLogger(__name__)

#: libvirt's cache modes (``default`` lets the hypervisor choose).
VALID_CACHE_MODES = ('default', 'none', 'writethrough', 'writeback',
                     'directsync', 'unsafe')

#: Cache modes that open the disk with O_DIRECT, which ``io=native`` needs.
_DIRECT_CACHE_MODES = (None, 'none', 'directsync')

#: The flavor extra specs (after ``quota:``) that tune a local disk.
QOS_SPECS = ('disk_read_bytes_sec', 'disk_read_iops_sec',
             'disk_write_bytes_sec', 'disk_write_iops_sec',
             'disk_total_bytes_sec', 'disk_total_iops_sec')

#: Backends whose disks are always fully allocated (LVM volumes are
#: never sparse here).
_ALWAYS_ALLOCATED = ('lvm',)

#: Backends whose disks may be preallocated files.
_FILE_BACKENDS = ('flat', 'qcow2')

#: Hypervisors whose libvirt driver takes ``<driver name='qemu'>``.
_QEMU_VIRT_TYPES = ('qemu', 'kvm')

Settings = collections.namedtuple(
    'Settings', ['cache_modes', 'default_cache_mode', 'discard',
                 'virt_type'])
Settings.__doc__ = """The options tuning reads, taken once per guest XML.

``cache_modes``: {source type: cache mode} (see parse_cache_modes);
``default_cache_mode``: the mode of a source type not in it; ``discard``:
'unmap', 'ignore' or None; ``virt_type``: ``[libvirt] virt_type``.
"""


@dataclasses.dataclass
class DiskTuning:
    """The attachment attributes of one ``<disk>``.

    ``iotune`` maps libvirt's ``<iotune>`` child names
    (``read_bytes_sec`` ...) to their values; ``unit`` is the SCSI unit on
    controller 0, or None for no explicit address.
    """

    cache: str
    io: str = None
    discard: str = None
    driver_name: str = None
    iotune: dict = dataclasses.field(default_factory=dict)
    unit: int = None


def parse_cache_modes(entries):
    """``['file=writethrough', 'block=none']`` -> ``{'file': ..., ...}``.

    An entry with an unknown cache mode is ignored with a warning, as
    upstream does (the rest still apply).
    """
    modes = {}
    for entry in entries or ():
        source_type, _sep, mode = entry.partition('=')
        source_type, mode = source_type.strip(), mode.strip()
        if mode not in VALID_CACHE_MODES:
            LOG.warning('Invalid cachemode %(cache_mode)s specified for '
                        'disk type %(disk_type)s.',
                        {'cache_mode': mode, 'disk_type': source_type})
            continue
        modes[source_type] = mode
    return modes


def default_cache_mode(direct_io_supported):
    """``none`` (O_DIRECT) where the instances directory supports it, else
    ``writeback``: both keep the guest's flushes, and ``writeback`` is the
    closest mode that does not need O_DIRECT."""
    return 'none' if direct_io_supported else 'writeback'


def settings_from_conf(conf, default_cache_mode):
    """Settings from ``conf`` (nova.conf.CONF) and the default cache mode
    the driver found for the instances directory."""
    return Settings(cache_modes=parse_cache_modes(
                        conf.libvirt.disk_cachemodes),
                    default_cache_mode=default_cache_mode,
                    discard=conf.libvirt.hw_disk_discard,
                    virt_type=conf.libvirt.virt_type)


def cache_mode(settings, source_type):
    """The cache mode of a disk of ``source_type`` (file, block, network)."""
    return settings.cache_modes.get(source_type, settings.default_cache_mode)


def io_mode(record, cache):
    """``native``, ``threads`` or None for a disk with ``record`` attached
    with ``cache``.

    A fully allocated disk gets native AIO (as upstream does for
    ``preallocate_images = space`` and non-sparse LVM); native AIO needs
    O_DIRECT, so with a caching mode it falls back to threads.
    """
    allocated = (record.backend in _ALWAYS_ALLOCATED or
                 (record.backend in _FILE_BACKENDS and
                  getattr(record, 'preallocated', False)))
    if not allocated:
        return None
    if cache in _DIRECT_CACHE_MODES:
        return 'native'
    LOG.warning("The guest disk driver io mode has fallen back from "
                "'native' to 'threads' because the disk cache mode is set "
                "as %(cachemode)s, which does not use O_DIRECT.",
                {'cachemode': cache})
    return 'threads'


def driver_name(virt_type, source_type):
    """``qemu`` where libvirt's QEMU driver must be told which backend to
    use (local sources under qemu/kvm); None lets the hypervisor's own
    driver choose (parallels, lxc; and network disks, as upstream)."""
    if virt_type in _QEMU_VIRT_TYPES and source_type != 'network':
        return 'qemu'
    return None


def qos(extra_specs):
    """``{iotune child: value}`` from flavor extra specs.

    ``{'quota:disk_read_bytes_sec': '10240000', 'hw:foo': 'x'}`` ->
    ``{'read_bytes_sec': '10240000'}``. Other specs are not about disks.
    """
    specs = extra_specs or {}
    # In upstream's element order, whatever the order of the specs.
    return {name[len('disk_'):]: str(specs['quota:' + name])
            for name in QOS_SPECS if 'quota:' + name in specs}


def scsi_units(buses):
    """One SCSI unit per disk on a ``scsi`` bus, counting from 0 in disk
    order; None for disks on other buses.

    ``['scsi', 'virtio', 'scsi']`` -> ``[0, None, 1]``. Explicit units let
    one virtio-scsi controller carry up to 256 disks.
    """
    units = []
    next_unit = 0
    for bus in buses:
        if bus == 'scsi':
            units.append(next_unit)
            next_unit += 1
        else:
            units.append(None)
    return units


def tune(settings, source_type, record, extra_specs=None, unit=None):
    """The DiskTuning of one disk.

    :param settings: Settings (settings_from_conf).
    :param source_type: the disk element's type: file, block or network.
    :param record: the disk's LibvirtDiskMetadata (backend, preallocated).
    :param extra_specs: the instance flavor's extra specs, or None.
    :param unit: its SCSI unit (scsi_units), or None.
    """
    cache = cache_mode(settings, source_type)
    return DiskTuning(cache=cache,
                      io=io_mode(record, cache),
                      discard=settings.discard,
                      driver_name=driver_name(settings.virt_type,
                                              source_type),
                      iotune=qos(extra_specs),
                      unit=unit)


def apply(disk, tuning):
    """Set ``tuning`` on ``disk`` (a config.LibvirtConfigGuestDisk)."""
    disk.driver_cache = tuning.cache
    disk.driver_io = tuning.io
    disk.driver_discard = tuning.discard
    disk.driver_name = tuning.driver_name
    disk.iotune = dict(tuning.iotune)
    disk.scsi_unit = tuning.unit
    return disk


def flavor_extra_specs(instance):
    """The extra specs of ``instance``'s flavor, or {} when it has none.

    Works with an Instance that has no ``flavor`` field, one whose flavor
    is not loaded, a Flavor object and a plain dict.
    """
    fields = getattr(instance, 'fields', None)
    if fields is not None and 'flavor' in fields:
        if not instance.obj_attr_is_set('flavor'):
            return {}
        flavor = instance.flavor
    else:
        flavor = getattr(instance, 'flavor', None)
    if flavor is None:
        return {}
    if isinstance(flavor, dict):
        specs = flavor.get('extra_specs')
    else:
        has_field = 'extra_specs' in getattr(flavor, 'fields', {})
        if has_field and not flavor.obj_attr_is_set('extra_specs'):
            return {}
        specs = getattr(flavor, 'extra_specs', None)
    return dict(specs or {})

"""nova-libvirt list, and the part of an instance every command shows.

``list`` runs often (scripts poll it) and only reads, so it reads the
instances' rows through the SQL API and their domains' states through the
libvirt host, without the objects layer (oslo.versionedobjects imports
oslo.messaging, oslo.service and eventlet: about as long as the rest of
the command's start-up together) and without the driver that needs it.
When an instance needs more than reading (a boot left it ``building``:
``instances.repair`` may have to save its state), or its flavor is not the
plain document that Nova 34 and this project write, the whole list is
made by ``instances.cmd_list`` through the objects layer instead, which
repairs, checks or refuses as it always did.
"""

import datetime

from oslo_serialization import jsonutils

from nova.cmd import output
from nova.db import api as db
from nova.virt.libvirt import host as libvirt_host
from nova.virt.libvirt import power_state

LIST = output.RowView([
    ('uuid', 'UUID'), ('name', 'Name'), ('vm_state', 'VM state'),
    ('power_state', 'Power state'), ('domain_state', 'Domain state'),
    ('image', 'Image')])

# The Flavor versions whose primitives this project writes or reads
# (Flavor 1.2, nova.objects.flavor): all carry ``swap``.
_FLAVOR_MAJOR = 1
_FLAVOR_MINOR_MAX = 2


def _utc(value):
    """A database time as the objects layer gives it: aware, in UTC."""
    if value is not None and value.utcoffset() is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value


def summarise(instance, swap_mb, host):
    """What every command shows of an instance, without its disks.

    :param instance: an Instance object or an instances row (the same
        attribute names).
    :param swap_mb: its flavor's swap (MiB).
    :param host: the nova.virt.libvirt.host.Host its domain would be on.
    :returns: a dict (uuid, name, image, sizes, states, domain, host,
        times; a note when the test driver cannot know the domain).
    :raises: HypervisorUnavailable.
    """
    domain_state = power_state.domain_state(host, instance)
    data = {
        'uuid': instance.uuid,
        'name': instance.display_name,
        'image': instance.image_ref,
        'root_gb': instance.root_gb,
        'ephemeral_gb': instance.ephemeral_gb,
        'swap_mb': swap_mb,
        'vm_state': instance.vm_state,
        'task_state': instance.task_state,
        'power_state': power_state.POWER_STATE_NAMES.get(
            instance.power_state or 0, 'pending'),
        'domain': libvirt_host.domain_name(instance),
        'domain_state': domain_state or 'not defined',
        'host': instance.host,
        'created_at': _utc(instance.created_at),
        'launched_at': _utc(instance.launched_at),
    }
    if domain_state is None and host.is_test_driver:
        data['note'] = ('%s keeps domains only in the process that made '
                        'them; power_state is the recorded one' % host.uri)
    return data


def plain_swap(row):
    """The swap (MiB) of the flavor in ``row``'s instance_extra; None
    unless the document is ``{"cur": <a nova Flavor 1.0-1.2 primitive
    with an integer swap>, ...}`` (the objects layer decides about any
    other: load, coerce or refuse it)."""
    if row.extra is None:
        return None
    try:
        current = jsonutils.loads(row.extra.flavor or 'null')['cur']
        version = current['nova_object.version'].split('.')
        swap = current['nova_object.data']['swap']
        plain = (current['nova_object.name'] == 'Flavor' and
                 current['nova_object.namespace'] == 'nova' and
                 len(version) == 2 and int(version[0]) == _FLAVOR_MAJOR and
                 0 <= int(version[1]) <= _FLAVOR_MINOR_MAX and
                 type(swap) is int)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return swap if plain else None


def cmd_list(cli):
    rows = db.instance_get_all(cli.context)
    # A row a boot left building may need a repair, which saves: objects.
    swaps = [None if row.vm_state == 'building' else plain_swap(row)
             for row in rows]
    if None in swaps:
        from nova.cmd import instances
        instances.cmd_list(cli)
        return
    host = libvirt_host.Host()
    cli.emit([summarise(row, swap, host) for row, swap in zip(rows, swaps)],
             LIST)

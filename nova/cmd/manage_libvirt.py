"""nova-manage libvirt: records for the local disks of older instances.

::

    nova-manage libvirt record_disks [--host HOST] [--instance UUID]
                                     [--max-count N]
                                     [--format raw|qcow2 --instance UUID
                                      --disk NAME]
    nova-manage libvirt show_disks INSTANCE [--json]

``record_disks`` gives every local disk of this host's instances that has
no layout record (a disk made by Nova 34 or older) the record its layout
proves, in batches of one database write each. It prints progress on
stderr and a summary on stdout: recorded, already recorded, and refused
with the reason. It is idempotent and resumable: a disk is only ever
recorded while it has no record, so a run that was killed is completed by
the next one. ``--format`` states the format of one Flat disk that could not
be told (its bytes start like qcow2 and ``disk.info`` does not say).

``show_disks`` prints every local disk of an instance with its record (or
"unrecorded" and what would be recorded, or why not) next to what is on
storage, read with the recorded or inferred format pinned.

Exit status: 0 when every local disk considered has a record; 1 when a
disk was refused, or ``--max-count`` left disks for another run, or on an
error; 2 on a usage error.
"""

import argparse
import re
import sys

from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import uuidutils

from nova.cmd import output
import nova.conf
from nova import exception

# The objects layer and imagebackend are imported by the commands that use
# them, so that `nova-manage db ...` and usage errors stay light.

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

#: Instances whose mappings are read, inferred and saved per batch (one
#: read and one write each).
BATCH_INSTANCES = 200

USAGE_ERROR = 2


def add_parsers(subparsers, conf):
    """Add the ``libvirt`` category to nova-manage's parser.

    :param conf: the ConfigOpts whose ``category`` the actions read.
    """
    category = subparsers.add_parser(
        'libvirt', help='Layout records of local disks of older instances.')
    actions = category.add_subparsers(dest='libvirt_action',
                                      metavar='ACTION')
    actions.required = True

    p = actions.add_parser(
        'record_disks', help='Record the layout of local disks that have '
        'none (made by Nova 34 or older).')
    p.add_argument('--host', default=None, dest='instances_host',
                   help='The compute host whose instances to consider '
                   '(default: [DEFAULT] host, this host\'s name).')
    p.add_argument('--instance', metavar='UUID', default=None,
                   help='Only this instance.')
    p.add_argument('--max-count', type=_positive_int, default=None,
                   metavar='N', dest='max_count',
                   help='Consider at most N unrecorded disks, then stop '
                   '(run again for the rest). An instance\'s disks are '
                   'recorded together: the first instance is taken whole '
                   'even if it has more than N.')
    p.add_argument('--format', choices=('raw', 'qcow2'), default=None,
                   dest='disk_format',
                   help='With --instance and --disk: the format of a Flat '
                   'disk whose format is ambiguous.')
    p.add_argument('--disk', metavar='NAME', default=None,
                   help='The disk --format is about (disk, disk.eph0, ...).')
    p.set_defaults(action_fn=lambda: record_disks(conf.category))

    p = actions.add_parser(
        'show_disks', help='Show the local disks of an instance, recorded '
        'or not.')
    p.add_argument('instance', metavar='INSTANCE', help='An instance uuid.')
    p.add_argument('--json', action='store_true',
                   help='One JSON document instead of a table.')
    p.set_defaults(action_fn=lambda: show_disks(conf.category))


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError('%r is not a whole number > 0' %
                                         text)
    return value


def _uuid(text):
    if not uuidutils.is_uuid_like(text):
        raise exception.InvalidUUID(uuid=text)
    return text.lower()


# --- record_disks ----------------------------------------------------------

class Summary:
    """What a record_disks run did, mapping by mapping."""

    def __init__(self):
        self.recorded = []       # (instance uuid, disk name)
        self.already = 0
        self.refused = []        # (instance uuid, disk name, reason)
        self.remaining = 0

    def as_dict(self):
        return {'recorded': len(self.recorded),
                'already_recorded': self.already,
                'refused': [{'instance': u, 'disk': d, 'reason': r}
                            for u, d, r in self.refused],
                'remaining': self.remaining}


#: The names an unrecorded disk can have (see legacy.py): what --disk
#: may name.
_LEGACY_DISK_NAME = re.compile(r'^disk(\.local|\.swap|\.eph[0-9]+)?$')


def _format_refusal(context, uuid, disk):
    """Why ``--disk disk --format`` cannot apply to instance ``uuid``
    (a name no disk without a record can have, or a disk recorded
    already), or None."""
    from nova import objects
    if not _LEGACY_DISK_NAME.match(disk):
        return ('--disk %r is not the name of a disk made before records '
                'existed (disk, disk.local, disk.eph<N>, disk.swap)' % disk)
    for bdm in objects.BlockDeviceMappingList.get_by_instance_uuid(
            context, uuid):
        record = bdm.get_disk_metadata() if bdm.is_local else None
        if record is not None and record.disk_name == disk:
            return ('disk %s of instance %s is recorded already (%s, '
                    '%s): --format is for a disk without a record' % (
                        disk, uuid, record.backend, record.format))
    return None


def record_disks(args, out=None, err=None):
    """``nova-manage libvirt record_disks``; returns the exit status."""
    from nova import context as nova_context
    from nova import objects
    out = out or sys.stdout
    err = err or sys.stderr
    if args.disk_format and not (args.instance and args.disk):
        print('nova-manage: --format needs --instance and --disk',
              file=err)
        return USAGE_ERROR
    if args.disk and not args.disk_format:
        print('nova-manage: --disk goes with --format', file=err)
        return USAGE_ERROR
    objects.register_all()
    context = nova_context.get_admin_context()
    formats = {}
    if args.instance:
        uuid = _uuid(args.instance)
        instances = [objects.Instance.get_by_uuid(context, uuid)]
        if args.disk_format:
            refusal = _format_refusal(context, uuid, args.disk)
            if refusal:
                print('nova-manage: %s' % refusal, file=err)
                return USAGE_ERROR
            formats[(uuid, args.disk)] = args.disk_format
    else:
        instances = list(objects.InstanceList.get_by_host(
            context, args.instances_host or CONF.host))
    summary = run(context, instances, formats=formats,
                  max_count=args.max_count,
                  progress=_progress_printer(err))
    _print_summary(summary, out)
    return 0 if not summary.refused and not summary.remaining else 1


def run(context, instances, formats=None, max_count=None, progress=None,
        manager=None, batch_instances=BATCH_INSTANCES):
    """Record what can be recorded for ``instances``, batch by batch.

    Each batch is one read of the mappings of up to ``batch_instances``
    instances and one write of every record inferred for them. A mapping
    that has a record when it is read is never written again, so a run
    that was killed is completed by the next one.

    :param max_count: consider at most this many unrecorded mappings
        (and always the first instance that has any, whole).
    :returns: a Summary.
    """
    from nova import objects
    from nova.virt.libvirt.imagebackend import manager as disk_manager
    manager = manager or disk_manager.DiskManager()
    summary = Summary()
    budget = max_count
    taken = 0
    total = len(instances)
    for start in range(0, total, batch_instances):
        batch = instances[start:start + batch_instances]
        by_uuid = {}
        for bdm in objects.BlockDeviceMappingList.get_by_instance_uuids(
                context, [i.uuid for i in batch]):
            by_uuid.setdefault(bdm.instance_uuid, []).append(bdm)
        todo = []
        for instance in batch:
            bdms = by_uuid.get(instance.uuid, [])
            local = [b for b in bdms if b.is_local]
            unrecorded = [b for b in local if b.driver_info is None]
            summary.already += len(local) - len(unrecorded)
            if not unrecorded:
                continue
            if budget is not None and budget < len(unrecorded) and taken:
                # An instance's disks are recorded together or not at all
                # in one run: its mappings name each other's disks. The
                # first instance of a run is taken whole whatever its
                # count, or one with more disks than N would never be.
                summary.remaining += len(unrecorded)
                continue
            if budget is not None:
                budget = max(0, budget - len(unrecorded))
            taken += 1
            todo.append((instance, bdms))
        if todo:
            for result in manager.record_legacy_disks(context, todo,
                                                      formats=formats):
                key = result.bdm.instance_uuid
                if result.recorded:
                    summary.recorded.append((key, result.disk_name))
                else:
                    summary.refused.append((key, result.disk_name,
                                            result.reason))
        if progress:
            progress(min(start + batch_instances, total), total, summary)
    return summary


def _progress_printer(stream):
    def show(done, total, summary):
        print('record_disks: %d/%d instances, %d disks recorded, %d '
              'refused' % (done, total, len(summary.recorded),
                           len(summary.refused)), file=stream)
        stream.flush()
    return show


def _print_summary(summary, out):
    rows = [('recorded', len(summary.recorded)),
            ('already recorded', summary.already),
            ('refused', len(summary.refused))]
    if summary.remaining:
        rows.append(('left for another run (--max-count)',
                     summary.remaining))
    print(_table([('Disks', lambda r: r[0]),
                  ('Count', lambda r: r[1])], rows), file=out)
    if summary.refused:
        print(_table([('Instance', lambda r: r[0]),
                      ('Disk', lambda r: r[1]),
                      ('Refused because', lambda r: r[2])],
                     summary.refused), file=out)


def _table(columns, rows):
    """A table of ``rows`` with ``columns`` as (title, text(row)) pairs."""
    return output.RowView([(title, title, text)
                           for title, text in columns]).table(rows)


# --- show_disks ------------------------------------------------------------

def show_disks(args, out=None):
    """``nova-manage libvirt show_disks``; returns the exit status."""
    from nova import context as nova_context
    from nova import objects
    out = out or sys.stdout
    objects.register_all()
    context = nova_context.get_admin_context()
    instance = objects.Instance.get_by_uuid(context, _uuid(args.instance))
    bdms = list(objects.BlockDeviceMappingList.get_by_instance_uuid(
        context, instance.uuid))
    disks = describe_disks(instance, bdms)
    data = {'uuid': instance.uuid, 'disks': disks}
    if args.json:
        print(jsonutils.dumps(data, indent=2, sort_keys=True), file=out)
    else:
        _print_disks(data, out)
    return 0


def describe_disks(instance, bdms, cache=None):
    """Every local mapping: its record (or what would be recorded, or why
    not) and what is on storage, read with that format pinned.

    :returns: [{'disk_name', 'status' ('recorded', 'unrecorded'),
        'record' (fields or None), 'refused' (reason or None),
        'on_disk' (from the backend's inspect(), or {'error': ...})}].
    """
    from nova.virt.libvirt.imagebackend import backends
    from nova.virt.libvirt.imagebackend import legacy
    inferred = {id(r.bdm): r for r in legacy.infer_disks(
        instance, bdms, cache=cache, adopt=False)}
    result = []
    for bdm in bdms:
        if not bdm.is_local:
            continue
        entry = {'mapping': bdm.id}
        try:
            record = bdm.get_disk_metadata()
        except exception.DiskMetadataInvalid as e:
            entry.update(disk_name='(mapping %s)' % bdm.id,
                         status='unreadable record', record=None,
                         refused=str(e), on_disk=None)
            result.append(entry)
            continue
        if record is not None:
            entry.update(status='recorded', refused=None)
        else:
            inference = inferred[id(bdm)]
            record = inference.record
            entry.update(status='unrecorded', refused=inference.reason)
            if record is None:
                entry.update(disk_name=inference.disk_name, record=None,
                             on_disk={'error': 'not read: its format is '
                                      'not known'})
                result.append(entry)
                continue
        entry.update(disk_name=record.disk_name,
                     record={name: getattr(record, name)
                             for name in sorted(record.fields)})
        try:
            entry['on_disk'] = backends.backend_for(
                instance, record, cache=cache).inspect()
        except exception.NovaException as e:
            entry['on_disk'] = {'error': str(e)}
        result.append(entry)
    return result


def _print_disks(data, out):
    columns = [
        ('Disk', lambda d: d['disk_name']),
        ('Status', lambda d: d['status']),
        ('Backend', lambda d: (d['record'] or {}).get('backend')),
        ('Format', lambda d: (d['record'] or {}).get('format')),
        ('Size', lambda d: output.human((d['record'] or {}).get('size'))),
        ('Source', lambda d: _source(d['record'])),
        ('On storage', lambda d: output.on_disk_summary(d.get('on_disk'))),
        ('Refused because', lambda d: d.get('refused')),
    ]
    print('Instance %s' % data['uuid'], file=out)
    print(_table(columns, data['disks']), file=out)


def _source(record):
    if not record:
        return None
    if record.get('image_id'):
        return 'image:%s' % record['image_id']
    if record.get('cache_name'):
        return 'template:%s' % record['cache_name']
    return 'unknown'

"""nova-libvirt: boot and inspect libvirt instances whose local disks are
laid out by persisted records.

::

    nova-libvirt [--config-file FILE] [--format table|json] COMMAND ...

    image-import FILE --disk-format raw|qcow2 [--name NAME]
    image-list
    boot --image ID --root-gb N --ephemeral-gb N --swap-mb N [--name NAME]
    show INSTANCE
    list
    destroy INSTANCE
    image-cache-cleanup

Without configuration everything lives in one state directory
(``[DEFAULT] state_path``, embedded default ``~/.local/state/nova-libvirt``):
the SQLite database (created and migrated on first use), the local image
store (``images/``), the instances and their image cache
(``instances/``, ``instances/_base``) and the locks
(``instances/locks``). New disks are Qcow2 overlays; the hypervisor is
libvirt's in-process test driver (``test:///default``). Exit status: 0 on
success, 1 on a failure (said on stderr), 2 on a usage error.
"""

import argparse
import socket
import sys
import warnings

from oslo_concurrency import opts as concurrency_opts
from oslo_config import cfg
from oslo_db import exception as db_exc
from oslo_db import options as db_options
from oslo_log import log as logging
from oslo_utils import timeutils
from oslo_utils import uuidutils

import nova.conf
from nova.conf import opts as conf_opts
from nova import context as nova_context
from nova.db import migration
from nova.cmd import output
from nova.cmd import progress as progress_mod
from nova import exception
from nova import image
from nova import utils

with warnings.catch_warnings():
    # oslo.versionedobjects imports oslo.messaging, which imports
    # oslo.service, which imports eventlet, which warns on import that it
    # is deprecated: noise on every run, and nothing this command's user
    # can act on.
    warnings.simplefilter('ignore')
    from nova import objects
    from nova.virt.libvirt import driver as libvirt_driver
    from nova.virt.libvirt.imagebackend import cache as image_cache
    from nova.virt.libvirt.imagebackend import manager as disk_manager

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

PROG = 'nova-libvirt'

_USAGE = """%(prog)s [--config-file FILE] [--format table|json] [--debug]
                    [OPTION ...] COMMAND [ARGS]

  image-import FILE --disk-format raw|qcow2 [--name NAME]
  image-list
  boot --image ID [--root-gb N] [--ephemeral-gb N] [--swap-mb N] [--name NAME]
  show INSTANCE
  list
  destroy INSTANCE
  image-cache-cleanup

"%(prog)s COMMAND --help" explains a command.""" % {'prog': PROG}

_EPILOG = """
Every [DEFAULT] and [libvirt] option of the configuration file can also
be given on the command line: --state_path DIR, --libvirt-connection_uri
URI, --database-connection URL, and so on ([group] name becomes
--group-name; a boolean name also has --noname). Without configuration
everything lives under $state_path (default ~/.local/state/nova-libvirt):
the SQLite database nova.sqlite (created and migrated on first use), the
image store images/, the instances' disks instances/UUID/, the image cache
instances/_base and the locks instances/locks. New disks are qcow2
overlays on raw bases (the embedded layout defaults). The hypervisor is
test:///default, libvirt's in-process test driver, whose domains live only
as long as the command that made them: show then reports the recorded power
state and a domain that is not defined. Use --libvirt-connection_uri
qemu:///system with --libvirt-virt_type kvm for real guests.
"""

_OUTPUT_OPTS = [
    cfg.StrOpt('format',
               default='table',
               choices=[('table', 'human-readable tables'),
                        ('json', 'one JSON document on stdout')],
               help='Output format of every command.'),
]


def _emit(data, table_printer):
    output.emit(data, table_printer, CONF.format)


# --- the commands -----------------------------------------------------

def _image_api(progress=None):
    api = image.API()
    return progress_mod.ProgressImageAPI(api, progress) if progress and \
        progress.enabled else api


def _driver(progress=None):
    cache = image_cache.ImageCache(image_api=_image_api(progress))
    return libvirt_driver.LibvirtDriver(
        disks=disk_manager.DiskManager(cache=cache))


def _find_instance(context, ref):
    """An instance by uuid, or by a display name that only it has."""
    if uuidutils.is_uuid_like(ref):
        return objects.Instance.get_by_uuid(context, ref.lower())
    matches = [i for i in objects.InstanceList.get_all(context)
               if i.display_name == ref]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise exception.InstanceNotFound(instance_id=ref)
    raise exception.InvalidInput(
        reason='%d instances are named %r; use a uuid (%s)' % (
            len(matches), ref, ', '.join(i.uuid for i in matches)))


def _power_state_name(state):
    return libvirt_driver.POWER_STATE_NAMES.get(state or 0, 'pending')


def _describe_disks(driver, instance, bdms):
    """Each local disk: target, record and what is on disk."""
    try:
        disks = driver.disks.local_disks(instance, bdms)
    except exception.NovaException as e:
        # A mapping without a readable record: show what there is.
        return [{'disk_name': bdm.device_name or 'mapping %s' % bdm.id,
                 'record': None, 'source': None,
                 'on_disk': {'error': str(e)}}
                for bdm in bdms if bdm.is_local]
    result = []
    for index, disk in enumerate(disks):
        record = disk.record
        try:
            on_disk = disk.backend.inspect()
        except exception.NovaException as e:
            on_disk = {'error': str(e)}
        result.append({
            'target': libvirt_driver.target_dev(index),
            'disk_name': record.disk_name,
            'role': disk.role,
            'source': record.source,
            'path': getattr(disk.backend, 'path', None),
            'record': {name: getattr(record, name)
                       for name in sorted(record.fields)},
            'on_disk': on_disk,
        })
    return result


def _describe(context, driver, instance, with_disks=True):
    domain_state = driver.get_domain_state(instance)
    data = {
        'uuid': instance.uuid,
        'name': instance.display_name,
        'image': instance.image_ref,
        'root_gb': instance.root_gb,
        'ephemeral_gb': instance.ephemeral_gb,
        'swap_mb': instance.flavor.swap,
        'vm_state': instance.vm_state,
        'task_state': instance.task_state,
        'power_state': _power_state_name(instance.power_state),
        'domain': libvirt_driver.libvirt_host.domain_name(instance),
        'domain_state': domain_state or 'not defined',
        'host': instance.host,
        'created_at': instance.created_at,
        'launched_at': instance.launched_at,
    }
    if domain_state is None and driver.host.is_test_driver:
        data['note'] = ('%s keeps domains only in the process that made '
                        'them; power_state is the recorded one' %
                        driver.host.uri)
    if with_disks:
        bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
            context, instance.uuid)
        data['disks'] = _describe_disks(driver, instance, bdms)
    return data


def cmd_image_import(context):
    progress = progress_mod.Progress()
    args = CONF.command
    try:
        meta = image.API().import_file(
            context, args.file, args.disk_format, name=args.display_name,
            progress=progress.bytes_callback('importing %s' % args.file))
    finally:
        progress.done()
    _emit(meta, _field_table_printer)


def _field_table_printer(data):
    print(output.field_table(data))


def cmd_image_list(context):
    images = image.API().get_all(context)
    _emit(images, lambda rows: output.print_rows([
        ('ID', lambda i: i['id']), ('Name', lambda i: i.get('name')),
        ('Disk format', lambda i: i['disk_format']),
        ('Size', lambda i: output.human(i['size'])),
        ('Virtual size', lambda i: output.human(i.get('virtual_size'))),
        ('Status', lambda i: i['status'])], rows))


def _mappings(image_id, ephemeral_gb, swap_mb):
    """What the API makes of a flavor's disks: root from the image,
    one ext4 ephemeral, one swap."""
    mappings = [dict(source_type='image', destination_type='local',
                     boot_index=0, image_id=image_id, device_type='disk',
                     delete_on_termination=True)]
    if ephemeral_gb:
        mappings.append(dict(source_type='blank', destination_type='local',
                             boot_index=-1, guest_format='ext4',
                             volume_size=ephemeral_gb, device_type='disk',
                             delete_on_termination=True))
    if swap_mb:
        mappings.append(dict(source_type='blank', destination_type='local',
                             boot_index=-1, guest_format='swap',
                             volume_size=swap_mb, device_type='disk',
                             delete_on_termination=True))
    return mappings


def cmd_boot(context):
    args = CONF.command
    progress = progress_mod.Progress()
    driver = _driver(progress)
    image_meta = image.API().get(context, args.image)
    uuid = uuidutils.generate_uuid()
    hostname = socket.gethostname()
    instance = objects.Instance(
        context, uuid=uuid, display_name=args.display_name or 'instance-%s' %
        uuid[:8], host=hostname, node=hostname, image_ref=image_meta['id'],
        root_gb=args.root_gb, ephemeral_gb=args.ephemeral_gb,
        flavor=objects.Flavor.from_sizes(args.root_gb, args.ephemeral_gb,
                                         args.swap_mb),
        vm_state='building', task_state='spawning',
        power_state=libvirt_driver.NOSTATE)
    instance.create()
    try:
        for values in _mappings(image_meta['id'], args.ephemeral_gb,
                                args.swap_mb):
            objects.BlockDeviceMapping(context, instance_uuid=uuid,
                                       **values).create()
        bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(context,
                                                                   uuid)
        driver.spawn(context, instance, image_meta, bdms,
                     progress=progress.step)
    except Exception:
        # As upstream's compute manager: the instance stays, in ERROR,
        # with its records; destroy removes it.
        instance.vm_state = 'error'
        instance.task_state = None
        try:
            instance.power_state = driver.get_power_state(instance)
        except exception.NovaException:
            instance.power_state = libvirt_driver.NOSTATE
        instance.save()
        raise
    finally:
        progress.done()
    instance.vm_state = 'active'
    instance.task_state = None
    instance.power_state = driver.get_power_state(instance)
    instance.launched_at = timeutils.utcnow()
    instance.save()
    _emit(_describe(context, driver, instance), output.print_instance)


def cmd_show(context):
    driver = _driver()
    instance = _find_instance(context, CONF.command.instance)
    _emit(_describe(context, driver, instance), output.print_instance)


def cmd_list(context):
    driver = _driver()
    rows = [_describe(context, driver, i, with_disks=False)
            for i in objects.InstanceList.get_all(context)]
    _emit(rows, lambda rows: output.print_rows([
        ('UUID', lambda r: r['uuid']), ('Name', lambda r: r['name']),
        ('VM state', lambda r: r['vm_state']),
        ('Power state', lambda r: r['power_state']),
        ('Domain state', lambda r: r['domain_state']),
        ('Image', lambda r: r['image'])], rows))


def cmd_destroy(context):
    driver = _driver()
    instance = _find_instance(context, CONF.command.instance)
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        context, instance.uuid)
    driver.destroy(context, instance, bdms)
    instance.destroy()
    _emit({'uuid': instance.uuid, 'name': instance.display_name,
           'status': 'deleted'}, _field_table_printer)


def cmd_image_cache_cleanup(context):
    removed = image_cache.get_cache().cleanup(context)
    _emit({'removed': removed, 'count': len(removed)}, _field_table_printer)


# --- the command line -------------------------------------------------

def _add_parsers(subparsers):
    def add_parser(name, **kwargs):
        # The parent's usage is a whole synopsis: not a prefix for ours.
        return subparsers.add_parser(name, prog='%s %s' % (PROG, name),
                                     **kwargs)

    p = add_parser(
        'image-import', help='Import a disk image file into the image store.',
        description='Copy FILE into the local image store as a new image. '
        'Its content must be the declared --disk-format and pass the same '
        'checks as a fetch (no backing file, no external data file, '
        'qemu-img agrees). Prints the new image (its id is what boot '
        '--image takes). Shows progress on a terminal.')
    p.add_argument('file', metavar='FILE', help='The image file to import.')
    p.add_argument('--disk-format', required=True, dest='disk_format',
                   choices=('raw', 'qcow2'),
                   help='What the file is: raw or qcow2.')
    p.add_argument('--name', default=None, dest='display_name',
                   metavar='NAME', help='A name for the image.')
    p.set_defaults(action_fn=cmd_image_import)

    p = add_parser(
        'image-list', help='List the images in the image store.',
        description='List the images in the local image store.')
    p.set_defaults(action_fn=cmd_image_list)

    p = add_parser(
        'boot', help='Create an instance and start it.',
        description='Create an instance with a root disk from --image of '
        '--root-gb GB (0: the image\'s virtual size), an ext4 ephemeral '
        'disk of --ephemeral-gb GB and a swap disk of --swap-mb MiB (0: '
        'none), record every disk\'s layout in the database, then create '
        'the disks and start the guest. The layout comes from the layout '
        'options of [libvirt] and [DEFAULT] (see nova.conf.sample) as they '
        'are now, and is kept for the instance\'s life. On a failure '
        'the instance stays in ERROR (destroy removes it). Prints the '
        'instance as show does. Shows progress on a terminal.')
    p.add_argument('--image', required=True, metavar='ID',
                   help='The image id (see image-list).')
    for opt, what in (('--root-gb', 'Root disk size in GB (0: image size).'),
                      ('--ephemeral-gb', 'Ephemeral disk size in GB '
                       '(0: none).'),
                      ('--swap-mb', 'Swap disk size in MiB (0: none).')):
        p.add_argument(opt, type=_non_negative_int, default=0, metavar='N',
                       dest=opt[2:].replace('-', '_'), help=what)
    p.add_argument('--name', default=None, dest='display_name',
                   metavar='NAME', help='A display name for the instance.')
    p.set_defaults(action_fn=cmd_boot)

    p = add_parser(
        'show', help='Show an instance, its domain and its disks.',
        description='Show an instance: its recorded state, its domain\'s '
        'state on this host, and for each local disk its target, its '
        'persisted layout record and what is on disk (read with the '
        'recorded format pinned).')
    p.add_argument('instance', metavar='INSTANCE',
                   help='An instance uuid, or a name only it has.')
    p.set_defaults(action_fn=cmd_show)

    p = add_parser(
        'list', help='List instances.',
        description='List every instance with its recorded and live state.')
    p.set_defaults(action_fn=cmd_list)

    p = add_parser(
        'destroy', help='Stop an instance and delete it with its disks.',
        description='Stop and undefine the domain (a missing one is fine), '
        'remove every disk as its record says, and delete the instance.')
    p.add_argument('instance', metavar='INSTANCE',
                   help='An instance uuid, or a name only it has.')
    p.set_defaults(action_fn=cmd_destroy)

    p = add_parser(
        'image-cache-cleanup', help='Remove unused image cache entries.',
        description='Remove the bases and templates in the image cache that '
        'no disk record names and that were last used longer ago than '
        '[image_cache] remove_unused_original_minimum_age_seconds (nothing '
        'when remove_unused_base_images is off). Prints what it removed.')
    p.set_defaults(action_fn=cmd_image_cache_cleanup)


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError('%r is not a whole number >= 0' %
                                         text)
    return value


_COMMAND_OPT = cfg.SubCommandOpt(
    'command', title='Commands', dest='command', handler=_add_parsers,
    help='image-import, image-list, boot, show, list, destroy')


def _register_config_cli_opts():
    """The [DEFAULT] and [libvirt] options, [database] connection and
    [oslo_concurrency] lock_path on the command line too (--state_path...).

    Not [image_cache]: argparse would take a command's --image for an
    abbreviation of --image_cache-*.
    """
    for group, group_opts in conf_opts.list_opts():
        name = getattr(group, 'name', group)
        if name in ('DEFAULT', 'libvirt'):
            CONF.register_cli_opts(group_opts,
                                   group=None if name == 'DEFAULT' else name)
    CONF.register_cli_opts(
        [o for o in db_options.database_opts if o.name == 'connection'],
        group='database')
    [(group, lock_opts)] = concurrency_opts.list_opts()
    CONF.register_cli_opts(
        [o for o in lock_opts if o.name == 'lock_path'], group=group)


def main(argv=None):
    """Run one command; ``argv`` defaults to ``sys.argv[1:]``.

    :returns: the exit status.
    """
    # Deprecation chatter of libraries is not for this command's users.
    warnings.filterwarnings('ignore', category=DeprecationWarning)
    CONF.register_cli_opts(_OUTPUT_OPTS)
    CONF.register_cli_opt(_COMMAND_OPT)
    _register_config_cli_opts()
    logging.register_options(CONF)
    # stdout carries the command's output (JSON for scripts): logs go to
    # stderr, and only warnings unless --debug.
    CONF.set_default('use_stderr', True)
    CONF(sys.argv[1:] if argv is None else argv, project='nova', prog=PROG,
         usage=_USAGE,
         description=__doc__.split('\n\n')[0].replace('\n', ' '),
         epilog=_EPILOG)
    levels = logging.get_default_log_levels() + ['alembic=WARN']
    if not CONF.debug:
        levels.append('nova=WARN')
    logging.set_defaults(default_log_levels=levels)
    logging.setup(CONF, PROG)
    objects.register_all()
    try:
        utils.ensure_tree(CONF.state_path, mode=0o700)
        migration.db_ensure_current()
        CONF.command.action_fn(nova_context.get_admin_context())
    except (exception.NovaException, db_exc.DBError, OSError) as e:
        LOG.debug('%s failed', PROG, exc_info=True)
        print('%s: %s' % (PROG, e), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""nova-libvirt: boot and inspect libvirt instances whose local disks are
laid out by persisted records.

::

    nova-libvirt [--config-file FILE] [-f table|json] [-c NAME] COMMAND ...

    image-import FILE --disk-format raw|qcow2|ploop [--name NAME]
    image-list
    image-delete IMAGE
    boot --image ID [--root-gb N] [--ephemeral-gb N] [--swap-mb N]
         [--name NAME] [--config-drive]
    show INSTANCE
    list
    destroy INSTANCE
    snapshot INSTANCE --name NAME
    rescue INSTANCE [--image ID]
    unrescue INSTANCE
    image-cache-cleanup

Without configuration everything lives in one state directory
(``[DEFAULT] state_path``, embedded default ``~/.local/state/nova-libvirt``):
the SQLite database (created and migrated on first use), the local image
store (``images/``), the instances and their image cache
(``instances/``, ``instances/_base``) and the locks
(``instances/locks``). New disks are Qcow2 overlays; the hypervisor is
libvirt's in-process test driver (``test:///default``). Exit status: 0 on
success, 1 on a failure (one line on stderr naming what failed and what to
do; ``--debug`` adds the traceback), 2 on a usage error.

This module parses the command line and reports errors only: it imports
neither the database nor the objects layer, so that ``--help`` and usage
errors answer at once. A command's module is imported when it runs.
"""

import argparse
import contextlib
import importlib
import io
import sys
import traceback
import warnings

from oslo_concurrency import opts as concurrency_opts
from oslo_config import cfg
from oslo_db import options as db_options
from oslo_log import log as logging

from nova.cmd import errors
from nova.cmd import signals
import nova.conf
from nova.conf import opts as conf_opts

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

PROG = 'nova-libvirt'
DIST = 'nova-libvirt-disks'

_USAGE = """%(prog)s [--config-file FILE] [-f table|json] [-c NAME] [--debug]
                    [OPTION ...] COMMAND [ARGS]

  image-import FILE --disk-format raw|qcow2|ploop [--name NAME]
  image-list
  image-delete IMAGE
  boot --image ID [--root-gb N] [--ephemeral-gb N] [--swap-mb N] [--name NAME]
       [--config-drive]
  show INSTANCE
  list
  destroy INSTANCE
  snapshot INSTANCE --name NAME
  rescue INSTANCE [--image ID]
  unrescue INSTANCE
  image-cache-cleanup

"%(prog)s COMMAND --help" explains a command.""" % {'prog': PROG}

_EPILOG = """
Every [DEFAULT] and [libvirt] option of the configuration file can also
be given on the command line: --state_path DIR, --libvirt-connection_uri
URI, --database-connection URL, and so on ([group] name becomes
--group-name; a boolean name also has --noname). -f/--format and -c also
work after the command (nova-libvirt list -f json). Without configuration
everything lives under $state_path (default ~/.local/state/nova-libvirt):
the SQLite database nova.sqlite (created and migrated on first use), the
image store images/, the instances' disks instances/UUID/, the image cache
instances/_base and the locks instances/locks. New disks are qcow2
overlays on raw bases (the embedded layout defaults). The hypervisor is
test:///default, libvirt's in-process test driver, whose domains live only
as long as the command that made them: show then reports the recorded power
state and a domain that is not defined. Use --libvirt-connection_uri
qemu:///system with --libvirt-virt_type kvm for real guests. Exit status:
0 on success, 1 on a failure (one line on stderr; --debug adds the
traceback), 2 on a usage error.
"""

_OUTPUT_OPTS = [
    cfg.StrOpt('format', short='f', default='table', metavar='table|json',
               help='Output format of every command: table (for people) '
                    'or json (one document on stdout, for scripts).'),
    cfg.MultiStrOpt('column', short='c', default=[], metavar='NAME',
                    help='Print only this field or column (its JSON key or '
                         'its table title); repeat for more.'),
]

#: Each command's function, imported only when it runs.
_ACTIONS = {
    'image-import': 'nova.cmd.images:cmd_image_import',
    'image-list': 'nova.cmd.images:cmd_image_list',
    'image-delete': 'nova.cmd.images:cmd_image_delete',
    'boot': 'nova.cmd.instances:cmd_boot',
    'show': 'nova.cmd.instances:cmd_show',
    'list': 'nova.cmd.listing:cmd_list',
    'destroy': 'nova.cmd.instances:cmd_destroy',
    'snapshot': 'nova.cmd.instances:cmd_snapshot',
    'rescue': 'nova.cmd.instances:cmd_rescue',
    'unrescue': 'nova.cmd.instances:cmd_unrescue',
    'image-cache-cleanup': 'nova.cmd.images:cmd_image_cache_cleanup',
}


class Invocation:
    """One run of a command: its context, its arguments, how to print."""

    def __init__(self, context, args, fmt, columns):
        self.context = context
        self.args = args
        self.fmt = fmt
        self.columns = columns

    def emit(self, data, view):
        from nova.cmd import output
        output.emit(data, view, self.fmt, self.columns)

    @staticmethod
    def uuid(ref):
        """A uuid from the command line, in canonical (lower) case."""
        from oslo_utils import uuidutils
        return ref.lower() if uuidutils.is_uuid_like(ref) else ref


# --- the command line -------------------------------------------------

def _add_output_arguments(parser):
    # The openstack CLI habit: output options after the sub-command too.
    # Their own dests: a sub-parser's defaults would otherwise overwrite
    # the global options' values.
    parser.add_argument('-f', '--format', dest='sub_format', default=None,
                        choices=('table', 'json'),
                        help='Output format (as the global --format).')
    parser.add_argument('-c', '--column', dest='sub_columns',
                        action='append', default=[], metavar='NAME',
                        help='Print only this field or column; repeat for '
                             'more.')


def _add_parsers(subparsers):
    def add_parser(name, **kwargs):
        # The parent's usage is a whole synopsis: not a prefix for ours.
        parser = subparsers.add_parser(name, prog='%s %s' % (PROG, name),
                                       **kwargs)
        parser.set_defaults(action=_ACTIONS[name])
        _add_output_arguments(parser)
        return parser

    p = add_parser(
        'image-import', help='Import a disk image file into the image store.',
        description='Copy FILE into the local image store as a new image. '
        'Its content must be the declared --disk-format and pass the same '
        'checks as a fetch (no backing file, no external data file, '
        'qemu-img agrees); an empty file is refused. Prints the new image '
        '(its id is what boot --image takes). Shows progress on a '
        'terminal.')
    p.add_argument('file', metavar='FILE', help='The image file to import.')
    p.add_argument('--disk-format', required=True, dest='disk_format',
                   choices=('raw', 'qcow2', 'ploop'),
                   help='What the file is: raw, qcow2 or ploop (a '
                        'ploop root.hds, qemu-img\'s parallels).')
    p.add_argument('--name', default=None, dest='display_name',
                   metavar='NAME', help='A name for the image.')

    add_parser('image-list', help='List the images in the image store.',
               description='List the images in the local image store.')

    p = add_parser(
        'image-delete', help='Delete an image no disk is made from.',
        description='Remove IMAGE from the local image store. Refused '
        'while a disk record or an instance names it: destroy those '
        'instances first. Cached copies in the image cache go with '
        'image-cache-cleanup.')
    p.add_argument('image', metavar='IMAGE', help='The image id.')

    p = add_parser(
        'boot', help='Create an instance and start it.',
        description='Create an instance with a root disk from --image of '
        '--root-gb GB (0: the image\'s virtual size), an ext4 ephemeral '
        'disk of --ephemeral-gb GB and a swap disk of --swap-mb MiB (0: '
        'none), record every disk\'s layout in the database, then create '
        'the disks and start the guest. The layout comes from the layout '
        'options of [libvirt] and [DEFAULT] (see nova.conf.sample) as they '
        'are now, and is kept for the instance\'s life. On a failure, '
        'Ctrl-C or SIGTERM the disks it made are removed and the instance '
        'stays in ERROR (destroy removes it). Prints the instance as show '
        'does, with what stat says of each disk. Shows progress on a '
        'terminal.')
    p.add_argument('--image', required=True, metavar='ID',
                   help='The image id (see image-list).')
    for opt, what in (('--root-gb', 'Root disk size in GB (0, the default: '
                       'the image\'s size).'),
                      ('--ephemeral-gb', 'Ephemeral disk size in GB '
                       '(0, the default: none).'),
                      ('--swap-mb', 'Swap disk size in MiB (0, the '
                       'default: none).')):
        p.add_argument(opt, type=_non_negative_int, default=0, metavar='N',
                       dest=opt[2:].replace('-', '_'), help=what)
    p.add_argument('--name', default=None, dest='display_name',
                   metavar='NAME', help='A display name for the instance.')
    p.add_argument('--config-drive', action='store_true',
                   dest='config_drive',
                   help='Attach a config drive (disk.config, [DEFAULT] '
                        'config_drive_format; always with [DEFAULT] '
                        'force_config_drive) holding the instance\'s '
                        'metadata.')

    p = add_parser(
        'show', help='Show an instance, its domain and its disks.',
        description='Show an instance: its recorded state, its domain\'s '
        'state on this host, and for each local disk its target, its '
        'persisted layout record and what is on disk (read with the '
        'recorded format pinned; anything at a disk\'s path that is not '
        'a regular file or block device is not opened).')
    p.add_argument('instance', metavar='INSTANCE',
                   help='An instance uuid, or a name only it has.')

    add_parser('list', help='List instances.',
               description='List every instance with its recorded and '
               'live state.')

    p = add_parser(
        'destroy', help='Stop an instance and delete it with its disks.',
        description='Stop and undefine the domain (a missing one is fine), '
        'remove every disk as its record says, and delete the instance.')
    p.add_argument('instance', metavar='INSTANCE',
                   help='An instance uuid, or a name only it has.')

    p = add_parser(
        'snapshot', help='Make an image from an instance\'s root disk.',
        description='Copy the root disk into a new image of the image '
        'store, read with the format its record says (qemu-img convert -f '
        '<recorded format>; never probed) and declared [libvirt] '
        'snapshot_image_format (default: the disk\'s recorded format). A '
        'running guest is saved (managed save) for the copy and restored '
        'after it, paused if it was. The '
        'image passes the same checks as an import; booting from it goes '
        'through the same verified fetch as any image. Prints the new '
        'image.')
    p.add_argument('instance', metavar='INSTANCE',
                   help='An instance uuid, or a name only it has.')
    p.add_argument('--name', required=True, dest='image_name',
                   metavar='NAME', help='The new image\'s name.')

    p = add_parser(
        'rescue', help='Boot an instance from a rescue disk.',
        description='Stop the guest, make a rescue disk (disk.rescue) from '
        '--image, else [libvirt] rescue_image_id, else the instance\'s own '
        'image (its record written first, the image fetched and verified '
        'as for a boot), and start the guest from it with its own disks '
        'attached after it, each as recorded. unrescue undoes it.')
    p.add_argument('instance', metavar='INSTANCE',
                   help='An instance uuid, or a name only it has.')
    p.add_argument('--image', default=None, metavar='ID',
                   help='The rescue image id (see image-list).')

    p = add_parser(
        'unrescue', help='Boot a rescued instance from its own disks again.',
        description='Stop the rescued guest, remove the rescue disk and its '
        'record, and start the guest from its own disks.')
    p.add_argument('instance', metavar='INSTANCE',
                   help='An instance uuid, or a name only it has.')

    add_parser(
        'image-cache-cleanup', help='Remove unused image cache entries.',
        description='Remove the bases and templates in the image cache that '
        'no disk record names and that were last used longer ago than '
        '[image_cache] remove_unused_original_minimum_age_seconds (nothing '
        'when remove_unused_base_images is off). Prints what it removed.')


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
    help=', '.join(_ACTIONS))


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


def _version():
    from importlib import metadata
    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        return 'unknown (not installed)'


def _parse(argv):
    CONF.register_cli_opts(_OUTPUT_OPTS)
    CONF.register_cli_opt(_COMMAND_OPT)
    _register_config_cli_opts()
    logging.register_options(CONF)
    # stdout carries the command's output (JSON for scripts): logs go to
    # stderr, and only warnings unless --debug.
    CONF.set_default('use_stderr', True)
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            CONF(argv, project='nova', prog=PROG, usage=_USAGE,
                 version=_version(),
                 description=__doc__.split('\n\n')[0].replace('\n', ' '),
                 epilog=_EPILOG)
    except SystemExit as e:
        # oslo.config refuses an option's value by printing "argument
        # --NAME: Invalid ..." and exiting 1: a usage error (2) here.
        text = said.getvalue().strip()
        if e.code == 1 and text.startswith('argument --'):
            raise errors.UsageError(text) from None
        sys.stderr.write(said.getvalue())
        raise
    sys.stderr.write(said.getvalue())
    fmt = CONF.command.sub_format or CONF.format
    if fmt not in ('table', 'json'):
        raise errors.UsageError(
            'argument -f/--format: invalid choice: %r (choose from table, '
            'json)' % fmt)
    return fmt, list(CONF.column) + list(CONF.command.sub_columns)


def _setup_logging():
    # oslo.service says which backend it loaded when the objects layer
    # imports it: nothing for this command's users.
    levels = logging.get_default_log_levels() + [
        'alembic=WARN', 'oslo_service=WARN']
    if not CONF.debug:
        levels.append('nova=WARN')
    logging.set_defaults(default_log_levels=levels)
    logging.setup(CONF, PROG)


def _run(fmt, columns):
    from nova.cmd import state
    context = state.open_state()
    module, function = CONF.command.action.split(':')
    action = getattr(importlib.import_module(module), function)
    action(Invocation(context, CONF.command, fmt, columns))


def _fail(exc, debug):
    if debug:
        traceback.print_exception(exc)
    message, status = errors.describe(exc, getattr(CONF, 'state_path',
                                                   None))
    if status == errors.USAGE:
        print('%s: error: %s' % (PROG, message), file=sys.stderr)
    else:
        print('%s: %s' % (PROG, message), file=sys.stderr)
    return status


def main(argv=None):
    """Run one command; ``argv`` defaults to ``sys.argv[1:]``.

    :returns: the exit status (0, 1 for a failure, 2 for a usage error).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    # Deprecation chatter of libraries is not for this command's users.
    warnings.filterwarnings('ignore', category=DeprecationWarning)
    # eventlet (imported by oslo.service, through oslo.versionedobjects)
    # warns that it is deprecated; this project never uses it.
    warnings.filterwarnings('ignore', module=r'oslo_service\.')
    signals.install()
    debug = '--debug' in argv or '-d' in argv
    try:
        fmt, columns = _parse(argv)
        debug = CONF.debug
        _setup_logging()
        _run(fmt, columns)
    except SystemExit as e:
        # argparse: --help, --version (0) and usage errors (2).
        return e.code if isinstance(e.code, int) else errors.USAGE
    except BaseException as e:
        return _fail(e, debug)
    return 0


if __name__ == '__main__':
    sys.exit(main())

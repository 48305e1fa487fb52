"""nova-manage: administration commands.

::

    nova-manage [--config-file FILE] db sync [VERSION]
    nova-manage [--config-file FILE] db version
    nova-manage [--config-file FILE] libvirt record_disks|show_disks ...

``db sync`` upgrades the database that ``[database]/connection`` names to
VERSION (an alembic revision id or a unique prefix of one; default: the
newest). ``db version`` prints the database's revision, or ``None`` for an
empty database. ``libvirt`` records the layout of local disks made before
records existed (see nova.cmd.manage_libvirt). Exit status: 0 on success,
1 on a failure (one line on stderr naming what failed and what to do;
``--debug`` adds the traceback), 2 on a usage error.
"""

import sys
import traceback
import warnings

from oslo_config import cfg
from oslo_log import log as logging

from nova.cmd import errors
from nova.cmd import manage_libvirt
from nova.cmd import signals
import nova.conf
from nova.db import migration

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)


def _db_sync():
    migration.db_sync(CONF.category.target_version)


def _db_version():
    print(migration.db_version())


def _add_parsers(subparsers):
    db = subparsers.add_parser('db', help='Database commands.')
    actions = db.add_subparsers(dest='db_action', metavar='ACTION')
    actions.required = True
    sync = actions.add_parser(
        'sync', help='Upgrade the database to VERSION (default: newest).')
    sync.add_argument('target_version', metavar='VERSION', nargs='?',
                      default=None)
    sync.set_defaults(action_fn=_db_sync)
    version = actions.add_parser(
        'version', help="Print the database's revision.")
    version.set_defaults(action_fn=_db_version)
    manage_libvirt.add_parsers(subparsers, CONF)


_CATEGORY_OPT = cfg.SubCommandOpt('category', title='Command categories',
                                  handler=_add_parsers)


def main(argv=None):
    """Run one command; ``argv`` defaults to ``sys.argv[1:]``.

    :returns: the exit status (0, 1 for a failure, 2 for a usage error).
        A failure is one line on stderr saying what failed and what to
        do; ``--debug`` adds the traceback.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    warnings.filterwarnings('ignore', category=DeprecationWarning)
    # eventlet (imported by oslo.service, through oslo.versionedobjects)
    # warns that it is deprecated; this project never uses it.
    warnings.filterwarnings('ignore', module=r'oslo_service\.')
    signals.install()
    debug = '--debug' in argv or '-d' in argv
    try:
        CONF.register_cli_opt(_CATEGORY_OPT)
        logging.register_options(CONF)
        # stdout carries the output (JSON for scripts): logs go to stderr.
        CONF.set_default('use_stderr', True)
        # Our own INFO line says what db sync did; alembic's are chatter,
        # and so is oslo.service saying which backend it loaded.
        logging.set_defaults(
            default_log_levels=logging.get_default_log_levels() +
            ['alembic=WARN', 'oslo_service=WARN'])
        CONF(argv, project='nova', prog='nova-manage')
        debug = CONF.debug
        logging.setup(CONF, 'nova')
        status = CONF.category.action_fn()
    except SystemExit as e:
        # argparse: --help (0) and usage errors (2).
        return e.code if isinstance(e.code, int) else errors.USAGE
    except BaseException as e:
        if debug:
            traceback.print_exception(e)
        message, status = errors.describe(e, getattr(CONF, 'state_path',
                                                     None))
        print('nova-manage: %s%s' % ('error: ' if status == errors.USAGE
                                     else '', message), file=sys.stderr)
        return status
    return status or 0


if __name__ == '__main__':
    sys.exit(main())

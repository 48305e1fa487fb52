"""``[database]``: oslo.db's options, with this project's SQLite default."""

from oslo_config import cfg
from oslo_db import options as oslo_db_options

from nova.conf import paths

_DEFAULT_SQL_CONNECTION = 'sqlite:///' + paths.state_path_def('nova.sqlite')

sqlite_opts = [
    cfg.FloatOpt('sqlite_busy_timeout',
                 default=60.0,
                 min=0,
                 help='Seconds a SQLite connection waits for another '
                      'process\'s write to finish before it gives up with '
                      '"database is locked" (and the write is retried). '
                      'Only SQLite databases use it; the embedded default '
                      'is one.'),
]


def register_opts(conf):
    conf.register_opts(oslo_db_options.database_opts, group='database')
    conf.register_opts(sqlite_opts, group='database')
    # Set on the option itself, not with conf.set_default: ConfigOpts.reset()
    # (every config fixture's cleanup) forgets conf-level defaults.
    cfg.set_defaults(oslo_db_options.database_opts,
                     connection=_DEFAULT_SQL_CONNECTION)


def list_opts():
    # oslo.db publishes its own options; the sample shows our default.
    return {'database': oslo_db_options.database_opts + sqlite_opts}

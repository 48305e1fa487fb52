"""``[database]``: oslo.db's options, with this project's SQLite default."""

from oslo_db import options as oslo_db_options

from nova.conf import paths

_DEFAULT_SQL_CONNECTION = 'sqlite:///' + paths.state_path_def('nova.sqlite')


def register_opts(conf):
    oslo_db_options.set_defaults(conf, connection=_DEFAULT_SQL_CONNECTION)


def list_opts():
    # oslo.db publishes its own options; the sample shows our default.
    return {'database': oslo_db_options.database_opts}

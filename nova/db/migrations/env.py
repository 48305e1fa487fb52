"""Alembic environment for the nova database.

A caller that already holds a connection (``nova.db.migration.db_sync``,
the migration tests) passes it as ``config.attributes['connection']`` and
keeps control of its transaction. Otherwise the URL comes from
``[database]/connection``.
"""

from alembic import context
import sqlalchemy as sa

import nova.conf
from nova.db import models

CONF = nova.conf.CONF
config = context.config
target_metadata = models.BASE.metadata


def _url():
    return config.get_main_option('sqlalchemy.url') or CONF.database.connection


def run_migrations_offline():
    """Write the SQL to stdout instead of running it."""
    context.configure(url=_url(), target_metadata=target_metadata,
                      literal_binds=True,
                      dialect_opts={'paramstyle': 'named'})
    with context.begin_transaction():
        context.run_migrations()


def _run(connection):
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connection = config.attributes.get('connection')
    if connection is not None:
        _run(connection)
        return
    engine = sa.create_engine(_url(), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

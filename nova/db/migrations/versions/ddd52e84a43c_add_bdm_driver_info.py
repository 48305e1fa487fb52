"""Add block_device_mapping.driver_info

The persisted layout record of a local disk (LibvirtDiskMetadata as JSON),
on the live and the shadow table. Nullable (existing rows have no record
until the libvirt driver writes one) and never searched, so not indexed.

This is the only change this project makes to a Nova 34.0.0 database: it
follows that release's head, ``ab450ba04102``, as it would in Nova's own
``nova/db/main/migrations/versions/``.

Revision ID: ddd52e84a43c
Revises: ab450ba04102
Create Date: 2026-11-30 13:46:00
"""

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'ddd52e84a43c'
down_revision = 'ab450ba04102'
branch_labels = None
depends_on = None


def upgrade():
    # Offline (``alembic upgrade --sql``) there is no database to look at:
    # the SQL adds both columns.
    inspector = (None if op.get_context().as_sql else
                 sa.inspect(op.get_bind()))
    for table in ('block_device_mapping', 'shadow_block_device_mapping'):
        # MySQL/MariaDB commit each ALTER TABLE at once: a run that stopped
        # between the two tables finishes here instead of failing.
        if inspector is not None and 'driver_info' in {
                c['name'] for c in inspector.get_columns(table)}:
            continue
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(
                sa.Column('driver_info', sa.Text, nullable=True))

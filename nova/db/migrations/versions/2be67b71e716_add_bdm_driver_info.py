"""Add block_device_mapping.driver_info

The persisted layout record of a local disk (LibvirtDiskMetadata as JSON),
on the live and the shadow table. Nullable (existing rows have no record
until the libvirt driver writes one) and never searched, so not indexed.

Revision ID: 2be67b71e716
Revises: 33d25d3b0b9f
Create Date: 2026-11-26 13:31:00
"""

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '2be67b71e716'
down_revision = '33d25d3b0b9f'
branch_labels = None
depends_on = None


def upgrade():
    for table in ('block_device_mapping', 'shadow_block_device_mapping'):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(
                sa.Column('driver_info', sa.Text, nullable=True))

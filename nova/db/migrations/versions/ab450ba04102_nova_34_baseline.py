"""Baseline: the tables this project shares with Nova 34.0.0

A database made by Nova 34.0.0's ``nova-manage db sync`` is already at this
revision (the main database's head in that release), and this revision never
runs on it. On an empty database it creates what this project uses:
``instances``, ``instance_extra``, ``block_device_mapping`` and their shadow
tables, column for column, index for index and with the charset Nova 34's
migrations leave them with. The migration tests compare the result, by
reflection, with a database that the real Nova 34.0.0 created and this
project then upgraded.

Facts from Nova's history that shape the tables, in its order:
``instances`` lost its ``uuid`` index (kept as a unique constraint) and
gained ``compute_id``; ``block_device_mapping`` gained the four encryption
columns; shadow tables have the same columns but no index, no constraint and
no foreign key; on MySQL/MariaDB every one of these tables is utf8 (utf8mb3)
and InnoDB.

Revision ID: ab450ba04102
Revises:
Create Date: 2026-11-30 13:45:00
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = 'ab450ba04102'
down_revision = None
branch_labels = None
depends_on = None

_TABLE_OPTS = {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb3'}


def _medium_text():
    return sa.Text().with_variant(mysql.MEDIUMTEXT(), 'mysql', 'mariadb')


def _ip_address():
    # An address as text; PostgreSQL has a type of its own for it.
    return sa.String(39).with_variant(postgresql.INET(), 'postgresql')


def _timestamps():
    return [
        sa.Column('created_at', sa.DateTime),
        sa.Column('updated_at', sa.DateTime),
        sa.Column('deleted_at', sa.DateTime),
    ]


def _id():
    return sa.Column('id', sa.Integer, primary_key=True, nullable=False)


def _instances_columns(locked_by_enum):
    """Nova 34's instances columns, in the order its migrations add them."""
    string = sa.String(255)
    return _timestamps() + [
        _id(),
        sa.Column('internal_id', sa.Integer),
        sa.Column('user_id', string),
        sa.Column('project_id', string),
        sa.Column('image_ref', string),
        sa.Column('kernel_id', string),
        sa.Column('ramdisk_id', string),
        sa.Column('launch_index', sa.Integer),
        sa.Column('key_name', string),
        sa.Column('key_data', _medium_text()),
        sa.Column('power_state', sa.Integer),
        sa.Column('vm_state', string),
        sa.Column('memory_mb', sa.Integer),
        sa.Column('vcpus', sa.Integer),
        sa.Column('hostname', string),
        sa.Column('host', string),
        sa.Column('user_data', _medium_text()),
        sa.Column('reservation_id', string),
        sa.Column('launched_at', sa.DateTime),
        sa.Column('terminated_at', sa.DateTime),
        sa.Column('display_name', string),
        sa.Column('display_description', string),
        sa.Column('availability_zone', string),
        sa.Column('locked', sa.Boolean),
        sa.Column('os_type', string),
        sa.Column('launched_on', _medium_text()),
        sa.Column('instance_type_id', sa.Integer),
        sa.Column('vm_mode', string),
        sa.Column('uuid', sa.String(36), nullable=False),
        sa.Column('architecture', string),
        sa.Column('root_device_name', string),
        sa.Column('access_ip_v4', _ip_address()),
        sa.Column('access_ip_v6', _ip_address()),
        sa.Column('config_drive', string),
        sa.Column('task_state', string),
        sa.Column('default_ephemeral_device', string),
        sa.Column('default_swap_device', string),
        sa.Column('progress', sa.Integer),
        sa.Column('auto_disk_config', sa.Boolean),
        sa.Column('shutdown_terminate', sa.Boolean),
        sa.Column('disable_terminate', sa.Boolean),
        sa.Column('root_gb', sa.Integer),
        sa.Column('ephemeral_gb', sa.Integer),
        sa.Column('cell_name', string),
        sa.Column('node', string),
        sa.Column('deleted', sa.Integer),
        sa.Column('locked_by', sa.Enum('owner', 'admin',
                                       name=locked_by_enum)),
        sa.Column('cleaned', sa.Integer),
        sa.Column('ephemeral_key_uuid', sa.String(36)),
        sa.Column('hidden', sa.Boolean(create_constraint=False)),
        sa.Column('compute_id', sa.BigInteger),
    ]


def _instance_extra_columns(instance_uuid):
    return _timestamps() + [
        sa.Column('deleted', sa.Integer),
        _id(),
        instance_uuid,
    ] + [sa.Column(name, sa.Text) for name in (
        'numa_topology', 'pci_requests', 'flavor', 'vcpu_model',
        'migration_context', 'keypairs', 'device_metadata', 'trusted_certs',
        'vpmems', 'resources')]


def _bdm_columns(instance_uuid):
    """Nova 34's block_device_mapping columns, without driver_info."""
    string = sa.String(255)
    return _timestamps() + [
        _id(),
        sa.Column('device_name', string),
        sa.Column('delete_on_termination', sa.Boolean),
        sa.Column('snapshot_id', sa.String(36)),
        sa.Column('volume_id', sa.String(36)),
        sa.Column('volume_size', sa.Integer),
        sa.Column('no_device', sa.Boolean),
        sa.Column('connection_info', _medium_text()),
        instance_uuid,
        sa.Column('deleted', sa.Integer),
        sa.Column('source_type', string),
        sa.Column('destination_type', string),
        sa.Column('guest_format', string),
        sa.Column('device_type', string),
        sa.Column('disk_bus', string),
        sa.Column('boot_index', sa.Integer),
        sa.Column('image_id', sa.String(36)),
        sa.Column('tag', string),
        sa.Column('attachment_id', sa.String(36)),
        sa.Column('uuid', sa.String(36)),
        sa.Column('volume_type', string),
        sa.Column('encrypted', sa.Boolean),
        sa.Column('encryption_secret_uuid', sa.String(36)),
        sa.Column('encryption_format', sa.String(128)),
        sa.Column('encryption_options', sa.String(4096)),
    ]


def _instance_uuid_fk(name, nullable=True):
    return sa.Column('instance_uuid', sa.String(36),
                     sa.ForeignKey('instances.uuid', name=name),
                     nullable=nullable)


def upgrade():
    op.create_table(
        'instances',
        *_instances_columns('instances0locked_by'),
        sa.Index('instances_reservation_id_idx', 'reservation_id'),
        sa.Index('instances_terminated_at_launched_at_idx',
                 'terminated_at', 'launched_at'),
        sa.Index('instances_task_state_updated_at_idx',
                 'task_state', 'updated_at'),
        sa.Index('instances_uuid_deleted_idx', 'uuid', 'deleted'),
        sa.Index('instances_host_node_deleted_idx', 'host', 'node', 'deleted'),
        sa.Index('instances_host_deleted_cleaned_idx',
                 'host', 'deleted', 'cleaned'),
        sa.Index('instances_project_id_deleted_idx', 'project_id', 'deleted'),
        sa.Index('instances_deleted_created_at_idx', 'deleted', 'created_at'),
        sa.Index('instances_project_id_idx', 'project_id'),
        sa.Index('instances_updated_at_project_id_idx',
                 'updated_at', 'project_id'),
        sa.Index('instances_compute_id_deleted_idx', 'compute_id', 'deleted'),
        sa.UniqueConstraint('uuid', name='uniq_instances0uuid'),
        **_TABLE_OPTS,
    )
    op.create_table(
        'block_device_mapping',
        *_bdm_columns(_instance_uuid_fk(
            'block_device_mapping_instance_uuid_fkey')),
        sa.Index('snapshot_id', 'snapshot_id'),
        sa.Index('volume_id', 'volume_id'),
        sa.Index('block_device_mapping_instance_uuid_idx', 'instance_uuid'),
        sa.Index('block_device_mapping_instance_uuid_device_name_idx',
                 'instance_uuid', 'device_name'),
        sa.Index('block_device_mapping_instance_uuid_volume_id_idx',
                 'instance_uuid', 'volume_id'),
        sa.UniqueConstraint('uuid', name='uniq_block_device_mapping0uuid'),
        **_TABLE_OPTS,
    )
    op.create_table(
        'instance_extra',
        *_instance_extra_columns(_instance_uuid_fk(
            'instance_extra_instance_uuid_fkey', nullable=False)),
        sa.Index('instance_extra_idx', 'instance_uuid'),
        **_TABLE_OPTS,
    )

    # Archived rows: the same columns, so that rows move as they are, and
    # nothing that could refuse one.
    op.create_table(
        'shadow_instances',
        *_instances_columns('shadow_instances0locked_by'),
        **_TABLE_OPTS,
    )
    op.create_table(
        'shadow_block_device_mapping',
        *_bdm_columns(sa.Column('instance_uuid', sa.String(36))),
        **_TABLE_OPTS,
    )
    op.create_table(
        'shadow_instance_extra',
        *_instance_extra_columns(
            sa.Column('instance_uuid', sa.String(36), nullable=False)),
        **_TABLE_OPTS,
    )

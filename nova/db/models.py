"""SQLAlchemy models of the tables this project uses.

The tables are Nova 34.0.0's (see the baseline revision ``ab450ba04102``):
a database that Nova 34 created works with these models, and Nova 34 keeps
working on a database these migrations made. ``instances`` and
``instance_extra`` are mapped with only the columns this project reads or
writes; the other columns exist (upstream's services use them) and stay
NULL in rows this project inserts. The block device mapping tables carry
upstream's full column set plus ``driver_info``, the persisted layout record
of a local disk (a ``LibvirtDiskMetadata`` as JSON).

Schema changes go through an alembic revision in ``nova/db/migrations``;
``tests/functional/db`` checks that the two agree on every backend.
"""

from oslo_db.sqlalchemy import models
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy import orm

BASE = orm.declarative_base()
# As Nova 34 made them: utf8 (3-byte) on MySQL/MariaDB.
_TABLE_OPTS = {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb3'}


def MediumText():
    """Text, but MEDIUMTEXT on MySQL/MariaDB where TEXT stops at 64 KiB."""
    return sa.Text().with_variant(mysql.MEDIUMTEXT(), 'mysql', 'mariadb')


class NovaBase(models.TimestampMixin, models.ModelBase):
    """created_at/updated_at plus oslo.db's dict-like model helpers."""


class Instance(BASE, NovaBase, models.SoftDeleteMixin):
    """A guest: the subset of upstream's ``instances`` this project uses."""

    __tablename__ = 'instances'
    __table_args__ = (
        sa.Index('instances_terminated_at_launched_at_idx',
                 'terminated_at', 'launched_at'),
        sa.Index('instances_uuid_deleted_idx', 'uuid', 'deleted'),
        sa.Index('instances_task_state_updated_at_idx',
                 'task_state', 'updated_at'),
        sa.Index('instances_host_node_deleted_idx', 'host', 'node', 'deleted'),
        sa.Index('instances_deleted_created_at_idx', 'deleted', 'created_at'),
        sa.Index('instances_compute_id_deleted_idx', 'compute_id', 'deleted'),
        sa.Index('instances_reservation_id_idx', 'reservation_id'),
        sa.Index('instances_host_deleted_cleaned_idx',
                 'host', 'deleted', 'cleaned'),
        sa.Index('instances_project_id_deleted_idx', 'project_id', 'deleted'),
        sa.Index('instances_project_id_idx', 'project_id'),
        sa.Index('instances_updated_at_project_id_idx',
                 'updated_at', 'project_id'),
        sa.UniqueConstraint('uuid', name='uniq_instances0uuid'),
        _TABLE_OPTS,
    )

    id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
    uuid = sa.Column(sa.String(36), nullable=False)
    user_id = sa.Column(sa.String(255))
    project_id = sa.Column(sa.String(255))
    reservation_id = sa.Column(sa.String(255))
    # The compute service's host, and the hypervisor node on it.
    host = sa.Column(sa.String(255))
    node = sa.Column(sa.String(255))
    hostname = sa.Column(sa.String(255))
    display_name = sa.Column(sa.String(255))
    image_ref = sa.Column(sa.String(255))
    memory_mb = sa.Column(sa.Integer)
    vcpus = sa.Column(sa.Integer)
    root_gb = sa.Column(sa.Integer)
    ephemeral_gb = sa.Column(sa.Integer)
    vm_state = sa.Column(sa.String(255))
    task_state = sa.Column(sa.String(255))
    power_state = sa.Column(sa.Integer)
    launched_at = sa.Column(sa.DateTime)
    terminated_at = sa.Column(sa.DateTime)
    # Upstream's defaults for flags its objects do not accept as NULL.
    locked = sa.Column(sa.Boolean, default=False)
    cleaned = sa.Column(sa.Integer, default=0)
    shutdown_terminate = sa.Column(sa.Boolean, default=False)
    disable_terminate = sa.Column(sa.Boolean, default=False)
    hidden = sa.Column(sa.Boolean, default=False)
    compute_id = sa.Column(sa.BigInteger)

    # Loaded with the instance (its flavor is there); upstream keeps the
    # row, soft-deleted, after the instance is deleted.
    extra = orm.relationship(
        'InstanceExtra', uselist=False, viewonly=True, lazy='joined',
        primaryjoin='Instance.uuid == foreign(InstanceExtra.instance_uuid)')


class InstanceExtra(BASE, NovaBase, models.SoftDeleteMixin):
    """Per-instance documents, as JSON; this project uses ``flavor``.

    ``flavor`` holds ``{"cur": <Flavor primitive>, "old": ..., "new": ...}``
    as upstream writes it: swap, root and ephemeral sizes live there.
    """

    __tablename__ = 'instance_extra'
    __table_args__ = (
        sa.Index('instance_extra_idx', 'instance_uuid'),
        _TABLE_OPTS,
    )

    id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
    instance_uuid = sa.Column(
        sa.String(36),
        sa.ForeignKey('instances.uuid',
                      name='instance_extra_instance_uuid_fkey'),
        nullable=False)
    flavor = sa.Column(sa.Text)


class _BlockDeviceMappingColumns(NovaBase, models.SoftDeleteMixin):
    """The columns shared by the live and the shadow table, but
    ``instance_uuid``, which has a foreign key in the live table only."""

    id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
    # The uuid of the mapping itself (not of its image, volume or snapshot).
    uuid = sa.Column(sa.String(36))
    source_type = sa.Column(sa.String(255))
    destination_type = sa.Column(sa.String(255))
    guest_format = sa.Column(sa.String(255))
    device_type = sa.Column(sa.String(255))
    disk_bus = sa.Column(sa.String(255))
    boot_index = sa.Column(sa.Integer)
    device_name = sa.Column(sa.String(255))
    delete_on_termination = sa.Column(sa.Boolean, default=False)
    snapshot_id = sa.Column(sa.String(36))
    volume_id = sa.Column(sa.String(36))
    volume_size = sa.Column(sa.Integer)
    volume_type = sa.Column(sa.String(255))
    image_id = sa.Column(sa.String(36))
    no_device = sa.Column(sa.Boolean)
    connection_info = sa.Column(MediumText())
    tag = sa.Column(sa.String(255))
    attachment_id = sa.Column(sa.String(36))
    encrypted = sa.Column(sa.Boolean, default=False)
    encryption_secret_uuid = sa.Column(sa.String(36))
    encryption_format = sa.Column(sa.String(128))
    encryption_options = sa.Column(sa.String(4096))
    # This project's addition: the LibvirtDiskMetadata of a local disk, as
    # JSON. Opaque outside the libvirt driver, never searched, so no index.
    driver_info = sa.Column(sa.Text, nullable=True)


class BlockDeviceMapping(BASE, _BlockDeviceMappingColumns):
    """One disk of an instance: image, volume, blank, ephemeral or swap."""

    __tablename__ = 'block_device_mapping'
    __table_args__ = (
        # Upstream names these two indexes after their columns.
        sa.Index('snapshot_id', 'snapshot_id'),
        sa.Index('volume_id', 'volume_id'),
        sa.Index('block_device_mapping_instance_uuid_idx', 'instance_uuid'),
        sa.Index('block_device_mapping_instance_uuid_device_name_idx',
                 'instance_uuid', 'device_name'),
        sa.Index('block_device_mapping_instance_uuid_volume_id_idx',
                 'instance_uuid', 'volume_id'),
        sa.UniqueConstraint('uuid', name='uniq_block_device_mapping0uuid'),
        _TABLE_OPTS,
    )

    instance_uuid = sa.Column(
        sa.String(36),
        sa.ForeignKey('instances.uuid',
                      name='block_device_mapping_instance_uuid_fkey'))


class ShadowBlockDeviceMapping(BASE, _BlockDeviceMappingColumns):
    """Archived (soft-deleted, then moved) block device mappings.

    As upstream's shadow tables: the same columns, no indexes, no unique
    constraint and no foreign key, so that rows can be archived in any order.
    """

    __tablename__ = 'shadow_block_device_mapping'
    __table_args__ = (
        _TABLE_OPTS,
    )

    instance_uuid = sa.Column(sa.String(36))

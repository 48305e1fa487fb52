"""The SQL API: the only module that talks SQL.

Every function takes a ``nova.context.RequestContext`` first. Its
``read_deleted`` (``no``, ``yes`` or ``only``) decides whether soft-deleted
rows are visible to reads. Rows come back as detached model objects
(``nova.db.models``; dict-like, attributes loaded), lists of them, or nothing.

Functions that share a context share a transaction: a caller inside
``main_context_manager.writer.using(context)`` gets all of them in its one
transaction. The engine is made on first use from ``[database]`` options.

Missing rows raise ``InstanceNotFound`` or ``BDMNotFound``; duplicates raise
``InstanceExists`` or ``BDMExists``. Soft delete, as upstream: ``deleted``
is set to the row's id and ``deleted_at`` to the time.
"""

import datetime

from oslo_db import exception as db_exc
from oslo_db.sqlalchemy import enginefacade
from oslo_log import log as logging
from oslo_utils import timeutils
import sqlalchemy as sa

from nova import exception
from nova.db import models

LOG = logging.getLogger(__name__)

main_context_manager = enginefacade.transaction_context()
# SQLite does not check foreign keys unless asked; the servers always do.
main_context_manager.configure(sqlite_fk=True)

_READ_DELETED = ('no', 'yes', 'only')
# Columns that no update may set: the key, and soft delete (use destroy).
_IMMUTABLE = frozenset(('id', 'deleted', 'deleted_at'))


def get_engine():
    """Return the writer engine, made from ``[database]`` on first use."""
    return main_context_manager.writer.get_engine()


def _now():
    """The time to stamp rows with: naive UTC, whole seconds.

    MySQL's DATETIME keeps whole seconds; stamping what every backend keeps
    means an object's timestamps equal what a later read returns.
    """
    return timeutils.utcnow().replace(microsecond=0)


def _where_deleted(model, read_deleted):
    if read_deleted not in _READ_DELETED:
        raise exception.InvalidInput(
            reason='read_deleted must be one of %s, not %r' % (
                ', '.join(_READ_DELETED), read_deleted))
    if read_deleted == 'no':
        return model.deleted == 0
    if read_deleted == 'only':
        return model.deleted != 0
    return sa.true()


def _select(context, model, read_deleted=None):
    """SELECT model rows visible under the context's read_deleted."""
    return sa.select(model).where(_where_deleted(
        model, read_deleted or context.read_deleted))


def _clean_values(model, values, extra_immutable=(), creating=False):
    """Check column names and make datetimes naive UTC, as the columns are.

    :param values: {column name: new value}.
    :param creating: for an insert, where ``deleted`` may be given (as the
        objects' default, False) but must be false.
    :returns: a new dict, safe to write.
    :raises: InvalidInput for unknown or immutable columns.
    """
    columns = model.__table__.columns
    values = dict(values)
    if creating:
        if values.pop('deleted', False):
            raise exception.InvalidInput(
                reason='cannot create a deleted row in %s' %
                       model.__tablename__)
        values.setdefault('created_at', _now())
    else:
        values.setdefault('updated_at', _now())
    bad = sorted(k for k in values
                 if k not in columns or k in _IMMUTABLE
                 or k in extra_immutable)
    if bad:
        raise exception.InvalidInput(
            reason='cannot set %s on %s' % (', '.join(bad),
                                            model.__tablename__))
    cleaned = {}
    for key, value in values.items():
        if isinstance(value, datetime.datetime) and value.tzinfo is not None:
            value = timeutils.normalize_time(value)
        cleaned[key] = value
    return cleaned


# --- instances --------------------------------------------------------------

def _instance_get(context, session, uuid, read_deleted=None):
    row = session.scalars(_select(context, models.Instance, read_deleted)
                          .where(models.Instance.uuid == uuid)).first()
    if row is None:
        raise exception.InstanceNotFound(instance_id=uuid)
    return row


def instance_create(context, values):
    """Insert an instance.

    :param values: {column: value}; must hold ``uuid``.
    :returns: the new Instance row.
    :raises: InstanceExists if the uuid is taken (even by a deleted one).
    """
    values = _clean_values(models.Instance, values, creating=True)
    row = models.Instance(**values)
    try:
        with main_context_manager.writer.using(context) as session:
            session.add(row)
            session.flush()
    except db_exc.DBDuplicateEntry:
        raise exception.InstanceExists(uuid=values.get('uuid'))
    return row


def instance_get_by_uuid(context, uuid):
    """Return the Instance row with this uuid.

    :raises: InstanceNotFound.
    """
    with main_context_manager.reader.using(context) as session:
        return _instance_get(context, session, uuid)


def instance_get_all(context, host=None):
    """Return every visible Instance row, or only those on ``host``."""
    query = _select(context, models.Instance).order_by(models.Instance.id)
    if host is not None:
        query = query.where(models.Instance.host == host)
    with main_context_manager.reader.using(context) as session:
        return list(session.scalars(query))


def instance_update(context, uuid, values):
    """Update a live instance.

    :param values: {column: value}; not id, uuid or the soft-delete columns.
    :returns: the updated Instance row.
    :raises: InstanceNotFound.
    """
    values = _clean_values(models.Instance, values, extra_immutable=('uuid',))
    with main_context_manager.writer.using(context) as session:
        row = _instance_get(context, session, uuid, read_deleted='no')
        for key, value in values.items():
            setattr(row, key, value)
        session.flush()
        return row


def instance_destroy(context, uuid):
    """Soft-delete an instance and its block device mappings.

    :returns: the Instance row as it is after the delete.
    :raises: InstanceNotFound if there is no live instance with this uuid.
    """
    now = _now()
    with main_context_manager.writer.using(context) as session:
        row = _instance_get(context, session, uuid, read_deleted='no')
        bdm = models.BlockDeviceMapping
        session.execute(
            sa.update(bdm)
            .where(bdm.instance_uuid == uuid, bdm.deleted == 0)
            .values(deleted=bdm.id, deleted_at=now, updated_at=now))
        row.deleted = row.id
        row.deleted_at = now
        row.updated_at = now
        session.flush()
        return row


# --- block device mappings --------------------------------------------------

def _bdm_get(context, session, bdm_id, read_deleted=None):
    bdm = models.BlockDeviceMapping
    row = session.scalars(_select(context, bdm, read_deleted)
                          .where(bdm.id == bdm_id)).first()
    if row is None:
        raise exception.BDMNotFound(id=bdm_id)
    return row


def block_device_mapping_create(context, values):
    """Insert a block device mapping of a live instance.

    :param values: {column: value}; must hold ``instance_uuid``.
    :returns: the new BlockDeviceMapping row.
    :raises: InstanceNotFound if the instance is missing or deleted;
        BDMExists if the mapping's uuid is taken.
    """
    values = _clean_values(models.BlockDeviceMapping, values, creating=True)
    row = models.BlockDeviceMapping(**values)
    try:
        with main_context_manager.writer.using(context) as session:
            _instance_get(context, session, values.get('instance_uuid'),
                          read_deleted='no')
            session.add(row)
            session.flush()
    except db_exc.DBDuplicateEntry:
        raise exception.BDMExists(uuid=values.get('uuid'))
    return row


def block_device_mapping_get(context, bdm_id):
    """Return the BlockDeviceMapping row with this id.

    :raises: BDMNotFound.
    """
    with main_context_manager.reader.using(context) as session:
        return _bdm_get(context, session, bdm_id)


def block_device_mapping_get_all_by_instance_uuid(context, instance_uuid):
    """Return one instance's visible mappings, in creation order."""
    return block_device_mapping_get_all_by_instance_uuids(
        context, [instance_uuid])


def block_device_mapping_get_all_by_instance_uuids(context, instance_uuids):
    """Return the visible mappings of these instances, in creation order."""
    if not instance_uuids:
        return []
    bdm = models.BlockDeviceMapping
    query = (_select(context, bdm)
             .where(bdm.instance_uuid.in_(list(instance_uuids)))
             .order_by(bdm.id))
    with main_context_manager.reader.using(context) as session:
        return list(session.scalars(query))


def block_device_mapping_get_all_with_driver_info(context):
    """Return every live mapping that has a layout record.

    For the image cache: a cache entry is in use while a record names it.
    Always ignores deleted rows, whatever the context's read_deleted.
    """
    bdm = models.BlockDeviceMapping
    query = (_select(context, bdm, read_deleted='no')
             .where(bdm.driver_info.is_not(None))
             .order_by(bdm.id))
    with main_context_manager.reader.using(context) as session:
        return list(session.scalars(query))


def block_device_mapping_update(context, bdm_id, values):
    """Update one live mapping.

    :param values: {column: value}; not id or the soft-delete columns.
    :returns: the updated BlockDeviceMapping row.
    :raises: BDMNotFound.
    """
    values = _clean_values(models.BlockDeviceMapping, values)
    with main_context_manager.writer.using(context) as session:
        row = _bdm_get(context, session, bdm_id, read_deleted='no')
        for key, value in values.items():
            setattr(row, key, value)
        session.flush()
        return row


def block_device_mapping_update_many(context, updates):
    """Update many live mappings with one UPDATE statement.

    Each column that any mapping changes is set with a ``CASE id WHEN ...``
    (rows that do not change it keep their value), so N mappings cost one
    statement and one transaction on every backend, whereas executemany
    is one round trip per row on PyMySQL and psycopg2. Measured for 1, 4
    and 16 mappings: 1 UPDATE, 1 commit; on the wire 4 round trips either
    way (PostgreSQL: pre-ping, BEGIN, UPDATE, COMMIT; MariaDB: pre-ping,
    UPDATE, COMMIT, the pool's ROLLBACK on check-in). ``updated_at`` of
    every row is set to the same time.

    :param updates: {mapping id: {column: value}}, e.g.
        ``{7: {'driver_info': '{...}'}, 8: {'driver_info': '{...}',
        'volume_size': 1}}``. Ids not live in the database abort the whole
        update.
    :returns: the ``updated_at`` now set on every updated row (naive UTC),
        or None if ``updates`` was empty.
    :raises: BDMNotFound naming the missing ids; nothing is changed then.
    """
    if not updates:
        return None
    bdm = models.BlockDeviceMapping
    cleaned = {bdm_id: _clean_values(bdm, values)
               for bdm_id, values in updates.items()}
    now = _now()
    assignments = {'updated_at': now}
    for name in sorted({name for values in cleaned.values()
                        for name in values} - {'updated_at'}):
        column = bdm.__table__.columns[name]
        whens = {bdm_id: sa.bindparam(None, values[name], type_=column.type)
                 for bdm_id, values in cleaned.items() if name in values}
        assignments[name] = sa.case(whens, value=bdm.id, else_=column)
    ids = list(cleaned)
    statement = (sa.update(bdm)
                 .where(bdm.id.in_(ids), bdm.deleted == 0)
                 .values(assignments)
                 .execution_options(synchronize_session=False))
    with main_context_manager.writer.using(context) as session:
        result = session.execute(statement)
        if result.rowcount != len(ids):
            found = set(session.scalars(
                sa.select(bdm.id).where(bdm.id.in_(ids), bdm.deleted == 0)))
            missing = sorted(set(ids) - found)
            # Raising rolls the transaction back: all or nothing.
            raise exception.BDMNotFound(
                id=', '.join(str(i) for i in missing))
    LOG.debug('Updated %(count)d block device mappings in one statement',
              {'count': len(ids)})
    return now


def block_device_mapping_destroy(context, bdm_id):
    """Soft-delete one live mapping.

    :raises: BDMNotFound.
    """
    bdm = models.BlockDeviceMapping
    now = _now()
    with main_context_manager.writer.using(context) as session:
        result = session.execute(
            sa.update(bdm)
            .where(bdm.id == bdm_id, bdm.deleted == 0)
            .values(deleted=bdm.id, deleted_at=now, updated_at=now)
            .execution_options(synchronize_session=False))
        if result.rowcount != 1:
            raise exception.BDMNotFound(id=bdm_id)

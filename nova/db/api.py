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

Concurrent use. Every write function takes its locks when its transaction
starts: on SQLite its transaction is ``BEGIN IMMEDIATE`` (a deferred one
that reads first and then writes gets "database is locked" at once, without
waiting, when another writer got there in between), the database file is in
WAL mode (readers never wait for the writer) and a connection waits up to
``[database]/sqlite_busy_timeout`` for the lock. A whole write transaction
that still loses a race for a lock (or a deadlock on the servers) is retried
by oslo.db, with backoff; a write nested in a caller's transaction is not
retried on its own (the outermost one is).
"""

import contextlib
import contextvars
import datetime
import functools

from oslo_db import api as oslo_db_api
from oslo_db import exception as db_exc
from oslo_db.sqlalchemy import enginefacade
from oslo_log import log as logging
from oslo_utils import timeutils
from oslo_utils import uuidutils
import sqlalchemy as sa

import nova.conf
from nova import exception
from nova.db import models

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

# True while the current thread of execution is inside a write function:
# its SQLite transaction then begins IMMEDIATE, and nested writes do not
# retry on their own.
_WRITING = contextvars.ContextVar('nova_db_writing', default=False)


def _sqlite_on_connect(dbapi_connection, connection_record):
    """WAL and a busy timeout, on every new SQLite connection."""
    timeout_ms = int(CONF.database.sqlite_busy_timeout * 1000)
    dbapi_connection.execute('PRAGMA busy_timeout = %d' % timeout_ms)
    # WAL is a property of the file (it persists); :memory: stays "memory".
    dbapi_connection.execute('PRAGMA journal_mode = WAL')


def _sqlite_on_begin(connection):
    """Begin a write transaction IMMEDIATE, a read one deferred.

    Runs before oslo.db's own listener, which emits a plain BEGIN unless
    ``in_transaction`` is already in ``connection.info``; oslo.db removes
    that marker again at commit and rollback.
    """
    if 'in_transaction' not in connection.info:
        connection.exec_driver_sql(
            'BEGIN IMMEDIATE' if _WRITING.get() else 'BEGIN')
        connection.info['in_transaction'] = True


def configure_engine(engine):
    """Set up a new engine of the SQL API for concurrent use.

    Called by the transaction context for every engine it makes. Only
    SQLite needs anything: the servers lock rows and wait on their own.
    """
    if engine.dialect.name != 'sqlite':
        return
    sa.event.listen(engine, 'connect', _sqlite_on_connect)
    # Ours must run first, and insert=True does not put it ahead of the
    # listener oslo.db added when it made the engine: take theirs out and
    # put it back behind ours (it then sees the marker and does nothing).
    theirs = list(engine.dispatch.begin)
    for listener in theirs:
        sa.event.remove(engine, 'begin', listener)
    sa.event.listen(engine, 'begin', _sqlite_on_begin)
    for listener in theirs:
        sa.event.listen(engine, 'begin', listener)


def create_context_manager(connection=None):
    """A transaction context for the SQL API.

    :param connection: a database URL; None to read ``[database]`` options
        when the first engine is made.
    """
    context_manager = enginefacade.transaction_context()
    # SQLite does not check foreign keys unless asked; the servers always do.
    if connection is None:
        context_manager.configure(sqlite_fk=True)
    else:
        context_manager.configure(connection=connection, sqlite_fk=True)
    context_manager.append_on_engine_create(configure_engine)
    return context_manager


main_context_manager = create_context_manager()


def _is_lock_error(error):
    """SQLite's answer when its busy timeout ran out."""
    return (isinstance(error, db_exc.DBError) and
            'database is locked' in str(error))


@contextlib.contextmanager
def _writer(context):
    """A write transaction: ``with _writer(context) as session:``."""
    token = _WRITING.set(True)
    try:
        with main_context_manager.writer.using(context) as session:
            yield session
    finally:
        _WRITING.reset(token)


def _retry_on_lock(function):
    """Retry a whole write function that lost a race for a lock.

    Safe because the function is its transaction: a failed attempt rolled
    back everything it did. Inside a caller's write transaction the
    function runs once, and the caller's own retry (if any) repeats it.
    """
    retrying = oslo_db_api.wrap_db_retry(
        max_retries=10, retry_interval=0.05, inc_retry_interval=True,
        max_retry_interval=2, retry_on_deadlock=True,
        exception_checker=_is_lock_error)(function)

    @functools.wraps(function)
    def wrapper(context, *args, **kwargs):
        if _WRITING.get():
            return function(context, *args, **kwargs)
        return retrying(context, *args, **kwargs)
    return wrapper


_READ_DELETED = ('no', 'yes', 'only')
# Columns that no update may set: the key, and soft delete (use destroy).
_IMMUTABLE = frozenset(('id', 'deleted', 'deleted_at'))
# Ids per IN (...) list of a bulk statement: far below every backend's limit
# of bound parameters (SQLite's 32766, PostgreSQL's 65535) with room for the
# CASE of an UPDATE, which binds each id twice.
_IN_CHUNK = 1000


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
    # populate_existing: a row this session just inserted gets its extra.
    row = session.scalars(_select(context, models.Instance, read_deleted)
                          .where(models.Instance.uuid == uuid)
                          .execution_options(populate_existing=True)
                          ).unique().first()
    if row is None:
        raise exception.InstanceNotFound(instance_id=uuid)
    return row


def _instance_extra_values(context, extra, creating):
    values = dict(extra or {})
    return _clean_values(models.InstanceExtra, values, creating=creating)


@_retry_on_lock
def instance_create(context, values, extra=None):
    """Insert an instance and its ``instance_extra`` row.

    :param values: {column: value}; must hold ``uuid``.
    :param extra: {instance_extra column: value}, e.g.
        ``{'flavor': '{"cur": {...}, "old": null, "new": null}'}``.
    :returns: the new Instance row (with ``extra`` loaded).
    :raises: InstanceExists if the uuid is taken (even by a deleted one).
    """
    values = _clean_values(models.Instance, values, creating=True)
    extra = _instance_extra_values(context, extra, creating=True)
    try:
        with _writer(context) as session:
            row = models.Instance(**values)
            session.add(row)
            # Upstream gives every instance its extra row, flavor or not.
            session.add(models.InstanceExtra(
                instance_uuid=values.get('uuid'), deleted=0, **extra))
            session.flush()
            return _instance_get(context, session, values['uuid'],
                                 read_deleted='no')
    except db_exc.DBDuplicateEntry:
        raise exception.InstanceExists(uuid=values.get('uuid'))


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


@_retry_on_lock
def instance_update(context, uuid, values, extra=None):
    """Update a live instance.

    :param values: {column: value}; not id, uuid or the soft-delete columns.
    :param extra: {instance_extra column: value} to update (the row is
        created if a database of another origin lacks it).
    :returns: the updated Instance row.
    :raises: InstanceNotFound.
    """
    values = _clean_values(models.Instance, values, extra_immutable=('uuid',))
    extra = _instance_extra_values(context, extra, creating=False)
    with _writer(context) as session:
        row = _instance_get(context, session, uuid, read_deleted='no')
        for key, value in values.items():
            setattr(row, key, value)
        if extra:
            ie = models.InstanceExtra
            result = session.execute(
                sa.update(ie).where(ie.instance_uuid == uuid)
                .values(extra).execution_options(synchronize_session=False))
            if not result.rowcount:
                extra.pop('updated_at', None)
                session.add(models.InstanceExtra(
                    instance_uuid=uuid, deleted=0, created_at=_now(),
                    **extra))
        session.flush()
        if extra:
            session.expire(row)
            return _instance_get(context, session, uuid, read_deleted='no')
        return row


@_retry_on_lock
def instance_destroy(context, uuid):
    """Soft-delete an instance, its block device mappings and extra row.

    :returns: the Instance row as it is after the delete.
    :raises: InstanceNotFound if there is no live instance with this uuid.
    """
    now = _now()
    with _writer(context) as session:
        row = _instance_get(context, session, uuid, read_deleted='no')
        # As upstream: the instance's mappings and extra row go with it.
        for model in (models.BlockDeviceMapping, models.InstanceExtra):
            session.execute(
                sa.update(model)
                .where(model.instance_uuid == uuid, model.deleted == 0)
                .values(deleted=model.id, deleted_at=now, updated_at=now)
                .execution_options(synchronize_session=False))
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


@_retry_on_lock
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
        with _writer(context) as session:
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


def block_device_mapping_get_all_by_volume_id(context, volume_id):
    """Return the visible mappings of a volume (more than one: multiattach),
    in creation order."""
    bdm = models.BlockDeviceMapping
    query = (_select(context, bdm).where(bdm.volume_id == volume_id)
             .order_by(bdm.id))
    with main_context_manager.reader.using(context) as session:
        return list(session.scalars(query))


def block_device_mapping_get_by_instance_and_volume_id(context, volume_id,
                                                       instance_uuid):
    """Return the visible mapping of a volume on an instance, or None."""
    bdm = models.BlockDeviceMapping
    query = (_select(context, bdm)
             .where(bdm.volume_id == volume_id,
                    bdm.instance_uuid == instance_uuid)
             .order_by(bdm.id))
    with main_context_manager.reader.using(context) as session:
        return session.scalars(query).first()


def _is_swap(values):
    return (values.get('source_type') == 'blank' and
            values.get('destination_type') == 'local' and
            values.get('guest_format') == 'swap')


@_retry_on_lock
def block_device_mapping_update_or_create(context, values):
    """Update the instance's mapping that ``values`` names, or create one.

    As upstream: the mapping is found by ``uuid`` if given, else by
    ``device_name`` if not empty; and an instance keeps one swap mapping,
    so a swap mapping soft-deletes the instance's other swap mappings.

    :param values: {column: value}; must hold ``instance_uuid``.
    :returns: the updated or new BlockDeviceMapping row.
    :raises: InstanceNotFound if the instance is missing or deleted.
    """
    bdm = models.BlockDeviceMapping
    instance_uuid = values.get('instance_uuid')
    with _writer(context) as session:
        _instance_get(context, session, instance_uuid, read_deleted='no')
        row = None
        live = _select(context, bdm, read_deleted='no').where(
            bdm.instance_uuid == instance_uuid)
        if values.get('uuid'):
            row = session.scalars(live.where(bdm.uuid == values['uuid'])
                                  ).first()
        if row is None and values.get('device_name'):
            row = session.scalars(
                live.where(bdm.device_name == values['device_name'])
                .order_by(bdm.id)).first()
        if row is None:
            cleaned = _clean_values(bdm, values, creating=True)
            cleaned.setdefault('uuid', uuidutils.generate_uuid())
            row = bdm(**cleaned)
            session.add(row)
        else:
            for key, value in _clean_values(bdm, values).items():
                setattr(row, key, value)
        session.flush()
        if _is_swap(values):
            now = _now()
            session.execute(
                sa.update(bdm)
                .where(bdm.instance_uuid == instance_uuid, bdm.deleted == 0,
                       bdm.source_type == 'blank',
                       bdm.guest_format == 'swap', bdm.id != row.id)
                .values(deleted=bdm.id, deleted_at=now, updated_at=now)
                .execution_options(synchronize_session=False))
        return row


@_retry_on_lock
def block_device_mapping_update(context, bdm_id, values):
    """Update one live mapping.

    :param values: {column: value}; not id or the soft-delete columns.
    :returns: the updated BlockDeviceMapping row.
    :raises: BDMNotFound.
    """
    values = _clean_values(models.BlockDeviceMapping, values)
    with _writer(context) as session:
        row = _bdm_get(context, session, bdm_id, read_deleted='no')
        for key, value in values.items():
            setattr(row, key, value)
        session.flush()
        return row


@_retry_on_lock
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
    with _writer(context) as session:
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


@_retry_on_lock
def block_device_mapping_destroy(context, bdm_id):
    """Soft-delete one live mapping.

    :raises: BDMNotFound.
    """
    bdm = models.BlockDeviceMapping
    now = _now()
    with _writer(context) as session:
        result = session.execute(
            sa.update(bdm)
            .where(bdm.id == bdm_id, bdm.deleted == 0)
            .values(deleted=bdm.id, deleted_at=now, updated_at=now)
            .execution_options(synchronize_session=False))
        if result.rowcount != 1:
            raise exception.BDMNotFound(id=bdm_id)


@_retry_on_lock
def block_device_mapping_record_first(context, records, require_all=False):
    """Write the FIRST layout record of many mappings, each at most once.

    A mapping's ``driver_info`` is set only while it has none: two
    processes that record the same mapping at once (a first touch racing
    ``nova-manage libvirt record_disks``, or two of those) cannot both
    write it. The rows are read and locked (``SELECT ... FOR UPDATE``, in
    id order; SQLite's write transaction already holds the database) and
    only those still without a record are written, by one UPDATE whose
    WHERE clause says ``driver_info IS NULL`` again (run for every row on
    SQLite, over ``unnest`` of two arrays on PostgreSQL, with a ``CASE id``
    per chunk of ids on MariaDB, whose driver sends an executemany row by
    row). The loser of a race
    waits for the winner's commit and then sees its record.

    Overwrites of an existing record (a resize) do not come here: they are
    ``block_device_mapping_update_many``.

    :param records: {mapping id: driver_info (JSON text)}.
    :param require_all: all or nothing: if any mapping is gone, raise and
        write none.
    :returns: {mapping id: (driver_info stored now, True if this call wrote
        it)} for every id that names a live mapping; ids of mappings that
        are gone (deleted meanwhile) are absent, and nothing is written for
        them.
    :raises: BDMNotFound naming the gone ids, with ``require_all``.
    """
    if not records:
        return {}
    bdm = models.BlockDeviceMapping
    ids = sorted(records)
    found = {}
    with _writer(context) as session:
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start:start + _IN_CHUNK]
            found.update(session.execute(
                sa.select(bdm.id, bdm.driver_info)
                .where(bdm.id.in_(chunk), bdm.deleted == 0)
                .order_by(bdm.id).with_for_update()).all())
        if require_all and len(found) != len(ids):
            raise exception.BDMNotFound(id=', '.join(
                str(i) for i in ids if i not in found))
        ours = [bdm_id for bdm_id in ids
                if bdm_id in found and found[bdm_id] is None]
        now = _now()
        if ours:
            _WRITE_FIRST[session.get_bind().dialect.name](
                session, records, ours, now)
    won = set(ours)
    LOG.debug('Recorded %(won)d of %(count)d mappings; %(lost)d had a '
              'record already', {'won': len(won), 'count': len(ids),
                                 'lost': len(found) - len(won)})
    return {bdm_id: (records[bdm_id] if bdm_id in won else stored,
                     bdm_id in won)
            for bdm_id, stored in found.items()}


def _write_first_many(session, records, ours, now):
    """SQLite: one UPDATE, compiled once, run in process for every row."""
    table = models.BlockDeviceMapping.__table__
    session.connection().execute(
        sa.update(table)
        .where(table.c.id == sa.bindparam('b_id'), table.c.deleted == 0,
               table.c.driver_info.is_(None))
        .values(driver_info=sa.bindparam('b_info'), updated_at=now),
        [{'b_id': bdm_id, 'b_info': records[bdm_id]} for bdm_id in ours])


def _write_first_unnest(session, records, ours, now):
    """PostgreSQL: one ``UPDATE ... FROM unnest(ids, records)`` with two
    array parameters: one round trip, and one statement text whatever the
    number of rows (a CASE of thousands of ids costs more to compile than
    to run; an executemany is a round trip per row)."""
    result = session.execute(sa.text(
        'UPDATE block_device_mapping AS b '
        'SET driver_info = v.info, updated_at = :now '
        'FROM unnest(CAST(:ids AS integer[]), CAST(:infos AS text[])) '
        'AS v(id, info) '
        'WHERE b.id = v.id AND b.deleted = 0 AND b.driver_info IS NULL'),
        {'ids': list(ours), 'infos': [records[i] for i in ours],
         'now': now})
    _check_written(len(ours), result.rowcount)


def _check_written(wanted, written):
    if written != wanted:
        # The rows are locked: nobody can have written them since.
        raise exception.NovaException(
            'first records of %d mappings wrote %d rows' % (wanted,
                                                            written))


def _write_first_case(session, records, ours, now):
    """Write the records of the locked rows ``ours`` with one ``UPDATE ...
    CASE id`` per chunk: PyMySQL sends an executemany of UPDATEs one row
    at a time."""
    bdm = models.BlockDeviceMapping
    column = bdm.__table__.columns['driver_info']
    for start in range(0, len(ours), _IN_CHUNK):
        chunk = ours[start:start + _IN_CHUNK]
        whens = {bdm_id: sa.bindparam(None, records[bdm_id],
                                      type_=column.type)
                 for bdm_id in chunk}
        result = session.execute(
            sa.update(bdm)
            .where(bdm.id.in_(chunk), bdm.deleted == 0,
                   bdm.driver_info.is_(None))
            .values(driver_info=sa.case(whens, value=bdm.id),
                    updated_at=now)
            .execution_options(synchronize_session=False))
        _check_written(len(chunk), result.rowcount)


#: Dialect -> how block_device_mapping_record_first writes the rows it
#: locked.
_WRITE_FIRST = {'sqlite': _write_first_many,
                'postgresql': _write_first_unnest,
                'mysql': _write_first_case}

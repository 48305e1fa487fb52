"""BlockDeviceMappingList.save(): one transaction, one statement, for any
number of changed mappings, on SQLite, PostgreSQL and MariaDB.

Counted underneath the SQL API with SQLAlchemy events on its engine: every
statement sent (``before_cursor_execute``; on SQLite oslo.db also sends an
explicit ``BEGIN`` this way, counted apart), every transaction begun and
committed, and every pool checkout (oslo.db enables ``pool_pre_ping``, so a
checkout also costs one ping round trip on the servers). The counts are
printed (``pytest -s``) for the record.
"""

import collections
import contextlib

from oslo_utils import uuidutils
import pytest
import sqlalchemy as sa

from nova import objects


@contextlib.contextmanager
def _counting(engine):
    counts = collections.Counter()
    statements = []

    def on_execute(conn, cursor, statement, parameters, context, many):
        # SQLite's BEGIN (IMMEDIATE for a write) is the transaction itself.
        if statement.strip().upper() in ('BEGIN', 'BEGIN IMMEDIATE'):
            counts['begin_statements'] += 1
            return
        counts['statements'] += 1
        statements.append(statement)

    listeners = [
        (engine, 'before_cursor_execute', on_execute),
        (engine, 'begin', lambda conn: counts.update(['begins'])),
        (engine, 'commit', lambda conn: counts.update(['commits'])),
        (engine, 'rollback', lambda conn: counts.update(['rollbacks'])),
        (engine.pool, 'checkout',
         lambda *args: counts.update(['checkouts'])),
    ]
    for target, name, fn in listeners:
        sa.event.listen(target, name, fn)
    try:
        yield counts, statements
    finally:
        for target, name, fn in listeners:
            sa.event.remove(target, name, fn)


def _plan_all(bdms):
    """Stand in for the DiskManager (the one product writer of
    driver_info): give every mapping a fresh record."""
    for index, bdm in enumerate(bdms):
        record = objects.LibvirtDiskMetadata(
            backend='flat', format='raw', size=(index + 1) * 1024 ** 3,
            disk_name='disk.eph%d' % index,
            cache_name='ephemeral_%d_ext4' % (index + 1))
        setattr(bdm, 'driver_info', record.to_driver_info())


@pytest.mark.parametrize('count', [1, 4, 16])
def test_list_save_is_one_transaction(database, ctx, count, db_url):
    instance = objects.Instance(ctx, uuid=uuidutils.generate_uuid())
    instance.create()
    for index in range(count):
        objects.BlockDeviceMapping(
            ctx, instance_uuid=instance.uuid, source_type='blank',
            destination_type='local', guest_format='ext4').create()
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        ctx, instance.uuid)
    _plan_all(bdms)
    bdms[0].device_name = '/dev/vdb'    # a second column, on one row only

    with _counting(database.engine) as (counts, statements):
        bdms.save()

    backend = sa.engine.make_url(db_url).get_backend_name()
    print('\nround trips %s, %2d mappings: %d statement(s), %d begin(s), '
          '%d commit(s), %d pool checkout(s), %d BEGIN statement(s)' % (
              backend, count, counts['statements'], counts['begins'],
              counts['commits'], counts['checkouts'],
              counts['begin_statements']))
    assert counts['begins'] == 1
    assert counts['commits'] == 1
    assert counts['rollbacks'] == 0
    assert counts['statements'] == 1, statements
    assert statements[0].lstrip().upper().startswith('UPDATE')

    loaded = objects.BlockDeviceMappingList.get_by_instance_uuid(
        ctx, instance.uuid)
    assert [b.driver_info for b in loaded] == [b.driver_info for b in bdms]
    assert loaded[0].device_name == '/dev/vdb'
    assert all(b.device_name is None for b in loaded[1:])


def test_member_saves_cost_per_member(database, ctx, db_url):
    """The baseline the list save is measured against: each member's
    save() is a transaction of its own, writing that member's row only."""
    instance = objects.Instance(ctx, uuid=uuidutils.generate_uuid())
    instance.create()
    for _ in range(4):
        objects.BlockDeviceMapping(
            ctx, instance_uuid=instance.uuid, source_type='blank',
            destination_type='local').create()
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        ctx, instance.uuid)
    _plan_all(bdms)
    planned = [bdm.driver_info for bdm in bdms]
    assert None not in planned
    total = collections.Counter()
    for saved, bdm in enumerate(bdms, 1):
        with _counting(database.engine) as (counts, statements):
            bdm.save()
        total.update(counts)
        assert (counts['begins'], counts['commits'], counts['rollbacks']) == (
            1, 1, 0)
        assert any(s.lstrip().upper().startswith('UPDATE')
                   for s in statements), statements
        assert not bdm.obj_what_changed()
        # Written: this member and those before it; not yet the others.
        loaded = objects.BlockDeviceMappingList.get_by_instance_uuid(
            ctx, instance.uuid)
        assert [b.driver_info for b in loaded] == (
            planned[:saved] + [None] * (len(bdms) - saved))
    backend = sa.engine.make_url(db_url).get_backend_name()
    print('\nbaseline %s, 4 mappings saved one by one: %d statement(s), '
          '%d commit(s)' % (backend, total['statements'], total['commits']))

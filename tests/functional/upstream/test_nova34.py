"""An existing Nova 34.0.0 deployment's database, upgraded by this project.

Against the real ``nova==34.0.0`` code (its migrations, its objects), on
SQLite, PostgreSQL and MariaDB: upstream creates the database and an
instance with image, blank, swap and volume mappings; this project's
``db_sync`` adds ``driver_info`` and nothing else; upstream's objects keep
reading, saving, creating and destroying on the upgraded database; this
project records and creates the disks of upstream's instance; mapping
primitives travel both ways between the two processes. A fresh database of
this project and the upgraded one end with identical shared tables.
"""

import contextlib
import json
import os

from oslo_utils import units
import pytest
import sqlalchemy as sa

from nova import context as nova_context
from nova.db import api as db_api
from nova.db import migration
from nova import image
from nova import objects
from nova.virt.libvirt import config_drive
from nova.virt.libvirt.imagebackend import manager as disk_manager
from tests import fixtures as nova_fixtures

SHARED_TABLES = ('instances', 'instance_extra', 'block_device_mapping')
SHARED_TABLES += tuple('shadow_' + t for t in SHARED_TABLES)
BDM_TABLES = ('block_device_mapping', 'shadow_block_device_mapping')
MANIFEST = {'BlockDeviceMapping': '1.21', 'Instance': '2.8',
            'Flavor': '1.2'}


def _engine(url):
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def _schema(engine, tables=None):
    """Every table's reflected columns (name, type, nullability, default),
    indexes, unique constraints, foreign keys, primary key and options."""
    inspector = sa.inspect(engine)
    schema = {}
    for table in tables or inspector.get_table_names():
        indexes = [(i['name'], tuple(i['column_names']), bool(i['unique']))
                   for i in inspector.get_indexes(table)]
        uniques = [(u['name'], tuple(u['column_names']))
                   for u in inspector.get_unique_constraints(table)]
        foreign_keys = [(f['name'], tuple(f['constrained_columns']),
                         f['referred_table'], tuple(f['referred_columns']))
                        for f in inspector.get_foreign_keys(table)]
        schema[table] = {
            'columns': [(c['name'], repr(c['type']), c['nullable'],
                         str(c.get('default')))
                        for c in inspector.get_columns(table)],
            'indexes': sorted(indexes, key=repr),
            'uniques': sorted(uniques, key=repr),
            'foreign_keys': sorted(foreign_keys, key=repr),
            'primary_key': inspector.get_pk_constraint(
                table)['constrained_columns'],
            'options': sorted(inspector.get_table_options(table).items()),
        }
    return schema


def _another_database(url, stack):
    """An empty database on the same backend as ``url``."""
    backend = sa.engine.make_url(url).get_backend_name()
    if backend == 'sqlite':
        path = sa.engine.make_url(url).database + '.fresh'
        return 'sqlite:///%s' % path
    return stack.enter_context(nova_fixtures.ServerDatabase(
        'mysql' if backend in ('mysql', 'mariadb') else backend)).url


def test_fresh_and_upgraded_databases_have_identical_shared_tables(nova34):
    upgraded = _engine(nova34.url)
    with contextlib.ExitStack() as stack:
        fresh = _engine(_another_database(nova34.url, stack))
        try:
            migration.db_sync(engine=upgraded)
            migration.db_sync(engine=fresh)
            assert (migration.db_version(upgraded) ==
                    migration.db_version(fresh) ==
                    migration.get_script_directory().get_current_head())
            assert (_schema(fresh, SHARED_TABLES) ==
                    _schema(upgraded, SHARED_TABLES))
        finally:
            fresh.dispose()
            upgraded.dispose()


def _use_database(stack, url):
    """Point this process's SQL API at ``url`` (already at head)."""
    overrides = nova_fixtures.ConfOverrides()
    overrides.config(group='database', connection=url)
    stack.callback(overrides.undo)
    context_manager = db_api.create_context_manager(url)
    stack.callback(db_api.main_context_manager.patch_factory(
        context_manager))
    stack.callback(context_manager.writer.get_engine().dispose)


@pytest.fixture
def state(tmp_path):
    """This project's own state (image store, instances) in tmp_path."""
    overrides = nova_fixtures.ConfOverrides()
    overrides.config(state_path=str(tmp_path / 'state'))
    overrides.config(group='libvirt', images_type='qcow2')
    yield overrides
    overrides.undo()


def _import_image(tmp_path):
    """A 64 MiB raw image in this project's local store; its metadata."""
    path = tmp_path / 'image.raw'
    with open(path, 'wb') as f:
        f.write(b'nova' * 1024)
        f.truncate(64 * units.Mi)
    return image.API().import_file(nova_context.get_admin_context(),
                                   str(path), 'raw', name='nova34')


def test_nova34_database_upgrades_and_both_work_on_it(
        nova34, state, tmp_path):
    objects.register_all()
    image_meta = _import_image(tmp_path)
    made = nova34.worker('create', image_meta['id'])
    instance_uuid = made['instance_uuid']

    # The upgrade adds driver_info to the two mapping tables, and no more.
    engine = _engine(nova34.url)
    try:
        before = _schema(engine)
        migration.db_sync(engine=engine)
        after = _schema(engine)
        assert migration.db_version(engine) == (
            migration.get_script_directory().get_current_head())
    finally:
        engine.dispose()
    assert set(after) == set(before)
    for table in BDM_TABLES:
        added = [c for c in after[table]['columns']
                 if c not in before[table]['columns']]
        assert [c[0] for c in added] == ['driver_info']
        after[table]['columns'].remove(added[0])
    assert after == before

    # Nova 34 keeps reading, saving, creating and destroying.
    checked = nova34.worker('check', instance_uuid, made['volume_id'])
    assert checked['flavor_swap'] == 512
    assert checked['bdms'] == ['/dev/vda', '/dev/vdb', '/dev/vdc',
                               '/dev/vdd']
    assert checked['saved'] == ['active', '{"driver_volume_type": "rbd"}']
    assert checked['after_destroy'] == {'bdms': 4, 'other_bdms': 0}

    with contextlib.ExitStack() as stack:
        _use_database(stack, nova34.url)
        ctxt = nova_context.get_admin_context()
        _this_project_runs_upstreams_instance(ctxt, instance_uuid,
                                              image_meta)
        _nova34_never_sees_the_extra_disks(ctxt, nova34, instance_uuid,
                                           image_meta)
        _primitives_travel_both_ways(ctxt, nova34, instance_uuid,
                                     checked['root_bdm'])


def _this_project_runs_upstreams_instance(ctxt, instance_uuid, image_meta):
    instance = objects.Instance.get_by_uuid(ctxt, instance_uuid)
    assert instance.flavor.swap == 512 and instance.root_gb == 1
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        ctxt, instance_uuid)
    assert all(b.get_disk_metadata() is None for b in bdms)

    disks = disk_manager.DiskManager().create_local_disks(
        ctxt, instance, image_meta, bdms)
    by_name = {d.record.disk_name: d for d in disks}
    assert sorted(by_name) == ['disk', 'disk.local', 'disk.swap']
    # The swap disk is the flavor's size (its mapping has none).
    assert by_name['disk.swap'].record.size == 512 * units.Mi
    for disk in disks:
        assert os.path.exists(disk.backend.path)
    reloaded = objects.BlockDeviceMappingList.get_by_instance_uuid(
        ctxt, instance_uuid)
    records = {b.device_name: b.get_disk_metadata() for b in reloaded}
    assert records['/dev/vdd'] is None
    assert {r.disk_name for r in records.values() if r} == set(by_name)


def _nova34_never_sees_the_extra_disks(ctxt, nova34, instance_uuid,
                                       image_meta):
    # A config drive and a rescue disk are mappings of their own here;
    # Nova 34's libvirt driver, given the instance's mappings, must not
    # take either for a disk of the guest's (a blank local mapping is an
    # ephemeral disk to it).
    before = nova34.worker('guest-disks', instance_uuid)
    assert before == ['disk', 'disk.eph0', 'disk.swap', 'root']
    instance = objects.Instance.get_by_uuid(ctxt, instance_uuid)
    manager = disk_manager.DiskManager()

    def bdms():
        return objects.BlockDeviceMappingList.get_by_instance_uuid(
            ctxt, instance_uuid)

    with config_drive.built(instance, config_drive.ISO9660) as path:
        extra = [manager.import_config_drive(ctxt, instance, bdms(), path,
                                             cdrom=True)]
    extra.append(manager.create_rescue_disk(ctxt, instance, bdms(),
                                            image_meta))

    assert nova34.worker('guest-disks', instance_uuid) == before
    for disk in extra:
        manager.remove_extra_disk(instance, disk)


def _primitives_travel_both_ways(ctxt, nova34, instance_uuid, upstream_root):
    # Nova 34 -> here: a 1.21 mapping with its 2.8 instance loads; its
    # driver_info was never sent, and is loaded from the database when read.
    theirs = objects.BlockDeviceMapping.obj_from_primitive(upstream_root,
                                                           ctxt)
    assert 'driver_info' not in theirs
    assert theirs.instance.flavor.swap == 512
    assert theirs.get_disk_metadata().disk_name == 'disk'
    detached = objects.BlockDeviceMapping.obj_from_primitive(upstream_root)
    assert detached.get_disk_metadata() is None

    # Here -> Nova 34: a 1.22 mapping, backported by the version manifest,
    # nested instance (and its flavor) included.
    ours = [b for b in objects.BlockDeviceMappingList.get_by_instance_uuid(
        ctxt, instance_uuid) if b.boot_index == 0][0]
    ours.instance = objects.Instance.get_by_uuid(ctxt, instance_uuid)
    assert ours.driver_info
    primitive = ours.obj_to_primitive(target_version='1.21',
                                      version_manifest=MANIFEST)
    assert 'driver_info' not in primitive['nova_object.data']
    loaded = nova34.worker('load-bdm', stdin=json.dumps(primitive))
    assert loaded['version'] == '1.21'
    assert loaded['uuid'] == ours.uuid and loaded['id'] == ours.id
    assert loaded['instance_uuid'] == instance_uuid
    assert loaded['instance_version'] == '2.8'
    assert loaded['instance_flavor_swap'] == 512
    assert loaded['instance_root_gb'] == 1

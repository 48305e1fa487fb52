"""DiskManager: records first, in one transaction; then disks; and failures.

Observed on real state: the SQLAlchemy engine's own events count the
statements and transactions, a second SQLite connection reads the rows the
moment a disk's first byte is about to be written, and the file system
shows what exists. Failures are real too (a tampered image in the store, a
file planted where a disk belongs, a mapping deleted under the spawn); the
only substitutes are spies that wrap the real image service and the real
template functions to look at the database before delegating.
"""

import os
import sqlite3

from oslo_utils import units
import pytest
import sqlalchemy as sa

import nova.conf
from nova import exception
from nova import objects
from nova.virt.libvirt import disk_funcs
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import imagebackend
from nova.virt.libvirt.imagebackend import cache as image_cache
from nova.virt.libvirt.imagebackend import manager as disk_manager
from nova.virt.libvirt.imagebackend import policy
from tests.functional import helpers as func_helpers
from tests.functional.virt.libvirt import helpers

CONF = nova.conf.CONF
FILE_BACKENDS = helpers.FILE_BACKENDS
WRITES = ('INSERT', 'UPDATE', 'DELETE')


def rows_with_records(db, instance):
    """Count, through a connection of its own, the instance's mappings
    that have a driver_info, as committed in the database file now."""
    path = sa.engine.make_url(db.url).database
    with sqlite3.connect(path) as conn:
        return conn.execute(
            'SELECT count(*) FROM block_device_mapping WHERE '
            'instance_uuid = ? AND deleted = 0 AND driver_info IS NOT NULL',
            (instance.uuid,)).fetchone()[0]


def instance_files(instance):
    return helpers.disk_files(instance)


class SpyImageAPI:
    """The real image API; each download first notes what the database
    holds (the download's first chunk is a disk's first byte)."""

    def __init__(self, real, look):
        self.real = real
        self.look = look

    def get(self, context, image_id):
        return self.real.get(context, image_id)

    def download(self, context, image_id):
        self.look('download %s' % image_id)
        return self.real.download(context, image_id)


def spy_template_funcs(look):
    """The real template functions, each noting the database first."""
    def wrap(kind):
        def factory(template):
            real = disk_manager.TEMPLATE_FUNCS[kind](template)

            def func(target, size):
                look('template %s' % kind)
                return real(target, size)
            return func
        return factory
    return {kind: wrap(kind) for kind in disk_manager.TEMPLATE_FUNCS}


@pytest.mark.parametrize('backend', FILE_BACKENDS)
def test_records_saved_in_one_transaction_before_any_disk_byte(
        conf, db, context, images, image_api, host, backend):
    conf.config(group='libvirt', images_type=backend)
    image_meta = images['qcow2']
    instance, bdms = helpers.create_instance(context, image_meta,
                                             ephemerals=2)
    cache = image_cache.ImageCache()
    seen = []

    def look(what):
        seen.append((what, rows_with_records(db, instance),
                     instance_files(instance),
                     sorted(os.listdir(cache.base_dir))))

    driver = libvirt_driver.LibvirtDriver(
        host=host, disks=disk_manager.DiskManager(
            cache=image_cache.ImageCache(
                image_api=SpyImageAPI(image_api, look)),
            template_funcs=spy_template_funcs(look)))

    statements = []   # [verb, table-ish, ...] of every statement
    commits = []      # (write statements in the transaction, disk files)
    pending = []

    def on_execute(conn, cursor, statement, parameters, context_, many):
        words = statement.split(None, 3)[:3]
        statements.append(words)
        if words[0] in WRITES:
            pending.append(words)

    def on_commit(conn):
        commits.append((len(pending), instance_files(instance)))
        pending.clear()

    sa.event.listen(db.engine, 'before_cursor_execute', on_execute)
    sa.event.listen(db.engine, 'commit', on_commit)
    try:
        driver.spawn(context, instance, image_meta, bdms)
    finally:
        sa.event.remove(db.engine, 'before_cursor_execute', on_execute)
        sa.event.remove(db.engine, 'commit', on_commit)

    # ONE write statement, an UPDATE of the mappings, in ONE transaction
    # that committed while no disk file existed yet.
    assert [s for s in statements if s[0] in WRITES] == [
        ['UPDATE', 'block_device_mapping', 'SET']]
    assert [c for c in commits if c[0]] == [(1, [])]

    # The image's first byte and each template's first byte came after all
    # four records were in the database, before any disk existed.
    kinds = sorted(' '.join(what.split()[:2]) if what.startswith('template')
                   else 'download' for what, _, _, _ in seen)
    assert kinds == ['download', 'template ephemeral', 'template swap']
    for what, n_records, files, _cached in seen:
        assert n_records == 4, what
    assert seen[0][2] == []
    assert helpers.disk_files(instance) == [
        'disk', 'disk.eph1', 'disk.local', 'disk.swap']
    driver.destroy(context, instance)


def tamper_stored_image(image_api, image_meta):
    """Overwrite the stored bytes of an image behind the store's back with
    a qcow2 whose backing file is a host file (size and checksum no longer
    match the image's metadata)."""
    store = image_api.service
    data = os.path.join(store.image_dir(image_meta['id']), 'data')
    os.unlink(data)
    helpers.subprocess.run(
        ['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', '/etc/passwd',
         '-F', 'raw', data, str(64 * units.Mi)], check=True)


@pytest.mark.parametrize('backend', FILE_BACKENDS)
def test_hostile_image_fails_the_root_disk_and_leaves_nothing(
        conf, context, images, image_api, driver, backend):
    conf.config(group='libvirt', images_type=backend)
    image_meta = images['qcow2']
    tamper_stored_image(image_api, image_meta)
    instance, bdms = helpers.create_instance(context, image_meta)

    with pytest.raises(exception.DiskCreateFailed) as e:
        driver.spawn(context, instance, image_meta, bdms)
    assert e.value.kwargs['disk_name'] == 'disk'
    assert instance.uuid in str(e.value)
    assert isinstance(e.value.__cause__, exception.ImageUnacceptable)

    # Nothing of the instance on disk, no base of the image in the cache,
    # no domain; the records stay (see manager.py).
    assert helpers.disk_files(instance) == []
    assert not os.path.exists(os.path.join(CONF.instances_path,
                                           instance.uuid))
    cache = imagebackend.get_cache()
    assert not any(name.startswith(image_cache.image_entry_name(
        image_meta['id'], 'raw')) for name in os.listdir(cache.base_dir))
    assert driver.host.lookup_domain(instance) is None
    assert sorted(helpers.records(context, instance)) == [
        'disk', 'disk.local', 'disk.swap']
    # A destroy of the failed instance is fine with disks that never were.
    driver.destroy(context, instance)


@pytest.mark.parametrize('backend', FILE_BACKENDS)
def test_failed_disk_removes_what_the_call_made_and_retry_works(
        conf, context, images, driver, backend):
    conf.config(group='libvirt', images_type=backend)
    image_meta = images['raw']
    instance, bdms = helpers.create_instance(context, image_meta,
                                             ephemerals=2)
    # Something that is not a template sits where the swap disk's template
    # belongs (a disk at the disk's own name would be refused before
    # anything is recorded: it is never planned over): swap is the last
    # disk in order, so three disks are made before it fails.
    planted = os.path.join(CONF.instances_path, '_base', 'swap_64.raw')
    os.makedirs(planted)

    with pytest.raises(exception.DiskCreateFailed) as e:
        driver.spawn(context, instance, image_meta, bdms)
    assert e.value.kwargs['disk_name'] == 'disk.swap'
    assert 'disk.swap' in str(e.value) and instance.uuid in str(e.value)
    assert helpers.disk_files(instance) == []
    assert os.path.isdir(planted)
    assert driver.host.lookup_domain(instance) is None
    records = helpers.records(context, instance)
    assert sorted(records) == ['disk', 'disk.eph1', 'disk.local',
                               'disk.swap']

    # Retry once the obstacle is gone: the same records, no new planning
    # even though the settings changed meanwhile.
    os.rmdir(planted)
    conf.config(group='libvirt', images_type='flat' if backend == 'qcow2'
                else 'qcow2')
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        context, instance.uuid)
    driver.spawn(context, instance, image_meta, bdms)
    assert {n: r.to_driver_info() for n, r in helpers.records(
        context, instance).items()} == {n: r.to_driver_info()
                                        for n, r in records.items()}
    assert helpers.disk_files(instance) == sorted(records)
    driver.destroy(context, instance)


def test_failed_save_creates_nothing(conf, context, images, driver):
    image_meta = images['raw']
    instance, bdms = helpers.create_instance(context, image_meta)
    # Another actor deletes a mapping after the spawn loaded them: the one
    # save must fail as a whole.
    objects.BlockDeviceMapping.get_by_id(context, bdms[-1].id).destroy()

    with pytest.raises(exception.BDMNotFound):
        driver.spawn(context, instance, image_meta, bdms)
    assert helpers.records(context, instance) == {}
    assert all(bdm.driver_info is None for bdm in bdms)
    assert all('driver_info' not in bdm.obj_what_changed() for bdm in bdms)
    assert helpers.disk_files(instance) == []
    assert not os.path.exists(imagebackend.get_cache().base_dir)


def test_planning_error_records_nothing(conf, context, images, driver):
    conf.config(group='libvirt', images_type='lvm', images_volume_group=None)
    image_meta = images['raw']
    instance, bdms = helpers.create_instance(context, image_meta)
    with pytest.raises(exception.DiskLayoutConfigMissing):
        driver.spawn(context, instance, image_meta, bdms)
    assert helpers.records(context, instance) == {}
    assert helpers.disk_files(instance) == []


def test_existing_disks_come_from_their_record_alone(conf, context, images,
                                                     driver):
    conf.config(group='libvirt', images_type='qcow2')
    image_meta = images['raw']
    instance, bdms = helpers.create_instance(context, image_meta)
    driver.spawn(context, instance, image_meta, bdms)
    manager = driver.disks
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        context, instance.uuid)

    conf.config(group='libvirt', images_type='flat')
    disks = manager.local_disks(instance, bdms)
    assert [d.role for d in disks] == [policy.ROOT, policy.EPHEMERAL,
                                       policy.SWAP]
    assert {type(d.backend).__name__ for d in disks} == {'Qcow2'}

    # A local mapping without a record is refused, never guessed at.
    bare = objects.BlockDeviceMapping(
        context, instance_uuid=instance.uuid, source_type='blank',
        destination_type='local', guest_format='ext4', boot_index=-1,
        device_name='/dev/vdz')
    bare.create()
    with pytest.raises(exception.DiskMetadataMissing, match='/dev/vdz'):
        manager.get_backend(instance, bare)
    # ... and destroy skips it (no disk of it can exist).
    driver.destroy(context, instance)
    assert helpers.disk_files(instance) == []


@pytest.mark.parametrize('backend', FILE_BACKENDS)
def test_resize_grows_the_disk_then_records_its_size(
        conf, context, images, driver, backend):
    conf.config(group='libvirt', images_type=backend)
    image_meta = images['qcow2']
    instance, bdms = helpers.create_instance(context, image_meta)
    driver.spawn(context, instance, image_meta, bdms)
    root = [b for b in bdms if b.boot_index == 0][0]
    new_size = 2 * units.Gi
    backend_obj = driver.disks.resize_disk(context, instance, root, new_size)

    record = helpers.records(context, instance)['disk']
    assert record.size == new_size
    info = func_helpers.qemu_info(backend_obj.path, record.format)
    assert info['virtual-size'] == new_size
    with pytest.raises(exception.DiskShrinkNotSupported):
        driver.disks.resize_disk(context, instance, root, units.Gi)
    assert helpers.records(context, instance)['disk'].size == new_size
    driver.destroy(context, instance)


def test_resize_whose_save_fails_keeps_the_old_record(
        conf, context, images, driver):
    image_meta = images['raw']
    instance, bdms = helpers.create_instance(context, image_meta)
    driver.spawn(context, instance, image_meta, bdms)
    root = [b for b in bdms if b.boot_index == 0][0]
    old = helpers.records(context, instance)['disk']
    # Another actor deletes the mapping: the save fails after the grow.
    objects.BlockDeviceMapping.get_by_id(context, root.id).destroy()

    with pytest.raises(exception.BDMNotFound):
        driver.disks.resize_disk(context, instance, root, 2 * units.Gi)

    # The mapping in memory says what the database said: the old size,
    # nothing left to save.
    assert root.get_disk_metadata().size == old.size
    assert 'driver_info' not in root.obj_what_changed()
    # The disk did grow (a record never says more than its disk has).
    info = func_helpers.qemu_info(
        driver.disks.get_backend(instance, root).path, old.format)
    assert info['virtual-size'] == 2 * units.Gi
    driver.destroy(context, instance)


def test_disk_funcs_make_real_filesystems(tmp_path):
    target = str(tmp_path / 'eph')
    disk_funcs.make_ephemeral('ext4', 'ephemeral0')(target, 64 * units.Mi)
    assert os.path.getsize(target) == 64 * units.Mi
    assert helpers.subprocess.run(
        ['blkid', '-p', '-s', 'LABEL', '-o', 'value', target],
        capture_output=True, text=True).stdout.strip() == 'ephemeral0'
    swap = str(tmp_path / 'swap')
    disk_funcs.make_swap()(swap, 16 * units.Mi)
    assert helpers.subprocess.run(
        ['blkid', '-p', '-s', 'TYPE', '-o', 'value', swap],
        capture_output=True, text=True).stdout.strip() == 'swap'
    vfat = str(tmp_path / 'vfat')
    disk_funcs.make_ephemeral('vfat', 'ephemeral0')(vfat, 64 * units.Mi)
    assert helpers.subprocess.run(
        ['blkid', '-p', '-s', 'TYPE', '-o', 'value', vfat],
        capture_output=True, text=True).stdout.strip() == 'vfat'
    with pytest.raises(exception.InvalidInput):
        disk_funcs.make_ephemeral('zfs')
    # A link planted at the target is not followed.
    victim = tmp_path / 'victim'
    victim.write_text('keep me')
    os.symlink(str(victim), str(tmp_path / 'link'))
    with pytest.raises(exception.InvalidInput, match='neither'):
        disk_funcs.make_swap()(str(tmp_path / 'link'), units.Mi)
    assert victim.read_text() == 'keep me'


@pytest.mark.parametrize('backend', ['lvm', 'rbd'])
def test_backend_this_host_cannot_serve_records_and_makes_nothing(
        conf, context, images, driver, backend, monkeypatch):
    # The node's settings plan a backend this host cannot serve: the
    # records are refused before the one save, so no record is left that
    # every later operation (destroy included) would trip over.
    monkeypatch.delitem(imagebackend.BACKENDS, backend, raising=False)
    conf.config(group='libvirt', images_type=backend,
                images_volume_group='vg0', images_rbd_pool='pool0')
    image_meta = images['raw']
    instance, bdms = helpers.create_instance(context, image_meta)

    with pytest.raises(exception.BackendUnavailable) as e:
        driver.spawn(context, instance, image_meta, bdms)
    assert e.value.kwargs['instance_uuid'] == instance.uuid
    assert e.value.kwargs['disk_name'] == 'disk'
    assert e.value.kwargs['backend'] == backend
    assert helpers.records(context, instance) == {}
    assert all(bdm.driver_info is None for bdm in bdms)
    assert not os.path.exists(os.path.join(CONF.instances_path,
                                           instance.uuid))
    assert not os.path.exists(imagebackend.get_cache().base_dir)
    assert driver.host.lookup_domain(instance) is None

    # Nothing stands in the way of a spawn on a backend the host serves,
    # nor of a destroy.
    conf.config(group='libvirt', images_type='flat')
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        context, instance.uuid)
    driver.spawn(context, instance, image_meta, bdms)
    assert {r.backend for r in helpers.records(
        context, instance).values()} == {'flat'}
    driver.destroy(context, instance)
    assert helpers.disk_files(instance) == []

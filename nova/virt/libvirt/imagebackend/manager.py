"""DiskManager: the one writer of a local disk's layout record.

Every ``block_device_mapping.driver_info`` is assigned here and nowhere
else. For new disks the order is fixed and is the point of this module:

1. plan a ``LibvirtDiskMetadata`` for every local mapping that has none
   (``policy.plan_disks``: the node's configuration, read once), and build
   the backend of every record, refusing (``BackendUnavailable``) one this
   host cannot serve;
2. save all of them in ONE ``BlockDeviceMappingList.save()`` (one
   transaction, however many disks);
3. only then create each disk through the backend its record names
   (``[libvirt]/disk_create_concurrency`` of them at a time: an
   instance's disks are independent).

So a disk never exists without a persisted record, and whatever happens to
the node's configuration later, every operation finds the layout in the
database. If the save fails, nothing is created. If a create fails, no
other create starts, and once the running ones have ended the disks this
call made are removed and the error names the disk that failed; the
records stay. A record whose disk does not exist is harmless: creating
again (a retry of the spawn) makes exactly the recorded disks, and removing
a disk that is not there is not an error (``Image.remove`` is idempotent).
Keeping the records rather than clearing them costs no second write on the
failure path and never leaves a disk on storage that the database does not
know about; the caller puts the instance in ERROR.

For existing disks, ``get_backend`` builds the backend from the record
alone. A local mapping without a record is a disk made before records
existed: on first touch its layout is inferred (legacy.py) and recorded
with the instance's other unrecorded disks in one save, or refused with
the reason (``_record_of``).
"""

from concurrent import futures
import contextvars
import os

from oslo_log import log as logging
from oslo_utils import excutils

import nova.conf
from nova import exception
from nova.objects import block_device as block_device_obj
from nova.objects import fields
from nova import utils
from nova.virt.libvirt.imagebackend import backends
from nova.virt.libvirt.imagebackend import legacy
from nova.virt.libvirt.imagebackend import policy

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: Template kind -> factory of its func(target, size). A template's name
#: (the record's cache_name) says which kind and filesystem it is.
TEMPLATE_FUNCS = {
    policy.EPHEMERAL: policy.template_func,
    policy.SWAP: policy.template_func,
}

_ROLE_RANK = {role: rank for rank, role in enumerate(policy.ROLES)}


class LocalDisk:
    """One local disk of an instance: its mapping, role and backend.

    ``role`` is policy.ROOT, EPHEMERAL or SWAP; ``backend`` an
    imagebackend.Image built from the mapping's record; ``record`` is
    ``backend.record``; ``made`` is True once the call that returned it
    made the disk (False: kept from an earlier call, or only looked up).
    """

    def __init__(self, bdm, role, backend):
        self.bdm = bdm
        self.role = role
        self.backend = backend
        self.made = False

    @property
    def record(self):
        return self.backend.record

    @property
    def disk_name(self):
        return self.backend.record.disk_name

    def __repr__(self):
        return '<LocalDisk %s %s %r>' % (self.role, self.disk_name,
                                         self.backend)


class DiskManager:
    """Plans, records and creates an instance's local disks.

    :param cache: the ImageCache the backends build from (default: the
        process-wide one).
    :param template_funcs: template kind -> factory(Template) of
        ``func(target, size)``; default TEMPLATE_FUNCS.
    """

    def __init__(self, cache=None, template_funcs=None):
        self._cache = cache
        self._template_funcs = template_funcs or TEMPLATE_FUNCS

    # --- new disks -----------------------------------------------------------

    def create_local_disks(self, context, instance, image_meta, bdms,
                           progress=None):
        """Record, then create, every local disk of an instance.

        Mappings that already have a record keep it; their disk is created
        only if it does not exist yet (a retry after a failed create).

        :param instance: the Instance (uuid, image_ref, root_gb,
            ephemeral_gb, swap).
        :param image_meta: the root image's metadata from the image service
            ({'id', 'disk_format', 'virtual_size', ...}), or None if no
            root disk needs planning.
        :param bdms: the instance's block device mappings (a
            BlockDeviceMappingList or a list of them, as loaded from the
            database); non-local mappings are ignored.
        :param progress: optional callable(message) told of each step.
        :returns: [LocalDisk] in attach order: root, ephemerals, swap.
        :raises: DiskPlanningFailed (nothing recorded, nothing created);
            BackendUnavailable naming the instance, the disk and the
            backend if this host cannot serve a disk's record (nothing
            recorded, nothing created); whatever the one save raises
            (nothing created); DiskLayoutMismatch if a disk an earlier
            call made is not what its record says (nothing created);
            DiskCreateFailed
            naming the disk that failed (the disks made by this call are
            removed, every record stays).
        """
        disks, new = self._plan_and_record(context, instance, image_meta,
                                           bdms)
        # Recorded and made by an earlier call (complete: a disk is built
        # under a private name and only then published under its own): not
        # ours to redo, and not ours to remove if a later disk fails. A
        # guest may have run on it since, so it is verified against its
        # record, all of them before anything is made.
        kept = {id(disk) for disk in disks
                if id(disk.bdm) not in new and disk.backend.exists()}
        for disk in disks:
            if id(disk) in kept:
                disk.backend.verify()
                LOG.info('Disk %(disk)s of instance %(uuid)s already '
                         'exists; keeping it', {'disk': disk.disk_name,
                                                'uuid': instance.uuid})
        made = [disk for disk in disks if id(disk) not in kept]
        self._create_all(context, instance, made, progress)
        for disk in made:
            disk.made = True
        return disks

    def _plan_and_record(self, context, instance, image_meta, bdms):
        """Steps 1 and 2: plan what has no record, save it all at once.

        An unrecorded mapping whose disk is already on storage (an instance
        Nova 34 made, booted again or hard rebooted) is not planned afresh
        over that disk: its layout is inferred (legacy.py) and recorded in
        the same save, or the spawn is refused with the reason. Only
        mappings with nothing on storage are planned as new.

        Records are FIRST records: if another process recorded a mapping
        meanwhile, its record is obeyed and the disk is not made again by
        this call.

        :returns: ([LocalDisk] in attach order, {id() of each bdm whose
            disk this call is to make}).
        """
        utils.validate_uuid(instance.uuid)
        local = self._local_bdms(instance, bdms)
        recorded = {}
        unrecorded = []
        for bdm in local:
            record = bdm.get_disk_metadata()
            if record is None:
                unrecorded.append(bdm)
            else:
                recorded[id(bdm)] = record
        inferred, present = self._infer_existing(instance, local,
                                                 unrecorded)
        for bdm, record in inferred:
            recorded[id(bdm)] = record
        planned = policy.plan_disks(
            instance, image_meta,
            [bdm for bdm in unrecorded if id(bdm) not in recorded],
            taken_names={r.disk_name for r in recorded.values()})
        for bdm, record in planned:
            if record.disk_name in present:
                # Never a fresh layout over a disk that is there already.
                raise exception.DiskLayoutNotInferred(
                    instance_uuid=instance.uuid, disk_name=record.disk_name,
                    reason='a disk of that name is on storage and its '
                           'mapping\'s layout could not be proven')
            recorded[id(bdm)] = record
        # Every backend is built, and asked whether this host can serve it,
        # BEFORE the one save: a record naming a backend this host lacks
        # (no such class, VG or pool) is refused while nothing is recorded
        # or made. Saved, it would make every later operation on the
        # instance fail, its destroy included.
        disks = self._sorted_disks(instance, [
            (bdm, recorded[id(bdm)]) for bdm in local])
        _check_all_available([disk.backend for disk in disks])
        new = {id(bdm) for bdm, _ in planned}
        if not planned and not inferred:
            return disks, new
        # All or nothing: a mapping deleted meanwhile fails the save, and
        # nothing is recorded or made.
        obeyed, lost, _ = self._save_first(context, inferred + planned,
                                           require_all=True)
        LOG.info('Recorded disks %(disks)s of instance %(uuid)s',
                 {'disks': ', '.join(r.disk_name for bdm, r in obeyed
                                     if id(bdm) not in lost),
                  'uuid': instance.uuid})
        if not lost:
            return disks, new
        # Another process recorded some of them first: its records are the
        # layout, and their disks are its to make.
        for bdm, record in obeyed:
            recorded[id(bdm)] = record
        disks = self._sorted_disks(instance, [
            (bdm, recorded[id(bdm)]) for bdm in local])
        _check_all_available([disk.backend for disk in disks
                              if id(disk.bdm) in lost])
        return disks, new - lost

    def _infer_existing(self, instance, local, unrecorded):
        """The inferred records of unrecorded mappings whose disk is on
        storage already (see ``_plan_and_record``).

        :returns: ([(bdm, record)] proven by legacy.py, not yet saved;
            {names of the disks on storage that none of them is}).
        :raises: DiskLayoutNotInferred (or DiskFormatAmbiguous) for a disk
            that is on storage but whose layout cannot be proven: it is
            never planned over.
        """
        if not unrecorded:
            return [], set()
        existing, _ = legacy.owned_disks(instance, local, cache=self._cache)
        if not existing:
            # The usual spawn: nothing on storage, everything is new.
            return [], set()
        present = {backend.record.disk_name: backend for backend in existing}
        results = legacy.infer_disks(instance, local, cache=self._cache)
        inferred = [(r.bdm, r.record) for r in results if r.recorded]
        node_backend = policy.node_layout().backend
        for result in results:
            if result.recorded:
                continue
            # Refused: fatal if its disk is there (a disk on storage whose
            # layout cannot be proven is never planned over).
            found = present.get(result.disk_name)
            if found is not None:
                if found.record.backend != node_backend:
                    result.reason = (
                        'it is on %s storage (%s), where this node\'s '
                        'images_type (%s) does not make disks; %s' % (
                            found.record.backend, found.location,
                            node_backend, result.reason))
                raise result.error(instance.uuid)
            LOG.debug('Disk %(disk)s of instance %(uuid)s is not on '
                      'storage: planned as new', {'disk': result.disk_name,
                                                  'uuid': instance.uuid})
        if inferred:
            LOG.info('Disks %(disks)s of instance %(uuid)s are on storage '
                     'without a record (made before records existed): '
                     'recording their inferred layout, not a new one',
                     {'disks': ', '.join(r.disk_name for _, r in inferred),
                      'uuid': instance.uuid})
        return inferred, set(present) - {r.disk_name for _, r in inferred}

    def _save_first(self, context, pairs, require_all=False):
        """Save FIRST records, all in one transaction, each at most once.

        A mapping that another process recorded meanwhile keeps that
        process's record; if it differs from ours, that is logged, and the
        stored one is obeyed.

        :param pairs: [(bdm, record)] of mappings without a record.
        :param require_all: if a mapping is gone, save none (BDMNotFound).
        :returns: ([(bdm, record now stored)] of the live mappings, {id() of
            each bdm recorded by another process first}, [bdm whose mapping
            is gone]); the bdms in memory carry what is stored.
        :raises: whatever the save raises (the bdms in memory get their
            empty driver_info back; nothing is recorded by this call).
        """
        for bdm, record in pairs:
            bdm.driver_info = record.to_driver_info()
        try:
            lost, gone = block_device_obj.BlockDeviceMappingList(
                context, objects=[bdm for bdm, _ in pairs]
            ).save_first_records(require_all=require_all)
        except Exception:
            LOG.error('Saving the disk records of mappings %(ids)s failed',
                      {'ids': ', '.join(str(bdm.id) for bdm, _ in pairs)})
            self._forget(bdm for bdm, _ in pairs)
            raise
        self._forget(gone)
        lost_ids = {id(bdm) for bdm in lost}
        gone_ids = {id(bdm) for bdm in gone}
        obeyed = []
        for bdm, record in pairs:
            if id(bdm) in gone_ids:
                continue
            if id(bdm) in lost_ids:
                stored = bdm.get_disk_metadata()
                if _fields(stored) != _fields(record):
                    LOG.warning(
                        'Disk %(disk)s of instance %(uuid)s was recorded by '
                        'another process first, differently: %(stored)s; '
                        'this process had %(ours)s. The stored record is '
                        'obeyed', {'disk': stored.disk_name,
                                   'uuid': bdm.instance_uuid,
                                   'stored': _fields(stored),
                                   'ours': _fields(record)})
                else:
                    LOG.info('Disk %(disk)s of instance %(uuid)s was '
                             'recorded by another process first, as this '
                             'one would have', {'disk': stored.disk_name,
                                                'uuid': bdm.instance_uuid})
                record = stored
            obeyed.append((bdm, record))
        return obeyed, lost_ids, gone

    @staticmethod
    def _forget(bdms):
        for bdm in bdms:
            bdm.driver_info = None
            bdm.obj_reset_changes(['driver_info'])

    def _create_all(self, context, instance, disks, progress=None):
        """Step 3: make ``disks``, ``[libvirt]/disk_create_concurrency`` at
        a time.

        Disks from templates (formatting: local, bounded work) are made in
        worker threads, each in a copy of the caller's context (so that a
        publish joins the caller's ``staging.directory_syncs`` batch).
        Disks from images are made in the calling thread, in attach order,
        meanwhile: such a create may wait on the image cache's lock and
        fetch for minutes, and only the calling thread can be interrupted
        (Ctrl-C, SIGTERM) while it waits. After a failure, or an interrupt,
        no create starts; once the running ones have ended, a failure
        removes every disk made here (an interrupt leaves that to the
        caller, which is told of it by the exception as before).

        :raises: DiskCreateFailed naming the first disk, in attach order,
            whose create failed (its cause chained).
        """
        from_templates = [disk for disk in disks if self._from_template(disk)]
        here = [disk for disk in disks if not self._from_template(disk)]
        workers = min(len(from_templates),
                      CONF.libvirt.disk_create_concurrency - (1 if here
                                                              else 0))
        if workers < 1:
            outcomes = self._create_one_by_one(context, disks, progress)
        else:
            outcomes = self._create_together(context, disks, from_templates,
                                             here, progress, workers)
        failed = [(disk, error) for disk, error in outcomes if error]
        if not failed:
            return
        self._remove_quietly(instance, [disk for disk, error in outcomes
                                        if error is None])
        disk, error = failed[0]
        if (isinstance(error, exception.DiskCreateFailed) and
                error.kwargs.get('disk_name') == disk.disk_name):
            raise error
        raise exception.DiskCreateFailed(
            instance_uuid=instance.uuid, disk_name=disk.disk_name,
            reason=str(error)) from error

    @staticmethod
    def _from_template(disk):
        return bool(disk.record.cache_name and not disk.record.image_id)

    def _create_one_by_one(self, context, disks, progress):
        """[(disk, exception or None)] of the disks tried, in attach order,
        up to the first that failed."""
        outcomes = []
        for disk in disks:
            self._tell(progress, disk)
            try:
                self._create(context, disk)
            except Exception as e:
                outcomes.append((disk, e))
                break
            outcomes.append((disk, None))
        return outcomes

    def _create_together(self, context, disks, from_templates, here,
                         progress, workers):
        """Make ``from_templates`` in ``workers`` threads and ``here`` in
        this one; return [(disk, exception or None)] of the disks started,
        in the attach order of ``disks``, once every one has ended."""
        made_here = {}
        started = {}
        with futures.ThreadPoolExecutor(
                max_workers=workers,
                thread_name_prefix='disk-create') as pool:
            try:
                for disk in from_templates:
                    self._tell(progress, disk)
                    # The future is ours and recorded before the submit:
                    # an interrupt inside it (while the pool starts a
                    # thread it has not recorded yet, which the pool's
                    # exit would not wait for) leaves it known.
                    future = started[id(disk)] = futures.Future()
                    pool.submit(self._create_in_thread, future,
                                contextvars.copy_context(), context, disk)
                made_here = dict(self._create_one_by_one(
                    context, here, progress))
                if not any(made_here.values()):
                    futures.wait(started.values(),
                                 return_when=futures.FIRST_EXCEPTION)
            finally:
                # Also on an interrupt: what has not started never will,
                # and the running creates are waited for, so that none
                # ends after the caller has cleaned up.
                futures.wait([future for future in started.values()
                              if not future.cancel()])
        outcomes = []
        for disk in disks:
            future = started.get(id(disk))
            if future is None:
                if disk in made_here:
                    outcomes.append((disk, made_here[disk]))
            elif not future.cancelled():
                outcomes.append((disk, future.exception()))
        return outcomes

    def _create_in_thread(self, future, run_in, context, disk):
        """In a worker: make ``disk`` in the contextvars ``run_in`` (a copy
        of the caller's), its outcome in ``future``; nothing if the future
        was cancelled first."""
        if not future.set_running_or_notify_cancel():
            return
        try:
            run_in.run(self._create_with_context, context, disk)
        except BaseException as e:
            future.set_exception(e)
        else:
            future.set_result(None)

    def _create_with_context(self, context, disk):
        # The request's context, for the log lines of this thread.
        context.update_store()
        self._create(context, disk)

    @staticmethod
    def _tell(progress, disk):
        if progress:
            progress('creating disk %s (%s, %s)' % (
                disk.disk_name, disk.record.backend, disk.record.source))

    def _create(self, context, disk):
        """Step 3 for one disk: its backend makes it from its source."""
        record = disk.record
        if record.image_id:
            disk.backend.create_from_image(context, record.image_id,
                                           size=record.size)
        elif record.cache_name:
            template = policy.parse_template_name(record.cache_name)
            func = self._template_funcs[template.kind](template)
            disk.backend.create_from_func(context, func, record.cache_name,
                                          record.size)
        else:
            raise exception.DiskCreateFailed(
                instance_uuid=disk.backend.instance_uuid,
                disk_name=record.disk_name,
                reason='its record names no source (image or template)')

    def remove_made(self, instance, disks):
        """Remove the disks of ``disks`` (LocalDisks) that the call which
        returned them made (``made``), when a later step of the same
        operation failed; their records stay. Failures to remove are
        logged, never raised: the caller raises the first failure."""
        self._remove_quietly(instance, [d for d in disks if d.made])

    @staticmethod
    def _remove_quietly(instance, disks):
        """Remove what a failed call made; log, never mask, the failure."""
        for disk in reversed(disks):
            try:
                disk.backend.remove()
            except Exception:
                LOG.exception('Could not remove disk %(disk)s of instance '
                              '%(uuid)s after a failed create',
                              {'disk': disk.disk_name,
                               'uuid': instance.uuid})

    # --- existing disks ----------------------------------------------------

    def get_backend(self, instance, bdm):
        """The backend of one recorded disk, built from its record alone.

        :raises: DiskMetadataMissing for a local mapping without a record;
            DiskMetadataInvalid (or a subclass) for an unreadable one;
            BackendUnavailable if this host cannot serve its backend.
        """
        return backends.backend_for(instance, self._record_of(
            instance, bdm), cache=self._cache)

    def local_disks(self, instance, bdms):
        """Every recorded local disk of an instance, in attach order.

        :param bdms: the instance's mappings; non-local ones are ignored.
        :returns: [LocalDisk]: root, then ephemerals in mapping order, then
            swap.
        :raises: as get_backend, for the first disk that fails.
        """
        local = self._local_bdms(instance, bdms)
        return self._sorted_disks(instance, [
            (bdm, self._record_of(instance, bdm)) for bdm in local])

    def resize_disk(self, context, instance, bdm, size):
        """Grow a disk, then record its new size.

        The disk grows first: if the save then fails, the record still
        says the old, smaller size (in the database and in ``bdm``), and
        growing again to ``size`` is a harmless no-op. Never the reverse
        (a record larger than its disk).

        :raises: DiskShrinkNotSupported, DiskResizeFailed, DiskNotFound,
            and as get_backend.
        """
        backend = self.get_backend(instance, bdm)
        backend.resize(size)
        record = backend.record
        record.size = int(size)
        recorded = bdm.driver_info
        bdm.driver_info = record.to_driver_info()
        try:
            bdm.save()
        except Exception:
            with excutils.save_and_reraise_exception():
                bdm.driver_info = recorded
                bdm.obj_reset_changes(['driver_info'])
        LOG.info('Recorded size %(size)d of disk %(disk)s of instance '
                 '%(uuid)s', {'size': size, 'disk': record.disk_name,
                              'uuid': instance.uuid})
        return backend

    # --- helpers -------------------------------------------------------------

    @staticmethod
    def _local_bdms(instance, bdms):
        local = []
        for bdm in bdms:
            if bdm.instance_uuid != instance.uuid:
                raise exception.InvalidInput(
                    reason='mapping %s belongs to instance %s, not %s' % (
                        bdm.id, bdm.instance_uuid, instance.uuid))
            if bdm.is_local and _extra_kind(bdm) is None:
                local.append(bdm)
        return local

    def _sorted_disks(self, instance, bdm_records):
        disks = []
        for index, (bdm, record) in enumerate(bdm_records):
            role = policy.disk_role(bdm)
            backend = backends.backend_for(instance, record,
                                           cache=self._cache)
            disks.append((_ROLE_RANK[role], index,
                          LocalDisk(bdm, role, backend)))
        return [disk for _, _, disk in sorted(disks, key=lambda d: d[:2])]

    def _record_of(self, instance, bdm):
        """The record of a local mapping.

        A mapping without one is a disk made before records existed: its
        layout is inferred by legacy.py (the only code allowed to) and
        recorded, with the instance's other unrecorded disks, in one save
        (``_record_legacy``).

        :raises: DiskLayoutNotInferred (DiskFormatAmbiguous) naming the
            disk and why, if its layout cannot be proven; nothing is
            recorded for it then.
        """
        record = bdm.get_disk_metadata()
        if record is None:
            record = self._record_legacy(instance, bdm)
        return record

    # --- disks made before records (imagebackend/legacy.py) ----------------

    def _record_legacy(self, instance, bdm):
        """Infer and record the disks of an instance that have no record,
        on first touch of one of them; return ``bdm``'s record.

        The instance's mappings are read again (the caller's may be a
        subset or stale): a record saved meanwhile is taken as it is.
        ``bdm`` is updated in memory to agree with the database.
        """
        context = bdm._context or getattr(instance, '_context', None)
        if context is None or not bdm.obj_attr_is_set('id'):
            # Not a mapping of the database: nothing to infer it for.
            raise exception.DiskMetadataMissing(
                instance_uuid=instance.uuid,
                disk_name=legacy.mapping_label(bdm))
        bdms = block_device_obj.BlockDeviceMappingList.get_by_instance_uuid(
            context, instance.uuid)
        ours = [m for m in bdms if m.id == bdm.id]
        if not ours:
            raise exception.BDMNotFound(id=bdm.id)
        if ours[0].driver_info is None:
            [result] = [r for r in self.record_legacy_disks(
                context, [(instance, bdms)]) if r.bdm.id == bdm.id]
            if not result.recorded:
                raise result.error(instance.uuid)
        bdm.driver_info = ours[0].driver_info
        bdm.obj_reset_changes(['driver_info'])
        return bdm.get_disk_metadata()

    def record_legacy_disks(self, context, instances_bdms, formats=None):
        """Infer the records of unrecorded local disks and save them all in
        ONE ``BlockDeviceMappingList.save()``.

        :param instances_bdms: [(instance, all its mappings)] as loaded from
            the database; mappings that have a record are left alone.
        :param formats: {(instance uuid, disk name): 'raw' | 'qcow2'} that
            the operator states for ambiguous Flat disks.
        :returns: [legacy.Inference] of every unrecorded local mapping;
            those with a ``record`` are saved (and their mappings carry it
            in memory), the others are refused with their reason.
        :raises: whatever the one save raises (nothing is recorded then,
            and the mappings in memory are unchanged).
        """
        results = []
        for instance, bdms in instances_bdms:
            stated = {name: fmt for (uuid, name), fmt in
                      (formats or {}).items() if uuid == instance.uuid}
            try:
                results.extend(legacy.infer_disks(
                    instance, bdms, formats=stated, cache=self._cache))
            except exception.NovaException as e:
                # The instance as a whole is unusable (a bad uuid, an
                # unreadable record): each of its unrecorded disks says so.
                results.extend(
                    legacy.Inference(bdm, bdm.device_name or 'of mapping '
                                     '%s' % bdm.id, reason=str(e))
                    for bdm in bdms
                    if bdm.is_local and bdm.driver_info is None)
        inferred = [r for r in results if r.recorded]
        if inferred:
            self._save_inferred(context, inferred)
        return results

    def _save_inferred(self, context, inferred):
        """Save inferred records as FIRST records (``_save_first``); a
        mapping recorded by another process meanwhile takes that record,
        one deleted meanwhile is refused."""
        obeyed, lost, gone = self._save_first(
            context, [(r.bdm, r.record) for r in inferred])
        stored = {id(bdm): record for bdm, record in obeyed}
        by_instance = {}
        for result in inferred:
            if id(result.bdm) in stored:
                result.record = stored[id(result.bdm)]
                result.disk_name = result.record.disk_name
                if id(result.bdm) not in lost:
                    by_instance.setdefault(result.bdm.instance_uuid,
                                           []).append(result.disk_name)
            else:
                result.record = None
                result.reason = 'its mapping was deleted meanwhile'
        for uuid, names in by_instance.items():
            LOG.info('Recorded the inferred layout of disks %(disks)s of '
                     'instance %(uuid)s, made before records existed',
                     {'disks': ', '.join(names), 'uuid': uuid})

    def legacy_leftovers(self, instance, bdms):
        """The disks of unrecorded mappings that a destroy may remove
        although their layout was refused (see ``legacy.owned_disks``).

        :returns: ([backend], [(disk or mapping, reason)]).
        """
        return legacy.owned_disks(instance, bdms, cache=self._cache)

    @staticmethod
    def remove_legacy_files(instance_dir):
        """Remove what Nova 34 kept beside the disks of a destroyed
        instance (``disk.info``)."""
        legacy.remove_disk_info(instance_dir)

    # --- config drive and rescue disks ---------------------------------------
    # Disks beside the instance's own mappings: each is a local mapping of
    # its own whose record (source_kind) says what it is, written here
    # before the disk is made. The methods above never see them
    # (``_local_bdms``); destroy removes them as any recorded disk.

    def extra_disks(self, instance, bdms):
        """The instance's config drive and rescue disk, from their records.

        :returns: {source_kind: LocalDisk} ('file': the config drive,
            'rescue': the rescue disk); LocalDisk.role is the source kind.
        """
        found = {}
        for bdm in bdms:
            kind = bdm.is_local and _extra_kind(bdm)
            if kind:
                found[kind] = LocalDisk(bdm, kind, backends.backend_for(
                    instance, bdm.get_disk_metadata(), cache=self._cache))
        return found

    def import_config_drive(self, context, instance, bdms, path, cdrom):
        """Record, then create, the config drive from the file ``path``.

        :param cdrom: attach it as a cdrom (iso9660), else as a disk.
        :returns: the config drive's LocalDisk.
        :raises: DiskPlanningFailed, BackendUnavailable (nothing recorded
            or made), InvalidInput (one exists already), DiskCreateFailed
            (the disk and its record are removed).
        """
        if fields.DiskSourceKind.FILE in self.extra_disks(instance, bdms):
            raise exception.InvalidInput(
                reason='instance %s has a config drive already' %
                       instance.uuid)
        record = policy.plan_config_drive(instance, os.path.getsize(path))
        disk = self._record_extra(
            context, instance, record, fields.BlockDeviceSourceType.BLANK,
            'cdrom' if cdrom else 'disk')
        self._make_extra(instance, disk,
                         lambda: disk.backend.import_file(path))
        return disk

    def create_rescue_disk(self, context, instance, bdms, image_meta):
        """Record, then create, the rescue disk from ``image_meta``'s image
        (fetched through the verified fetch, as any image).

        :returns: the rescue disk's LocalDisk.
        :raises: as ``import_config_drive``; and the fetch's errors (the
            disk and its record are removed).
        """
        if fields.DiskSourceKind.RESCUE in self.extra_disks(instance, bdms):
            raise exception.InvalidInput(
                reason='instance %s is rescued already' % instance.uuid)
        record = policy.plan_rescue_disk(instance, image_meta)
        disk = self._record_extra(
            context, instance, record, fields.BlockDeviceSourceType.IMAGE,
            'disk')
        self._make_extra(instance, disk, lambda: disk.backend.
                         create_from_image(context, record.image_id,
                                           size=record.size))
        return disk

    def remove_extra_disk(self, instance, disk):
        """Remove the disk, then its record (its mapping). A disk whose
        removal fails keeps its record."""
        disk.backend.remove()
        disk.bdm.destroy()
        LOG.info('Removed disk %(disk)s of instance %(uuid)s and its '
                 'record', {'disk': disk.disk_name, 'uuid': instance.uuid})

    def _record_extra(self, context, instance, record, source_type,
                      device_type):
        """Build the backend (refusing one this host cannot serve), then
        save the record as a new local mapping: before the disk exists."""
        backend = backends.backend_for(instance, record, cache=self._cache)
        backend.check_available()
        # no_device: Nova's own drivers never make a guest's disk of this
        # mapping (a blank local one would be an ephemeral disk to Nova
        # 34's); it is known here by its record's source_kind.
        bdm = block_device_obj.BlockDeviceMapping(
            context, instance_uuid=instance.uuid, source_type=source_type,
            destination_type=fields.BlockDeviceDestinationType.LOCAL,
            device_type=device_type, boot_index=-1, no_device=True,
            image_id=record.image_id, driver_info=record.to_driver_info())
        bdm.create()
        LOG.info('Recorded disk %(disk)s of instance %(uuid)s',
                 {'disk': record.disk_name, 'uuid': instance.uuid})
        return LocalDisk(bdm, record.source_kind, backend)

    def _make_extra(self, instance, disk, create):
        try:
            create()
        except BaseException as e:
            # Unlike the instance's own disks, nothing retries these: the
            # disk and its record go together. A disk that was there
            # already is not this call's (another operation on the
            # instance made it, recorded under a mapping of its own):
            # only this call's record goes.
            try:
                if isinstance(e, exception.DiskAlreadyExists):
                    disk.bdm.destroy()
                else:
                    self.remove_extra_disk(instance, disk)
            except Exception:
                LOG.exception('Could not remove disk %(disk)s of instance '
                              '%(uuid)s after a failed create',
                              {'disk': disk.disk_name,
                               'uuid': instance.uuid})
            if isinstance(e, (exception.DiskCreateFailed,
                              exception.ImageUnacceptable,
                              exception.ImageNotFound,
                              exception.InvalidInput)) or \
                    not isinstance(e, Exception):
                raise
            raise exception.DiskCreateFailed(
                instance_uuid=instance.uuid, disk_name=disk.disk_name,
                reason=str(e)) from e


def _fields(record):
    """A record's set fields, to compare two records by value."""
    return {name: getattr(record, name) for name in sorted(record.fields)
            if record.obj_attr_is_set(name)}


def _extra_kind(bdm):
    """The source_kind of a config drive or rescue disk mapping, else
    None (a mapping without a record is one of the instance's own)."""
    record = bdm.get_disk_metadata()
    return record.source_kind if record is not None else None


def _check_all_available(backends):
    """``check_available()`` of every backend, grouped by class so that a
    backend on a shared resource checks its disks together."""
    by_class = {}
    for backend in backends:
        by_class.setdefault(type(backend), []).append(backend)
    for cls, group in by_class.items():
        cls.check_all_available(group)

"""LibvirtDriver: an instance's life on libvirt, its local disks by record.

The driver never decides a disk's layout and never looks at a disk to learn
it. Spawn hands the instance's mappings to the DiskManager, which records
every new disk's layout (one database write) before creating any disk; the
guest XML is then built from those records, each disk's element by its
backend (``libvirt_info``). Every later operation (power on, reboot, power
off, destroy) rebuilds the XML or finds the disks from the same records, so
a change of ``[libvirt]`` layout settings after a spawn changes nothing for
that instance.

Targets are assigned in attach order: the root disk is ``vda``, then the
ephemerals in mapping order, then swap (``vdb``, ``vdc``, ...), so they are
the same every time the XML is rebuilt.

Power states follow upstream's ``nova.compute.power_state`` values.
"""

import errno
import mmap
import os
import secrets
import time

import libvirt
from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_utils import excutils

import nova.conf
from nova import exception
from nova.objects import block_device as block_device_obj
from nova.objects import fields
from nova import utils
from nova.virt.libvirt import config
from nova.virt.libvirt import config_drive
from nova.virt.libvirt import disk_tuning
from nova.virt.libvirt import host as libvirt_host
from nova.virt.libvirt.imagebackend import manager as disk_manager
from nova.virt.libvirt.imagebackend import policy
from nova.virt.libvirt import power_state
from nova.virt.libvirt import snapshot as snapshot_mod
from nova.virt import staging

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: Guest memory: the guests here exist to prove their disks open.
GUEST_MEMORY_MB = 64
GUEST_VCPUS = 1

#: How long a graceful (ACPI) shutdown may take before a hard stop.
SOFT_SHUTDOWN_POLL_S = 0.5

#: The block an O_DIRECT probe writes: the alignment O_DIRECT asks for.
_DIRECT_IO_BLOCK = 4096


def target_dev(index, prefix='vd'):
    """``vda`` ... ``vdz``, ``vdaa`` ...: the index-th virtio target."""
    letters = ''
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord('a') + rem) + letters
    return prefix + letters


class LibvirtDriver:
    """Spawn, destroy and power operations of libvirt instances.

    :param host: a host.Host (default: one on ``[libvirt]
        connection_uri``).
    :param disks: an imagebackend DiskManager (default: a new one on the
        process-wide image cache).
    """

    def __init__(self, host=None, disks=None):
        self.host = host or libvirt_host.Host()
        self.disks = disks or disk_manager.DiskManager()
        self._cache_modes = {}

    # --- spawn and destroy ---------------------------------------------------

    def spawn(self, context, instance, image_meta, block_device_info=None,
              progress=None, config_drive=False):
        """Create the instance's local disks, then define and start it.

        :param instance: the Instance.
        :param image_meta: the root image's metadata from the image service
            ({'id', 'disk_format', 'virtual_size', ...}).
        :param block_device_info: the instance's BlockDeviceMappings (a
            BlockDeviceMappingList or list); None loads them.
        :param progress: optional callable(message) told of each step.
        :param config_drive: give the instance a config drive (as does
            ``[DEFAULT] force_config_drive``).
        :raises: DiskPlanningFailed, BackendUnavailable (nothing recorded
            or made), DiskLayoutMismatch (a disk kept from an earlier
            spawn is not what its record says; nothing made),
            DiskCreateFailed (naming the disk, the config drive's
            included; the disks this spawn made are removed, their
            records stay),
            InstanceSpawnFailed (the disks' directory could not be
            synced, or libvirt refused the domain: it is undefined again;
            the disks stay for a retry or a destroy).
        """
        dom = self.host.lookup_domain(instance)
        if dom is not None and dom.isActive():
            # Never redefine (or, on a failed start, undefine) a guest
            # that runs.
            raise exception.InstanceSpawnFailed(
                instance_uuid=instance.uuid, reason='its domain is running')
        bdms = self._bdms(context, instance, block_device_info)
        for bdm in bdms:
            if not bdm.is_local:
                raise exception.InstanceSpawnFailed(
                    instance_uuid=instance.uuid,
                    reason='mapping %s is a volume; this driver makes local '
                           'disks only' % bdm.id)
        try:
            try:
                # One fsync of the instance directory for all its disks,
                # not one per disk: each disk file is fsynced before its
                # name is linked, and the names are made durable here,
                # before the guest is defined. A crash before that leaves
                # the records (saved first) and complete disks or none,
                # which a retry keeps or makes again: nothing ran on them.
                with staging.directory_syncs() as syncs:
                    disks = self.disks.create_local_disks(
                        context, instance, image_meta, bdms,
                        progress=progress)
                    try:
                        disks = disks + self._config_drive(
                            context, instance, bdms, config_drive)
                    except Exception:
                        # The spawn fails: what it made goes (their
                        # records stay), as when a disk of its own fails.
                        self.disks.remove_made(instance, disks)
                        raise
                    self._sync_disk_names(instance, syncs)
            except exception.DiskCreateFailed:
                # The disks this spawn made are gone; so is their directory
                # unless something else is in it.
                self._remove_instance_dir(instance)
                raise
            if progress:
                progress('starting the domain')
            xml = self._guest_xml(instance, disks)
            try:
                dom = self.host.define_domain(xml)
            except libvirt.libvirtError as e:
                raise exception.InstanceSpawnFailed(
                    instance_uuid=instance.uuid,
                    reason='define: %s' % e) from e
            try:
                dom.create()
            except libvirt.libvirtError as e:
                LOG.error('Starting instance %(uuid)s failed: %(error)s',
                          {'uuid': instance.uuid, 'error': e})
                self._undefine(instance, dom)
                raise exception.InstanceSpawnFailed(
                    instance_uuid=instance.uuid,
                    reason='start: %s' % e) from e
        except KeyboardInterrupt:
            # Ctrl-C, or SIGTERM (which the console scripts turn into
            # one): the spawn ends as a failure does, with what it made
            # (domain, disks, their directory) removed. The records stay.
            LOG.warning('Spawn of instance %(uuid)s interrupted; removing '
                        'what it made', {'uuid': instance.uuid})
            try:
                # Reloaded: the config drive's mapping may have been
                # created after ``bdms`` was loaded.
                self.destroy(context, instance)
            except Exception as e:
                LOG.error('Cleaning up the interrupted spawn of instance '
                          '%(uuid)s failed: %(error)s',
                          {'uuid': instance.uuid, 'error': e})
            raise
        LOG.info('Spawned instance %(uuid)s with disks %(disks)s',
                 {'uuid': instance.uuid,
                  'disks': ', '.join(d.disk_name for d in disks)})

    @staticmethod
    def _sync_disk_names(instance, syncs):
        """Make the names of the disks just published durable (one fsync
        per directory); an I/O error fails the spawn, the disks and their
        records staying for a retry or a destroy."""
        try:
            syncs.sync()
        except OSError as e:
            raise exception.InstanceSpawnFailed(
                instance_uuid=instance.uuid,
                reason='syncing its disks\' directory: %s' % e) from e

    def destroy(self, context, instance, block_device_info=None,
                destroy_disks=True):
        """Stop and undefine the domain, then remove the recorded disks.

        Idempotent: a missing domain or disk is not an error. Each disk is
        removed as its record says (backend and location), whatever the
        node's settings are now. A local mapping without a record is a
        disk made before records existed: it is recorded first (legacy
        inference) and removed as recorded; if its layout is refused, the
        disk is still removed where it is certainly the instance's (its
        name in the instance's directory or volume names), and a mapping
        whose storage cannot be looked at is reported
        (LegacyDisksNotRemoved, after everything else was removed).

        Every disk's backend is built from its record before the domain is
        touched: a record this host cannot serve (or read) refuses the
        destroy while the guest is still as it was, rather than leaving it
        undefined with its disks behind.

        :raises: BackendUnavailable, DiskMetadataInvalid, UnsafePath (the
            instance's directory is a link or not a directory), nothing
            touched; InstanceDomainFailed if libvirt refuses to stop or
            undefine; the first error of a disk removal, after trying all;
            LegacyDisksNotRemoved.
        """
        backends, unresolved = [], []
        if destroy_disks:
            self._check_instance_dir(instance)
            backends, unresolved = self._backends_to_remove(
                instance, self._bdms(context, instance, block_device_info))
        dom = self.host.lookup_domain(instance)
        if dom is not None:
            self._stop(instance, dom)
            self._undefine(instance, dom)
        if not destroy_disks:
            return
        failures = []
        for backend in backends:
            try:
                backend.remove()
            except Exception as e:
                LOG.error('Removing a disk of instance %(uuid)s failed: '
                          '%(error)s', {'uuid': instance.uuid, 'error': e})
                failures.append(e)
        if failures:
            raise failures[0]
        if unresolved:
            raise exception.LegacyDisksNotRemoved(
                instance_uuid=instance.uuid, disks='; '.join(
                    '%s: %s' % item for item in unresolved))
        try:
            with self._instance_dir(instance) as instance_dir:
                self.disks.remove_legacy_files(instance_dir)
        except FileNotFoundError:
            pass
        self._remove_instance_dir(instance)
        LOG.info('Destroyed instance %(uuid)s', {'uuid': instance.uuid})

    # --- power -------------------------------------------------------------

    def power_off(self, context, instance, block_device_info=None,
                  timeout=0):
        """Stop the guest and redefine it from the records.

        :param timeout: seconds to wait for a graceful (ACPI) shutdown
            before the hard stop; 0 stops at once.
        """
        dom = self._require_domain(instance)
        disks = self._guest_disks(context, instance, block_device_info)
        self._stop(instance, dom, timeout=timeout)
        self._define(instance, disks)

    def power_on(self, context, instance, block_device_info=None):
        """Redefine the guest from the records and start it.

        :raises: DiskLayoutMismatch if a disk is not what its record says
            (nothing is defined or started), and as ``_define``/``_start``.
        """
        disks = self._guest_disks(context, instance, block_device_info)
        self._verify(disks)
        dom = self._define(instance, disks)
        self._start(instance, dom)

    def reboot(self, context, instance, block_device_info=None,
               reboot_type='HARD', timeout=0):
        """Stop, redefine from the records, start.

        Always a restart of the domain (upstream's hard reboot), so that the
        guest runs with the XML of its records; a missing domain is defined
        again from them. ``reboot_type`` 'SOFT' first asks the guest to
        shut down and waits up to ``timeout`` seconds.

        The disks are built from their records before the guest is
        stopped, so a record this host cannot serve refuses the reboot
        with the guest still running. Each disk is verified against its
        record once the guest stopped (it can write to them until then):
        a mismatch (DiskLayoutMismatch) leaves the guest stopped, neither
        redefined nor started.
        """
        disks = self._guest_disks(context, instance, block_device_info)
        dom = self.host.lookup_domain(instance)
        if dom is not None:
            self._stop(instance, dom,
                       timeout=timeout if reboot_type == 'SOFT' else 0)
        self._verify(disks)
        dom = self._define(instance, disks)
        self._start(instance, dom)

    def get_power_state(self, instance):
        """The instance's power state (NOSTATE if it has no domain)."""
        dom = self.host.lookup_domain(instance)
        if dom is None:
            return power_state.NOSTATE
        state, _reason = dom.state()
        return power_state.LIBVIRT_POWER_STATE.get(state, power_state.NOSTATE)

    def get_domain_state(self, instance):
        """libvirt's name of the domain's state ('running', 'shut off'...),
        or None if the instance has no domain on this host."""
        return power_state.domain_state(self.host, instance)

    def get_guest_xml(self, context, instance, block_device_info=None):
        """The guest XML the records describe (what a redefine writes)."""
        return self._guest_xml(instance, self._guest_disks(
            context, instance, block_device_info))

    # --- snapshots ---------------------------------------------------------

    def snapshot(self, context, instance, name, image_api=None,
                 block_device_info=None, progress=None):
        """A new image from the root disk, read as its record says.

        An active guest is stopped (managed save) for the copy and started
        again after it, as it was (see nova.virt.libvirt.snapshot).

        :param name: the new image's name.
        :param image_api: the image service to add it to (default: the one
            the root disk's image cache fetches from).
        :returns: the new image's metadata.
        :raises: SnapshotFailed (nothing added, nothing left behind),
            and as ``get_backend`` for an unreadable record.
        """
        disks = self._local_disks(context, instance, block_device_info)
        roots = [d for d in disks if d.role == policy.ROOT]
        if not roots:
            raise exception.SnapshotFailed(
                name=name, instance_uuid=instance.uuid,
                reason='it has no local root disk')
        backend = roots[0].backend
        return snapshot_mod.take(
            context, image_api or backend.cache.image_api, instance,
            backend, self.host.lookup_domain(instance), name,
            progress=progress)

    # --- config drive and rescue ---------------------------------------------

    def rescue(self, context, instance, rescue_image_id=None,
               image_api=None, block_device_info=None):
        """Boot the guest from a rescue disk, its own disks attached.

        The rescue disk (``disk.rescue``) is made from ``rescue_image_id``,
        else ``[libvirt] rescue_image_id``, else the instance's image,
        through the verified fetch, with a record of its own written
        first. The guest is stopped, each of its disks verified against
        its record, and redefined with the rescue disk first (it boots
        from it) and its own disks after it, each as recorded.

        :raises: InvalidInput (rescued already), ImageNotFound,
            DiskPlanningFailed, DiskCreateFailed, ImageUnacceptable
            (nothing of the rescue disk is left; the guest stays
            stopped), DiskLayoutMismatch, InstanceDomainFailed.
        """
        bdms = self._bdms(context, instance, block_device_info)
        extra = self.disks.extra_disks(instance, bdms)
        if fields.DiskSourceKind.RESCUE in extra:
            # Refused before anything is done to the guest.
            raise exception.InvalidInput(
                reason='instance %s is rescued already' % instance.uuid)
        disks = self._local_disks(context, instance, bdms)
        image_id = (rescue_image_id or CONF.libvirt.rescue_image_id or
                    instance.image_ref)
        api = image_api or disks[0].backend.cache.image_api
        image_meta = api.get(context, image_id)
        dom = self.host.lookup_domain(instance)
        if dom is not None:
            self._stop(instance, dom)
        self._verify(disks)
        rescue = self.disks.create_rescue_disk(context, instance, bdms,
                                               image_meta)
        try:
            dom = self._define(instance, [rescue] + disks)
            self._start(instance, dom)
        except Exception:
            with excutils.save_and_reraise_exception():
                self.disks.remove_extra_disk(instance, rescue)
                self._define(instance, disks)
        LOG.info('Rescued instance %(uuid)s from image %(image)s',
                 {'uuid': instance.uuid, 'image': image_id})

    def unrescue(self, context, instance, block_device_info=None):
        """Stop the rescued guest, remove the rescue disk and its record,
        redefine the guest from its own records and start it.

        :raises: InvalidInput if the instance is not rescued.
        """
        bdms = self._bdms(context, instance, block_device_info)
        rescue = self.disks.extra_disks(instance, bdms).get(
            fields.DiskSourceKind.RESCUE)
        if rescue is None:
            raise exception.InvalidInput(
                reason='instance %s is not rescued' % instance.uuid)
        disks = self._local_disks(context, instance, bdms)
        dom = self.host.lookup_domain(instance)
        if dom is not None:
            self._stop(instance, dom)
        self.disks.remove_extra_disk(instance, rescue)
        self._verify(disks)
        dom = self._define(instance, disks)
        self._start(instance, dom)
        LOG.info('Unrescued instance %(uuid)s', {'uuid': instance.uuid})

    def _config_drive(self, context, instance, bdms, requested):
        """The config drive of a spawn: the one an earlier spawn made, or
        a new one if asked for (or forced), else none."""
        existing = self.disks.extra_disks(instance, bdms).get(
            fields.DiskSourceKind.FILE)
        if existing is not None and existing.backend.exists():
            return [existing]
        if existing is not None:
            # Recorded by a spawn that died before making it.
            self.disks.remove_extra_disk(instance, existing)
            bdms.remove(existing.bdm)
        elif not config_drive.required(requested):
            return []
        fmt = config_drive.drive_format()
        try:
            with config_drive.built(instance, fmt) as path:
                return [self.disks.import_config_drive(
                    context, instance, bdms, path,
                    cdrom=fmt == config_drive.ISO9660)]
        except (processutils.ProcessExecutionError, OSError) as e:
            # Building the drive's file (genisoimage, mkfs.vfat, mcopy)
            # failed: nothing was recorded or made.
            raise exception.DiskCreateFailed(
                instance_uuid=instance.uuid,
                disk_name=policy.CONFIG_DISK,
                reason='building the config drive: %s' % e) from e

    # --- helpers -----------------------------------------------------------

    def _bdms(self, context, instance, block_device_info):
        if block_device_info is not None:
            return list(block_device_info)
        return list(block_device_obj.BlockDeviceMappingList
                    .get_by_instance_uuid(context, instance.uuid))

    def _local_disks(self, context, instance, block_device_info,
                     with_rescue=False):
        """[LocalDisk] of the instance, each built from its record; its
        config drive (if any) last. ``with_rescue``: the rescue disk, if
        the instance is rescued, first."""
        bdms = self._bdms(context, instance, block_device_info)
        extra = self.disks.extra_disks(instance, bdms)
        first = [extra[fields.DiskSourceKind.RESCUE]] if (
            with_rescue and fields.DiskSourceKind.RESCUE in extra) else []
        last = [extra[fields.DiskSourceKind.FILE]] if (
            fields.DiskSourceKind.FILE in extra) else []
        return first + self.disks.local_disks(instance, bdms) + last

    def _guest_disks(self, context, instance, block_device_info):
        """[LocalDisk] the guest is defined with: ``_local_disks``, after
        the rescue disk while the instance is rescued (the guest boots
        from it until ``unrescue``, through reboots and power cycles)."""
        return self._local_disks(context, instance, block_device_info,
                                 with_rescue=True)

    @staticmethod
    def _verify(disks):
        """Before a guest is defined from existing disks and started: each
        disk must be what its record says (see ``Image.verify``); the
        guest could have written a qcow2 header into a raw disk whose
        record says qcow2, naming a host file."""
        for disk in disks:
            disk.backend.verify()

    def _backends_to_remove(self, instance, bdms):
        """The backend of every local disk, built before anything is
        touched: as recorded (unrecorded ones are recorded on this first
        touch), and for those whose layout is refused, the disks that are
        certainly theirs.

        :returns: ([backend], [(disk, why its storage is unknown)]).
        """
        backends = []
        refused = False
        for bdm in bdms:
            if not bdm.is_local:
                continue
            try:
                backends.append(self.disks.get_backend(instance, bdm))
                continue
            except exception.DiskMetadataMissing as e:
                missing = e
            # Out of the except block: oslo.log would repeat the error.
            LOG.warning('%(error)s', {'error': missing})
            refused = True
        if not refused:
            return backends, []
        owned, unresolved = self.disks.legacy_leftovers(instance, bdms)
        for backend in owned:
            LOG.warning('Removing disk %(disk)s of instance %(uuid)s, which '
                        'has no record, by its name', {
                            'disk': backend.disk_name,
                            'uuid': instance.uuid})
        return backends + owned, unresolved

    def _instance_dir(self, instance):
        """Open exactly ``instances_path/<uuid>``: the uuid validated,
        instances_path checked (StrictModes), the instance's directory
        never reached through a link.

        :returns: staging.Directory (close it).
        :raises: FileNotFoundError; UnsafePath (a link, a file or a FIFO
            at its name: not the instance's directory, left alone);
            UnsafeDirectory.
        """
        uuid = utils.validate_uuid(instance.uuid)
        with staging.open_root(CONF.instances_path) as root:
            return root.subdir(uuid)

    def _check_instance_dir(self, instance):
        """Refuse, before any disk of it is touched, an instance whose
        directory is not a real directory (a link to another instance's
        directory would have that instance's disks removed)."""
        try:
            self._instance_dir(instance).close()
        except FileNotFoundError:
            pass

    def _remove_instance_dir(self, instance):
        # Disks were removed one by one as recorded; the directory goes only
        # if nothing else (a file we know nothing of) is left in it. It is
        # removed as the directory opened (never through a link): rmdir of
        # its name in instances_path, after proving that name is it.
        try:
            instance_dir = self._instance_dir(instance)
        except FileNotFoundError:
            return
        with instance_dir, staging.open_root(CONF.instances_path) as root:
            uuid = os.path.basename(instance_dir.path)
            if not root.same_file(uuid, instance_dir.fd):
                return  # replaced meanwhile: not ours to remove
            try:
                root.rmdir(uuid)
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno != errno.ENOTEMPTY:
                    raise
                LOG.warning('Instance directory %(path)s is not empty after '
                            'its disks were removed; leaving it',
                            {'path': instance_dir.path})

    def _cache_mode(self):
        """The cache mode of a disk no ``[libvirt] disk_cachemodes`` entry
        names: 'none' (O_DIRECT) where instances_path supports it, else
        'writeback', as upstream. Probed once per path."""
        path = CONF.instances_path
        mode = self._cache_modes.get(path)
        if mode is None:
            mode = disk_tuning.default_cache_mode(_supports_direct_io(path))
            self._cache_modes[path] = mode
        return mode

    def _guest_xml(self, instance, disks):
        """The domain XML: each disk's element from its record (what it
        is), tuned from config and the flavor (how it is attached)."""
        settings = disk_tuning.settings_from_conf(CONF, self._cache_mode())
        extra_specs = disk_tuning.flavor_extra_specs(instance)
        elements = [disk.backend.libvirt_info(target_dev(i))
                    for i, disk in enumerate(disks)]
        for disk, element in zip(disks, elements):
            _attach_extra(disk, element)
        for disk, element in zip(disks, elements):
            # A cached base under a disk is checked every time a guest is
            # defined on it (it may have been swapped since the disk was
            # made): CacheEntryInvalid, nothing defined.
            for layer in element.backing_store:
                disk.backend.cache.check_base(layer.path, layer.format)
        units = disk_tuning.scsi_units([e.target_bus for e in elements])
        for disk, element, unit in zip(disks, elements, units):
            disk_tuning.apply(element, disk_tuning.tune(
                settings, element.source_type, disk.backend.record,
                extra_specs=extra_specs, unit=unit))
        guest = config.LibvirtConfigGuest(
            name=libvirt_host.domain_name(instance),
            uuid=instance.uuid,
            virt_type=self.host.domain_type,
            memory_mb=GUEST_MEMORY_MB,
            vcpus=GUEST_VCPUS,
            disks=elements)
        return guest.to_xml()

    def _require_domain(self, instance):
        dom = self.host.lookup_domain(instance)
        if dom is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        return dom

    def _define(self, instance, disks):
        """Define (or redefine) the domain with ``disks`` as recorded."""
        xml = self._guest_xml(instance, disks)
        try:
            return self.host.define_domain(xml)
        except libvirt.libvirtError as e:
            raise exception.InstanceDomainFailed(
                action='define', instance_uuid=instance.uuid,
                reason=str(e)) from e

    def _start(self, instance, dom):
        if dom.isActive():
            return
        try:
            dom.create()
        except libvirt.libvirtError as e:
            raise exception.InstanceDomainFailed(
                action='start', instance_uuid=instance.uuid,
                reason=str(e)) from e

    def _stop(self, instance, dom, timeout=0):
        """Stop the guest: gracefully within ``timeout`` s, else at once."""
        if not dom.isActive():
            return
        if timeout:
            try:
                dom.shutdown()
            except libvirt.libvirtError as e:
                LOG.debug('Graceful shutdown of %(uuid)s refused: %(error)s',
                          {'uuid': instance.uuid, 'error': e})
            deadline = time.monotonic() + timeout
            while dom.isActive() and time.monotonic() < deadline:
                time.sleep(SOFT_SHUTDOWN_POLL_S)
            if not dom.isActive():
                return
        try:
            dom.destroy()
        except libvirt.libvirtError as e:
            # It may have stopped by itself meanwhile.
            if dom.isActive():
                raise exception.InstanceDomainFailed(
                    action='stop', instance_uuid=instance.uuid,
                    reason=str(e)) from e

    def _undefine(self, instance, dom):
        """Undefine with everything libvirt keeps beside the definition.

        Snapshot and checkpoint metadata, NVRAM and managed-save images
        would each make a plain undefine fail. Not every driver accepts
        every flag (the test driver refuses NVRAM and checkpoints), so the
        fullest set that is accepted is used.
        """
        full = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                libvirt.VIR_DOMAIN_UNDEFINE_NVRAM |
                libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
        fallback = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                    libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        for flags in (full, fallback):
            try:
                dom.undefineFlags(flags)
                return
            except libvirt.libvirtError as e:
                if libvirt_host.is_error(e, libvirt.VIR_ERR_NO_DOMAIN):
                    return
                if not libvirt_host.is_error(e, libvirt.VIR_ERR_INVALID_ARG,
                                             libvirt.VIR_ERR_NO_SUPPORT):
                    raise exception.InstanceDomainFailed(
                        action='undefine', instance_uuid=instance.uuid,
                        reason=str(e)) from e
        try:
            dom.undefine()
        except libvirt.libvirtError as e:
            if not libvirt_host.is_error(e, libvirt.VIR_ERR_NO_DOMAIN):
                raise exception.InstanceDomainFailed(
                    action='undefine', instance_uuid=instance.uuid,
                    reason=str(e)) from e


def _attach_extra(disk, element):
    """How a config drive or rescue disk is attached: a cdrom config drive
    on IDE as upstream's (``hdd``, read-only), a rescue disk first in the
    boot order. The instance's own disks are left as they are."""
    if disk.role == fields.DiskSourceKind.RESCUE:
        element.boot_order = 1
    elif (disk.role == fields.DiskSourceKind.FILE and
            disk.bdm.device_type == 'cdrom'):
        element.source_device = 'cdrom'
        element.target_bus = 'ide'
        element.target_dev = 'hdd'
        element.readonly = True


def _supports_direct_io(dirpath):
    """True if files under ``dirpath`` take an aligned O_DIRECT write.

    Some filesystems accept the O_DIRECT open and refuse the write, so one
    4 KiB block is written from an aligned (mmap) buffer, as upstream
    does. EINVAL (no O_DIRECT) means no; other errors are raised.
    """
    if not hasattr(os, 'O_DIRECT'):
        return False
    utils.ensure_tree(dirpath)
    # A name of its own: instances_path may be shared by several hosts.
    testfile = os.path.join(dirpath,
                            '.directio.test.%s' % secrets.token_hex(8))
    try:
        fd = os.open(testfile, os.O_CREAT | os.O_WRONLY | os.O_DIRECT |
                     os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        if e.errno == errno.EINVAL:
            # Linux creates the file before it refuses O_DIRECT; O_EXCL
            # proves the file is the one this call made.
            os.unlink(testfile)
            return False
        raise
    try:
        with mmap.mmap(-1, _DIRECT_IO_BLOCK) as block:
            block.write(b'x' * _DIRECT_IO_BLOCK)
            os.write(fd, block)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        return False
    finally:
        os.close(fd)
        os.unlink(testfile)
    return True

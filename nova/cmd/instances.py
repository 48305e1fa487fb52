"""nova-libvirt's instance commands: boot, show, list (through the objects
layer: see nova.cmd.listing), destroy, snapshot, rescue, unrescue.

Each ``cmd_*`` takes the ``Invocation`` (context, arguments, output
options) and prints its result. A boot holds a per-instance lock file for
its whole life; an instance left ``building`` whose lock is free was left
by a boot that ended without saving its state (killed, or the database
refused the write), and the next command that reads it repairs it
(``repair``).
"""

import contextlib
import os
import stat
import warnings

from oslo_concurrency import lockutils
from oslo_log import log as logging
from oslo_utils import timeutils
from oslo_utils import uuidutils

from nova.cmd import errors
from nova.cmd import listing
from nova.cmd import output
from nova.cmd import progress as progress_mod
import nova.conf
from nova import exception
from nova import image
from nova.virt.libvirt import power_state

with warnings.catch_warnings():
    # oslo.versionedobjects imports oslo.messaging, which imports
    # oslo.service, which imports eventlet, which warns on import that it
    # is deprecated: noise on every run, and nothing a user can act on.
    warnings.simplefilter('ignore')
    from nova import objects
    from nova.objects import fields
    from nova.virt.libvirt import driver as libvirt_driver
    from nova.virt.libvirt.imagebackend import cache as image_cache
    from nova.virt.libvirt.imagebackend import manager as disk_manager

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

# Every command here works on objects (list only when it cannot do
# without: see nova.cmd.listing).
objects.register_all()

_BOOT_LOCK_PREFIX = 'nova-libvirt-boot-'
#: Held by a command that changes an existing instance (see
#: ``_one_command``).
_COMMAND_LOCK_PREFIX = 'nova-libvirt-instance-'


def _image_api(progress=None):
    api = image.API()
    if progress is not None and progress.enabled:
        return progress_mod.ProgressImageAPI(api, progress)
    return api


def _driver(progress=None):
    cache = image_cache.ImageCache(image_api=_image_api(progress))
    return libvirt_driver.LibvirtDriver(
        disks=disk_manager.DiskManager(cache=cache))


def find_instance(context, ref):
    """An instance by uuid (any case), or by a name only it has."""
    if uuidutils.is_uuid_like(ref):
        return objects.Instance.get_by_uuid(context, str(ref).lower())
    matches = [i for i in objects.InstanceList.get_all(context)
               if i.display_name == ref]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise exception.InstanceNotFound(instance_id=ref)
    raise exception.InvalidInput(
        reason='%d instances are named %r; use a uuid (%s)' % (
            len(matches), ref, ', '.join(i.uuid for i in matches)))


# --- a boot's life and its repair ----------------------------------------

def _boot_lock(uuid):
    return lockutils.external_lock(uuid, lock_file_prefix=_BOOT_LOCK_PREFIX,
                                   lock_path=CONF.oslo_concurrency.lock_path)


def _release_boot_lock(lock, uuid):
    # Removed while held: a repair that opens the name afterwards finds
    # the instance's state already saved.
    lockutils.remove_external_lock_file(
        uuid, lock_file_prefix=_BOOT_LOCK_PREFIX,
        lock_path=CONF.oslo_concurrency.lock_path)
    lock.release()


def this_host():
    """The name instances booted here record as their host
    (``[DEFAULT] host``, as Nova's)."""
    return CONF.host


def repair(context, driver, instances):
    """Repair the instances among ``instances`` that a boot left
    ``building`` without running any more (its lock is free): ERROR, or
    ACTIVE when the domain runs. Returns ``instances``, repaired."""
    for instance in instances:
        if instance.vm_state != 'building':
            continue
        if instance.host and instance.host != this_host():
            # Its boot's lock, and its domain, are on its own host.
            continue
        lock = _boot_lock(instance.uuid)
        if not lock.acquire(blocking=False):
            continue  # its boot is still running
        try:
            fresh = objects.Instance.get_by_uuid(context, instance.uuid)
            if fresh.vm_state != 'building':
                instance.vm_state = fresh.vm_state
                instance.task_state = fresh.task_state
                continue
            state = driver.get_power_state(instance)
            instance.vm_state = ('active' if state == power_state.RUNNING
                                 else 'error')
            instance.task_state = None
            instance.power_state = state
            instance.save()
            LOG.warning('Instance %(uuid)s was left building by a boot that '
                        'ended without saving its state; it is now '
                        '%(state)s', {'uuid': instance.uuid,
                                      'state': instance.vm_state})
        finally:
            _release_boot_lock(lock, instance.uuid)
    return instances


def _mappings(image_id, ephemeral_gb, swap_mb):
    """What the API makes of a flavor's disks: root from the image,
    one ext4 ephemeral, one swap."""
    mappings = [dict(source_type='image', destination_type='local',
                     boot_index=0, image_id=image_id, device_type='disk',
                     delete_on_termination=True)]
    if ephemeral_gb:
        mappings.append(dict(source_type='blank', destination_type='local',
                             boot_index=-1, guest_format='ext4',
                             volume_size=ephemeral_gb, device_type='disk',
                             delete_on_termination=True))
    if swap_mb:
        mappings.append(dict(source_type='blank', destination_type='local',
                             boot_index=-1, guest_format='swap',
                             volume_size=swap_mb, device_type='disk',
                             delete_on_termination=True))
    return mappings


def _power_state(driver, instance):
    """The guest's power state as libvirt reports it; NOSTATE when libvirt
    cannot say."""
    try:
        return driver.get_power_state(instance)
    except exception.NovaException:
        return power_state.NOSTATE


def _save_failed_state(instance, driver, error):
    """ERROR for a boot that failed with ``error`` (also Ctrl-C); when
    even that cannot be saved, raise InstanceStateNotSaved saying so."""
    instance.vm_state = 'error'
    instance.task_state = None
    instance.power_state = _power_state(driver, instance)
    try:
        instance.save()
    except Exception as e:
        raise exception.InstanceStateNotSaved(
            instance_uuid=instance.uuid, vm_state='building',
            error=errors.describe(error)[0],
            reason=errors.describe(e)[0]) from error


def cmd_boot(cli):
    args = cli.args
    context = cli.context
    progress = progress_mod.Progress()
    driver = _driver(progress)
    image_meta = image.API().get(context, cli.uuid(args.image))
    uuid = uuidutils.generate_uuid()
    lock = _boot_lock(uuid)
    lock.acquire()
    try:
        hostname = this_host()
        instance = objects.Instance(
            context, uuid=uuid, display_name=args.display_name or
            'instance-%s' % uuid[:8], host=hostname, node=hostname,
            image_ref=image_meta['id'], root_gb=args.root_gb,
            ephemeral_gb=args.ephemeral_gb,
            flavor=objects.Flavor.from_sizes(args.root_gb, args.ephemeral_gb,
                                             args.swap_mb),
            vm_state='building', task_state='spawning',
            power_state=power_state.NOSTATE)
        instance.create()
        try:
            for values in _mappings(image_meta['id'], args.ephemeral_gb,
                                    args.swap_mb):
                objects.BlockDeviceMapping(context, instance_uuid=uuid,
                                           **values).create()
            bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
                context, uuid)
            driver.spawn(context, instance, image_meta, bdms,
                         progress=progress.step,
                         config_drive=args.config_drive)
        except BaseException as e:
            # As upstream's compute manager: the instance stays, in ERROR,
            # with its records; destroy removes it. Ctrl-C and SIGTERM
            # too: spawn has removed what it made.
            progress.done()
            _save_failed_state(instance, driver, e)
            raise
        finally:
            progress.done()
        instance.vm_state = 'active'
        instance.task_state = None
        instance.power_state = driver.get_power_state(instance)
        instance.launched_at = timeutils.utcnow()
        try:
            instance.save()
        except Exception as e:
            raise exception.InstanceStateNotSaved(
                instance_uuid=uuid, vm_state='building',
                error='booted', reason=errors.describe(e)[0]) from e
    finally:
        _release_boot_lock(lock, uuid)
    # From the records and stat: the disks were just made and verified,
    # so there is nothing qemu-img would add.
    cli.emit(describe(context, driver, instance, inspect=False),
             output.InstanceView())


def _safe_to_inspect(path):
    """None if ``path`` may be handed to qemu-img, else why not.

    A FIFO, socket or device planted at a disk's path would make the
    reader hang or read from something that is not a disk: only a
    regular file or a block device is read.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None  # the backend reports the missing disk
    except OSError as e:
        return 'cannot stat %s: %s' % (path, e.strerror)
    if stat.S_ISREG(mode) or stat.S_ISBLK(mode):
        return None
    kind = ('symlink' if stat.S_ISLNK(mode) else 'fifo' if stat.S_ISFIFO(
        mode) else 'directory' if stat.S_ISDIR(mode) else 'special file')
    return '%s is a %s, not a disk: not opened' % (path, kind)


def _stat_on_disk(path):
    """What stat says of a disk (allocated bytes), or its error."""
    try:
        st = os.lstat(path)
    except OSError as e:
        return {'error': '%s: %s' % (path, e.strerror)}
    return {'allocated': st.st_blocks * 512, 'apparent_size': st.st_size}


def _describe_disks(driver, instance, bdms, inspect=True):
    """Each local disk: target, record, and what is on disk (qemu-img
    with the recorded format when ``inspect``, else stat alone)."""
    try:
        disks = driver.disks.local_disks(instance, bdms)
    except exception.NovaException as e:
        # A mapping without a readable record: show what there is.
        return [{'disk_name': bdm.device_name or 'mapping %s' % bdm.id,
                 'record': None, 'source': None,
                 'on_disk': {'error': str(e)}}
                for bdm in bdms if bdm.is_local]
    # While rescued the guest boots from the rescue disk, defined first
    # (vda): its own disks follow it.
    try:
        first = int(fields.DiskSourceKind.RESCUE in
                    driver.disks.extra_disks(instance, bdms))
    except exception.NovaException:
        first = 0  # an unreadable extra record: shown by the driver's errors
    result = []
    for index, disk in enumerate(disks, start=first):
        record = disk.record
        path = getattr(disk.backend, 'path', None)
        refusal = _safe_to_inspect(path) if path else None
        if refusal:
            on_disk = {'error': refusal}
        elif not inspect:
            on_disk = _stat_on_disk(path) if path else None
        else:
            try:
                on_disk = disk.backend.inspect()
            except exception.NovaException as e:
                on_disk = {'error': str(e)}
        result.append({
            'target': libvirt_driver.target_dev(index),
            'disk_name': record.disk_name,
            'role': disk.role,
            'source': record.source,
            'path': path,
            'record': {name: getattr(record, name)
                       for name in sorted(record.fields)},
            'on_disk': on_disk,
        })
    return result


def describe(context, driver, instance, with_disks=True, inspect=True):
    """The instance as listing.summarise shows it, then (``with_disks``)
    each local disk as _describe_disks does."""
    data = listing.summarise(instance, instance.flavor.swap, driver.host)
    if with_disks:
        bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
            context, instance.uuid)
        data['disks'] = _describe_disks(driver, instance, bdms, inspect)
    return data


def cmd_show(cli):
    driver = _driver()
    instance = find_instance(cli.context, cli.args.instance)
    repair(cli.context, driver, [instance])
    cli.emit(describe(cli.context, driver, instance),
             output.InstanceView())


def cmd_list(cli):
    driver = _driver()
    instances = repair(cli.context, driver,
                       objects.InstanceList.get_all(cli.context))
    cli.emit([describe(cli.context, driver, i, with_disks=False)
              for i in instances], listing.LIST)


def cmd_destroy(cli):
    context = cli.context
    driver = _driver()
    with _one_command(context, driver, cli.args.instance,
                      'destroy') as instance:
        bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
            context, instance.uuid)
        # Say so first, as Nova does: a database that cannot take this
        # write (locked, read-only, full) stops the destroy before any
        # disk is gone.
        instance.task_state = 'deleting'
        instance.save()
        driver.destroy(context, instance, bdms)
        instance.destroy()
        # Removed while held: the instance is gone, and so is its lock.
        _remove_command_lock(instance.uuid)
    cli.emit({'uuid': instance.uuid, 'name': instance.display_name,
              'status': 'deleted'}, output.FieldView())


@contextlib.contextmanager
def _one_command(context, driver, ref, action):
    """The instance ``ref``, held for one command that changes it
    (destroy, snapshot, rescue, unrescue): refused while a boot of it
    runs or another such command holds it (a rescue still fetching its
    image, say, while a destroy removes the instance under it).

    Holds the instance's command lock (an external lock in lock_path,
    never waited for) and reads the instance again under it.

    :yields: the Instance.
    :raises: InstanceNotFound; InvalidInput (busy, or being booted).
    """
    instance = find_instance(context, ref)
    if instance.host and instance.host != this_host():
        # Its disks and its domain are there, as are the locks of the
        # commands running on it.
        raise exception.InvalidInput(
            reason='instance %s is on host %s, not this one (%s): %s it '
                   'there' % (instance.uuid, instance.host, this_host(),
                              action))
    repair(context, driver, [instance])
    uuid = instance.uuid
    lock = lockutils.external_lock(uuid,
                                   lock_file_prefix=_COMMAND_LOCK_PREFIX,
                                   lock_path=CONF.oslo_concurrency.lock_path)
    if not lock.acquire(blocking=False):
        raise exception.InvalidInput(
            reason='instance %s is busy: another command (destroy, '
                   'snapshot, rescue or unrescue) is running on it; %s it '
                   'when that command has ended' % (uuid, action))
    try:
        # As it is now that nothing else changes it (a destroy that ran
        # meanwhile: InstanceNotFound).
        instance = objects.Instance.get_by_uuid(context, uuid)
        if instance.vm_state == 'building':
            raise exception.InvalidInput(
                reason='instance %s is being booted by another command; '
                       '%s it when that boot has ended' % (uuid, action))
        yield instance
    finally:
        lock.release()


def _remove_command_lock(uuid):
    lockutils.remove_external_lock_file(
        uuid, lock_file_prefix=_COMMAND_LOCK_PREFIX,
        lock_path=CONF.oslo_concurrency.lock_path)


# --- snapshot, rescue ------------------------------------------------------


def cmd_snapshot(cli):
    context = cli.context
    progress = progress_mod.Progress()
    api = _image_api(progress)
    driver = _driver(progress)
    with _one_command(context, driver, cli.args.instance,
                      'snapshot') as instance:
        try:
            meta = driver.snapshot(context, instance, cli.args.image_name,
                                   image_api=api, progress=progress.step)
        finally:
            progress.done()
    cli.emit(meta, output.FieldView())


def _set_state(instance, vm_state, driver):
    instance.vm_state = vm_state
    instance.power_state = driver.get_power_state(instance)
    instance.save()


@contextlib.contextmanager
def _error_if_guest_changed(instance, driver):
    """Around a rescue or unrescue, which stops the guest before changing
    it: a failure that leaves the guest in another power state than it
    had (stopped, say, by a rescue whose image then failed its checks)
    makes the instance ERROR, with that power state, as Nova's compute
    manager leaves it. A failure that left the guest as it was (refused
    before anything was done) changes nothing.

    :raises: what the body raised; InstanceStateNotSaved if ERROR could
        not be saved.
    """
    before = _power_state(driver, instance)
    try:
        yield
    except BaseException as e:
        if _power_state(driver, instance) != before:
            _save_failed_state(instance, driver, e)
        raise


def cmd_rescue(cli):
    context = cli.context
    progress = progress_mod.Progress()
    driver = _driver(progress)
    image_id = cli.uuid(cli.args.image) if cli.args.image else None
    with _one_command(context, driver, cli.args.instance,
                      'rescue') as instance:
        try:
            with _error_if_guest_changed(instance, driver):
                driver.rescue(context, instance, rescue_image_id=image_id)
        finally:
            progress.done()
        _set_state(instance, 'rescued', driver)
    cli.emit(describe(context, driver, instance), output.InstanceView())


def cmd_unrescue(cli):
    context = cli.context
    driver = _driver()
    with _one_command(context, driver, cli.args.instance,
                      'unrescue') as instance:
        with _error_if_guest_changed(instance, driver):
            driver.unrescue(context, instance)
        _set_state(instance, 'active', driver)
    cli.emit(describe(context, driver, instance), output.InstanceView())

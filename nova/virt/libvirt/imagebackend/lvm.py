"""Lvm: a logical volume in the volume group the record names.

The volume is ``record.volume_name`` (``<instance uuid>_<escaped disk
name>``, planned by policy.py) in ``record.volume_group``, reached as the
block device ``storage.lvm.device_path`` gives:

* from an image: the verified cached base, kept in the format the record
  keeps as ``backing_format`` (raw when absent), is written into the
  volume with ``qemu-img convert -f <that format> -O raw -n``;
* from a function: ``func`` runs on the new volume's device, zeroed
  first (no template: a volume cannot be a copy of a file any cheaper
  than being made);
* built under a temporary name and renamed (``lvrename``) into place, see
  ``block.BlockImage``;
* removal wipes per ``[libvirt] volume_clear`` / ``volume_clear_size``
  first; a wipe that fails keeps the volume;
* growth is ``lvextend``, then the extents past the volume the record's
  size made are zeroed (again by the retry of a grow that did not
  finish); shrinking is refused;
* the free space a disk needs is its size in whole extents, less what a
  killed create of it left (its create removes that first);
* the guest never reads what an earlier volume left on the extents: the
  part of a new or grown volume that the image does not cover is zeroed.

Volumes are fully allocated: ``sparse_logical_volumes`` is refused when a
disk is planned (policy.py).
"""

import os

from oslo_log import log as logging
from oslo_utils import units

import nova.conf
from nova import exception
from nova.objects import fields
from nova.virt.libvirt import ephemeral_crypt
from nova.virt.libvirt.imagebackend import block
from nova.virt.libvirt.imagebackend import specs
from nova.virt.libvirt.storage import lvm
from nova.virt import staging

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: qemu-img writes an image in 512-byte sectors, the last one whole.
_SECTOR = 512


def _round_up(value, step):
    return -(-value // step) * step


class Lvm(block.BlockImage):
    """A logical volume disk (see the module docstring)."""

    spec = specs.LVM

    def check_available(self):
        """Refuse a volume group that is missing, or that lacks the free
        space for a disk not made yet.

        :raises: BackendUnavailable naming the instance, disk, backend and
            volume group.
        """
        self.check_all_available([self])

    @classmethod
    def check_all_available(cls, disks):
        """Check ``disks`` with one look at each of their volume groups:
        a group must hold all of its disks not made yet together.

        :raises: BackendUnavailable naming the first disk refused.
        """
        for vg, group in _by_volume_group(disks).items():
            # One command: the group, and its volumes for the creates to
            # come.
            info = lvm.volume_group_info(vg, with_volumes=True)
            needed = 0
            for disk in group:
                reason = None
                if info is None:
                    reason = 'volume group %s does not exist' % vg
                else:
                    volumes = info['volumes']
                    disk._saw(volumes)
                    if disk.volume_name not in volumes:
                        # Whole extents; less what a killed create of the
                        # disk left (its create removes that first).
                        made = _round_up(disk.record.size,
                                         info['extent_size'])
                        needed += max(
                            made - volumes.get(disk.temp_volume_name, 0), 0)
                        if info['free'] < needed:
                            reason = (
                                'volume group %s has %d bytes free, the '
                                'instance\'s new disks up to this one need '
                                '%d' % (vg, info['free'], needed))
                disk._refuse_unless_servable(reason)

    @classmethod
    def which_exist(cls, disks):
        """One listing per volume group for all of ``disks``."""
        present = set()
        for group in _by_volume_group(disks).values():
            volumes = group[0]._listing()
            present.update(id(d) for d in group if d.volume_name in volumes)
        return [disk for disk in disks if id(disk) in present]

    def _refuse_unless_servable(self, reason):
        """Raise BackendUnavailable for ``reason``, or for an encryption
        this host cannot open; return if neither."""
        if self.record.encryption:
            # Never write an encrypted disk's bytes in clear: refused
            # where dm-crypt is missing, and until the mapping is opened
            # here at all.
            ephemeral_crypt.check_host_can_encrypt(self.instance_uuid,
                                                   self.disk_name)
            reason = ('opening a %s mapping over the volume is not '
                      'implemented' % self.record.encryption)
        if reason:
            raise exception.BackendUnavailable(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                backend=self.spec.name, reason=reason)

    def _image_cache_format(self):
        return self.record.backing_format or fields.DiskFormat.RAW

    def _create_from_entry(self, device, entry, size):
        if entry.format != self._image_cache_format():
            raise exception.CacheEntryInvalid(
                name=entry.name, reason='holds %s, the disk is recorded '
                'from %s' % (entry.format, self._image_cache_format()))
        src = self._open_source(entry)
        try:
            self._convert_into(staging.fd_path(src), entry.format, device)
        finally:
            os.close(src)
        # The extents may hold an earlier volume's bytes (volume_clear =
        # none, or a shorter clear size): the guest sees the image, then
        # zeros up to the end of the volume (whole extents, maybe past
        # ``size``), never them. qemu-img wrote the image's last 512-byte
        # sector whole; on a 4Kn device the rest of that 4 KiB sector
        # still holds the earlier bytes, which zero_range writes over.
        lvm.zero_range(device, _round_up(entry.virtual_size, _SECTOR))

    def _template(self, func, cache_name, size):
        # No template: create_from_func runs the function on each new
        # volume (_run_func), so there is never one to convert.
        return None

    def _create_from_template(self, device, entry, size):
        raise NotImplementedError('Lvm has no templates (see _template)')

    def _run_func(self, device, func, size):
        # mkfs and mkswap write their own structures only: the rest of
        # the extents would show the guest an earlier volume's bytes
        # (volume_clear = none, or a volume removed by another tool).
        lvm.zero_range(device, 0)
        func(device, size)

    def _grow(self, name, size):
        """Grow volume ``name`` to ``size`` bytes (whole extents), its new
        extents zeroed before anything else is done with them.

        The zeroing is announced first, by a tag on the volume that names
        where it starts (``nova-unzeroed-from-<offset>``), and the tag
        goes once it is done. A grow that did not finish (killed after its
        lvextend) leaves the tag, and the next resize of the disk zeroes
        from there before anything else. A volume larger than its record
        without the tag is a grow that finished whose record was not
        saved: every byte past the record was zeroed, and may be the
        guest's since, so it is kept as it is. A tag below the record's
        size is stale (its grow finished, and its record was saved).

        :raises: DiskShrinkNotSupported for a volume larger than ``size``
            (its record lags behind; it is never cut).
        """
        vg = self.record.volume_group
        # resize() refused a size below the record's. The volume's size,
        # tags and the extent size come from one LVM command.
        info = lvm.volume_group_info(vg, with_volumes=True)
        if info is None:
            raise exception.BackendUnavailable(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                backend=self.backend_name, reason='volume group %s not '
                'found' % vg)
        current = info['volumes'].get(name)
        if current is None:
            raise exception.DiskNotFound(instance_uuid=self.instance_uuid,
                                         disk_name=self.disk_name)
        unfinished = _unzeroed_from(info['tags'].get(name, ()))
        if unfinished is not None:
            if unfinished < _round_up(self.record.size, info['extent_size']):
                self._drop_tag(name, unfinished)
            else:
                LOG.warning('Volume %(volume)s of %(disk)r was grown by a '
                            'resize that did not finish: zeroing it from '
                            '%(start)d', {'volume': name, 'disk': self,
                                          'start': unfinished})
                lvm.zero_range(self._device_path(name), unfinished)
                self._drop_tag(name, unfinished)
        wanted = _round_up(size, info['extent_size'])
        if wanted < current:
            raise exception.DiskShrinkNotSupported(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                current=current, requested=size)
        if wanted == current:
            return
        lvm.add_tag(vg, name, _UNZEROED_TAG + str(current))
        lvm.extend_volume(vg, name, size)
        # As on create: the new extents read as zeros, never as what an
        # earlier volume left there.
        lvm.zero_range(self._device_path(name), current)
        self._drop_tag(name, current)

    def _drop_tag(self, name, offset):
        """Remove the tag of a grow whose zeroing is done. A failure is
        logged, not raised: the grow is done, and the next grow of the
        disk, its record saved by then, finds the tag stale."""
        try:
            lvm.delete_tag(self.record.volume_group, name,
                           _UNZEROED_TAG + str(offset))
        except exception.ProcessFailed as e:
            LOG.warning('Could not remove tag %(tag)s of volume %(volume)s '
                        'of %(disk)r: %(error)s',
                        {'tag': _UNZEROED_TAG + str(offset), 'volume': name,
                         'disk': self, 'error': e})

    # --- volumes -------------------------------------------------------------

    def _container(self):
        return self.record.volume_group

    def _volume_size(self, name):
        return lvm.volume_size(self.record.volume_group, name)

    def _volume_sizes(self, names):
        volumes = self._listing()
        return {name: volumes.get(name) for name in names}

    def _listing(self):
        """{name: bytes} of every volume in the record's volume group.

        :raises: BackendUnavailable naming the disk, for a group that
            cannot be listed (missing, its PV gone).
        """
        try:
            return lvm.volumes(self.record.volume_group)
        except exception.ProcessFailed as e:
            raise exception.BackendUnavailable(
                instance_uuid=self.instance_uuid, disk_name=self.disk_name,
                backend=self.backend_name, reason=str(e)) from e

    def _create_volume(self, name, size):
        lvm.create_volume(self.record.volume_group, name, size)

    def _rename_volume(self, old, new):
        lvm.rename_volume(self.record.volume_group, old, new)

    def _wipe(self, name, size):
        lvm.clear_volume(self._device_path(name), size,
                         CONF.libvirt.volume_clear,
                         CONF.libvirt.volume_clear_size * units.Mi)

    def _wipe_method(self):
        return CONF.libvirt.volume_clear

    def _remove_volume(self, name):
        lvm.remove_volume(self.record.volume_group, name)

    def _device_path(self, name):
        return lvm.device_path(self.record.volume_group, name)


#: Tag of a volume whose extents from ``<offset>`` on may hold an earlier
#: volume's bytes (see ``Lvm._grow``).
_UNZEROED_TAG = 'nova-unzeroed-from-'


def _unzeroed_from(tags):
    """The offset an unfinished grow's tag names (the lowest, if there
    are several), or None."""
    offsets = [int(tag[len(_UNZEROED_TAG):]) for tag in tags
               if tag.startswith(_UNZEROED_TAG) and
               tag[len(_UNZEROED_TAG):].isdigit()]
    return min(offsets) if offsets else None


def _by_volume_group(disks):
    """{volume group: [disks in it]}, in the order given."""
    groups = {}
    for disk in disks:
        groups.setdefault(disk.record.volume_group, []).append(disk)
    return groups

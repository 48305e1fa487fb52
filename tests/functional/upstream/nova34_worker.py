"""Acts as a Nova 34.0.0 service would, on a database: run in Nova 34's venv.

Run by the tests in this directory with the Python of the venv that holds
the real ``nova==34.0.0`` (never this project's): ``python -P
nova34_worker.py --config-file nova.conf ACTION [ARG]``, from a directory
outside this project's tree so that ``nova`` is upstream's. It imports only
upstream Nova. Each action prints one JSON document on stdout:

``create IMAGE_ID``
    An instance (flavor with swap 512 MiB, root 1 GiB, ephemeral 1 GiB) and
    its image (root), blank (ephemeral), swap and volume mappings, made with
    upstream's own objects. Prints ``{"instance_uuid": ..., "volume_id":
    ...}``.
``check INSTANCE_UUID VOLUME_ID``
    Upstream's objects read, save, create and destroy mappings and
    instances. Prints what they read, and (``root_bdm``) the primitive of
    the instance's root mapping, instance and flavor included.
``load-bdm``
    Loads a mapping primitive from stdin; prints what it holds.
``guest-disks INSTANCE_UUID``
    The disks Nova 34's libvirt driver would give the instance's guest,
    from its mappings as Nova 34 reads them (``get_block_device_info``,
    then ``blockinfo.get_disk_info``): the sorted names of the mapping.
"""

import json
import os
import sys
import uuid

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')

from nova import config  # noqa: E402
from nova import context as nova_context  # noqa: E402
from nova import objects  # noqa: E402

HOST = 'nova34-compute'


def _flavor():
    return objects.Flavor(
        id=1, name='m1.test', flavorid='42', memory_mb=512, vcpus=1,
        root_gb=1, ephemeral_gb=1, swap=512, rxtx_factor=1.0,
        vcpu_weight=None, disabled=False, is_public=True, extra_specs={},
        description=None)


def _instance(ctxt, image_id):
    instance = objects.Instance(
        ctxt, uuid=str(uuid.uuid4()), user_id='user', project_id='project',
        host=HOST, node=HOST, compute_id=1, image_ref=image_id,
        display_name='nova34', memory_mb=512, vcpus=1, root_gb=1,
        ephemeral_gb=1, vm_state='building', task_state='spawning',
        power_state=0, flavor=_flavor(), old_flavor=None, new_flavor=None)
    instance.create()
    return instance


def _bdm(ctxt, instance_uuid, **values):
    bdm = objects.BlockDeviceMapping(ctxt, instance_uuid=instance_uuid,
                                     **values)
    bdm.create()
    return bdm


def create(ctxt, image_id):
    instance = _instance(ctxt, image_id)
    volume_id = str(uuid.uuid4())
    _bdm(ctxt, instance.uuid, source_type='image', destination_type='local',
         image_id=image_id, boot_index=0, device_name='/dev/vda',
         device_type='disk', disk_bus='virtio', delete_on_termination=True)
    _bdm(ctxt, instance.uuid, source_type='blank', destination_type='local',
         guest_format='ext4', volume_size=1, boot_index=-1,
         device_name='/dev/vdb', device_type='disk', disk_bus='virtio',
         delete_on_termination=True)
    # No volume_size: the swap size is the flavor's.
    _bdm(ctxt, instance.uuid, source_type='blank', destination_type='local',
         guest_format='swap', boot_index=-1, device_name='/dev/vdc',
         device_type='disk', disk_bus='virtio', delete_on_termination=True)
    _bdm(ctxt, instance.uuid, source_type='volume',
         destination_type='volume', volume_id=volume_id, boot_index=-1,
         device_name='/dev/vdd', connection_info='{"driver_volume_type": '
         '"iscsi"}', attachment_id=str(uuid.uuid4()))
    return {'instance_uuid': instance.uuid, 'volume_id': volume_id}


def check(ctxt, instance_uuid, volume_id):
    instance = objects.Instance.get_by_uuid(ctxt, instance_uuid,
                                            expected_attrs=['flavor'])
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        ctxt, instance_uuid)
    read = {'flavor_swap': instance.flavor.swap,
            'bdms': sorted(b.device_name for b in bdms)}

    # Save: an instance and a mapping.
    instance.task_state = None
    instance.vm_state = 'active'
    instance.save()
    volume = objects.BlockDeviceMapping.get_by_volume_and_instance(
        ctxt, volume_id, instance_uuid)
    volume.connection_info = '{"driver_volume_type": "rbd"}'
    volume.save()
    read['saved'] = [
        objects.Instance.get_by_uuid(ctxt, instance_uuid).vm_state,
        objects.BlockDeviceMapping.get_by_volume(
            ctxt, volume_id).connection_info]

    # Create and destroy: a mapping, then a whole instance.
    extra = _bdm(ctxt, instance_uuid, source_type='blank',
                 destination_type='local', guest_format='ext4',
                 volume_size=1, boot_index=-1, device_name='/dev/vde')
    extra.destroy()
    other = _instance(ctxt, instance.image_ref)
    _bdm(ctxt, other.uuid, source_type='image', destination_type='local',
         image_id=instance.image_ref, boot_index=0, device_name='/dev/vda')
    other.destroy()
    read['after_destroy'] = {
        'bdms': len(objects.BlockDeviceMappingList.get_by_instance_uuid(
            ctxt, instance_uuid)),
        'other_bdms': len(objects.BlockDeviceMappingList.get_by_instance_uuid(
            ctxt, other.uuid)),
    }
    read['root_bdm'] = _root_bdm_primitive(ctxt, instance_uuid)
    return read


def _root_bdm_primitive(ctxt, instance_uuid):
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        ctxt, instance_uuid)
    root = [b for b in bdms if b.boot_index == 0][0]
    root.instance = objects.Instance.get_by_uuid(
        ctxt, instance_uuid, expected_attrs=['flavor'])
    return root.obj_to_primitive()


def load_bdm(ctxt):
    bdm = objects.BlockDeviceMapping.obj_from_primitive(
        json.load(sys.stdin), ctxt)
    return {'version': bdm.VERSION,
            'fields': sorted(k for k in bdm.fields if k in bdm),
            'id': bdm.id, 'uuid': bdm.uuid,
            'instance_uuid': bdm.instance_uuid,
            'instance_version': bdm.instance.VERSION,
            'instance_flavor_swap': bdm.instance.flavor.swap,
            'instance_root_gb': bdm.instance.root_gb}


def guest_disks(ctxt, instance_uuid):
    from nova.virt import driver
    from nova.virt.libvirt import blockinfo
    instance = objects.Instance.get_by_uuid(ctxt, instance_uuid,
                                            expected_attrs=['flavor'])
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        ctxt, instance_uuid)
    local = objects.BlockDeviceMappingList(
        objects=[b for b in bdms if b.destination_type == 'local'])
    info = driver.get_block_device_info(instance, local)
    image_meta = objects.ImageMeta.from_dict({'disk_format': 'raw',
                                              'properties': {}})
    mapping = blockinfo.get_disk_info('kvm', instance, image_meta,
                                      info)['mapping']
    return sorted(mapping)


def main(argv):
    # --config-file FILE ACTION [ARGS]
    config.parse_args(['nova34_worker'] + argv[:2])
    objects.register_all()
    ctxt = nova_context.get_admin_context()
    action, args = argv[2], argv[3:]
    actions = {'create': create, 'check': check, 'load-bdm': load_bdm,
               'guest-disks': guest_disks}
    json.dump(actions[action](ctxt, *args), sys.stdout, default=str)


if __name__ == '__main__':
    main(sys.argv[1:])

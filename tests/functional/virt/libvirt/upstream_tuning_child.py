"""Run by upstream Nova 34.0.0's python (``-P``, outside the work tree):
the tuning of disk elements as upstream's own code computes it.

stdin: JSON {"instances_path": dir, "cases": [case, ...]}, where a case is
{"backend": flat|qcow2|lvm|ploop, "preallocate_images": none|space,
"virt_type": ..., "disk_cachemodes": {source type: mode}, "hw_disk_discard":
null|unmap|ignore, "extra_specs": {...}, "bus": virtio|scsi, "unit": n|null}.
stdout: JSON [{"driver": {attr: value}, "iotune": {name: text},
"unit": text|null}, ...], one per case, read from upstream's XML.

This harness only builds upstream objects and reads their XML: the
decisions (imagebackend's libvirt_info/disk_qos/disk_scsi, the driver's
disk_cachemode and _set_cache_mode, privsep's O_DIRECT probe) are
upstream's code.
"""

import json
import os
import sys
from xml.etree import ElementTree as etree

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')

import nova.conf  # noqa: E402
from nova import objects  # noqa: E402
from nova.virt.libvirt import driver as libvirt_driver  # noqa: E402
from nova.virt.libvirt import imagebackend  # noqa: E402

CONF = nova.conf.CONF
CLASSES = {'flat': imagebackend.Flat, 'qcow2': imagebackend.Qcow2,
           'lvm': imagebackend.Lvm, 'ploop': imagebackend.Ploop}


class DriverState:
    """The two attributes of LibvirtDriver its cache-mode code reads."""

    def __init__(self, disk_cachemodes):
        self.disk_cachemodes = disk_cachemodes
        self._disk_cachemode = None


def tune(case, instance):
    CONF.set_override('preallocate_images', case['preallocate_images'])
    CONF.set_override('virt_type', case['virt_type'], group='libvirt')
    CONF.set_override('hw_disk_discard', case['hw_disk_discard'],
                      group='libvirt')
    mapping = {'bus': case['bus'], 'dev': 'sda' if case['bus'] == 'scsi'
               else 'vda', 'type': 'disk'}
    cls = CLASSES[case['backend']]
    if case['backend'] == 'lvm':
        image = cls(instance, 'disk', disk_info_mapping=mapping)
    else:
        image = cls(instance, 'disk', path=os.path.join(
            CONF.instances_path, instance.uuid, 'disk'),
            disk_info_mapping=mapping)
    state = DriverState(case['disk_cachemodes'])
    cache_mode = libvirt_driver.LibvirtDriver.disk_cachemode.fget(state)
    info = image.libvirt_info(cache_mode, case['extra_specs'],
                              disk_unit=case['unit'])
    libvirt_driver.LibvirtDriver._set_cache_mode(state, info)
    element = etree.fromstring(info.to_xml())
    address = element.find('address')
    iotune = element.find('iotune')
    driver = dict(element.find('driver').attrib)
    driver.pop('type')
    return {'driver': driver,
            'iotune': {c.tag: c.text
                       for c in (iotune if iotune is not None else [])},
            'unit': address.get('unit') if address is not None else None}


def main():
    request = json.load(sys.stdin)
    CONF([], default_config_files=[])
    objects.register_all()
    CONF.set_override('instances_path', request['instances_path'])
    CONF.set_override('images_volume_group', 'vg', group='libvirt')
    instance = objects.Instance(uuid='5b0b2a38-08c2-4c2a-bd3c-1c1a3e3bbd0e',
                                ephemeral_key_uuid=None)
    json.dump([tune(case, instance) for case in request['cases']],
              sys.stdout)


if __name__ == '__main__':
    main()

"""One process of the record-once race (test_api_record_once.py).

Run as ``python -m tests.functional.db.record_once_worker SPEC`` where SPEC
is JSON::

    {"connection": URL, "instances_path": DIR, "go": FILE, "mode": MODE,
     "ids": [mapping id, ...], "uuids": [instance uuid, ...], "tag": TEXT}

It imports and configures everything, then waits for the file ``go`` to
appear (so that all processes start racing at once) and does one of:

* ``db``: ``block_device_mapping_record_first`` of ``ids``, each with a
  record of its own (``tag`` in it);
* ``lazy``: a first touch of every local disk of ``uuids``
  (``DiskManager.local_disks``);
* ``bulk``: ``nova-manage libvirt record_disks``'s loop over ``uuids``.

Prints one JSON object: {mapping id: [driver_info it ended with, true if
this process wrote it]} (for ``lazy`` and ``bulk``, "wrote" is not known
and is null; the log on stderr says what each process recorded).
"""

import json
import logging
import os
import sys
import time


def main(argv):
    spec = json.loads(argv[1])
    import nova.conf
    from nova import context as nova_context
    from nova.db import api as db
    from nova import objects

    conf = nova.conf.CONF
    conf([], project='nova', default_config_files=[],
         default_config_dirs=[])
    conf.set_override('connection', spec['connection'], group='database')
    conf.set_override('instances_path', spec['instances_path'])
    conf.set_override('images_type', 'flat', group='libvirt')
    conf.set_override('use_cow_images', False)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format='%(levelname)s %(name)s %(message)s')
    objects.register_all()
    ctx = nova_context.get_admin_context()
    from nova.cmd import manage_libvirt
    from nova.virt.libvirt.imagebackend import manager as disk_manager
    instances = [objects.Instance.get_by_uuid(ctx, uuid)
                 for uuid in spec.get('uuids', [])]

    while not os.path.exists(spec['go']):
        time.sleep(0.005)

    out = {}
    if spec['mode'] == 'db':
        records = {i: json.dumps({'tag': spec['tag'], 'id': i})
                   for i in spec['ids']}
        for bdm_id, (stored, wrote) in db.block_device_mapping_record_first(
                ctx, records).items():
            out[bdm_id] = [stored, wrote]
    elif spec['mode'] == 'lazy':
        manager = disk_manager.DiskManager()
        for instance in instances:
            bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
                ctx, instance.uuid)
            for disk in manager.local_disks(instance, bdms):
                out[disk.bdm.id] = [disk.bdm.driver_info, None]
    else:
        class Capturing(disk_manager.DiskManager):
            def record_legacy_disks(self, *args, **kwargs):
                results = super().record_legacy_disks(*args, **kwargs)
                for r in results:
                    out[r.bdm.id] = [r.bdm.driver_info, None]
                return results

        summary = manage_libvirt.run(ctx, instances, batch_instances=3,
                                     manager=Capturing())
        if summary.refused:
            raise SystemExit('refused: %r' % summary.refused)
    json.dump(out, sys.stdout)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))

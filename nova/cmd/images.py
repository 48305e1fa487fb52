"""nova-libvirt's image commands: image-import, image-list, image-delete,
image-cache-cleanup.

Only image-delete (which asks the disk records who uses an image) and
image-cache-cleanup (the cache module reads the records) load the objects
layer, when they run: it is a large part of a command's start-up (see
nova.cmd.listing).
"""

import os

from nova.cmd import output
from nova.cmd import progress as progress_mod
from nova import exception
from nova import image

IMAGES = output.RowView([
    ('id', 'ID'), ('name', 'Name'), ('disk_format', 'Disk format'),
    ('size', 'Size', lambda i: output.human(i['size'])),
    ('virtual_size', 'Virtual size',
     lambda i: output.human(i.get('virtual_size'))),
    ('status', 'Status')])


def cmd_image_import(cli):
    args = cli.args
    # An empty file is no disk of any format: refuse it here, by name,
    # rather than store an image no boot can use.
    if os.path.isfile(args.file) and os.path.getsize(args.file) == 0:
        raise exception.InvalidInput(
            reason='%s is empty: an image needs the bytes of a %s disk' % (
                args.file, args.disk_format))
    progress = progress_mod.Progress()
    try:
        meta = image.API().import_file(
            cli.context, args.file, args.disk_format, name=args.display_name,
            progress=progress.bytes_callback('importing %s' %
                                             output.escape(args.file)))
    finally:
        progress.done()
    cli.emit(meta, output.FieldView())


def cmd_image_list(cli):
    cli.emit(image.API().get_all(cli.context), IMAGES)


def _instances_using(context, image_id):
    """The uuids of live instances whose disks come from ``image_id``:
    by a disk record, or (a boot not yet recorded) by the instance."""
    from nova import objects
    objects.register_all()
    users = {bdm.instance_uuid for bdm in
             objects.BlockDeviceMappingList.get_all_with_driver_info(context)
             if bdm.get_disk_metadata().image_id == image_id}
    users.update(i.uuid for i in objects.InstanceList.get_all(context)
                 if i.image_ref == image_id)
    return sorted(users)


def cmd_image_delete(cli):
    context = cli.context
    image_id = cli.uuid(cli.args.image)
    api = image.API()
    api.get(context, image_id)  # ImageNotFound, before anything else
    users = _instances_using(context, image_id)
    if users:
        raise exception.ImageInUse(image_id=image_id,
                                   instances=', '.join(users))
    api.delete(context, image_id)
    cli.emit({'id': image_id, 'status': 'deleted'}, output.FieldView())


def cmd_image_cache_cleanup(cli):
    from nova import objects
    from nova.virt.libvirt.imagebackend import cache as image_cache
    objects.register_all()
    removed = image_cache.get_cache().cleanup(cli.context)
    cli.emit({'removed': removed, 'count': len(removed)},
             output.FieldView())

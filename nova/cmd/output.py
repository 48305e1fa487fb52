"""How nova-libvirt prints: human-readable tables or one JSON document."""

import os

from oslo_serialization import jsonutils
import prettytable


def human(n):
    if n is None:
        return '-'
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(n) < 1024 or unit == 'TiB':
            return ('%d %s' % (n, unit) if unit == 'B' or n == int(n)
                    else '%.1f %s' % (n, unit))
        n = n / 1024.0


def cell(value):
    if value is None:
        return '-'
    if isinstance(value, (dict, list)):
        return jsonutils.dumps(value, sort_keys=True)
    return str(value)


def field_table(data, skip=()):
    table = prettytable.PrettyTable(['Field', 'Value'])
    table.align = 'l'
    for key in sorted(data):
        if key not in skip:
            table.add_row([key, cell(data[key])])
    return table.get_string()


def row_table(columns, rows):
    table = prettytable.PrettyTable([title for title, _ in columns])
    table.align = 'l'
    for row in rows:
        table.add_row([cell(get(row)) for _, get in columns])
    return table.get_string()


DISK_COLUMNS = [
    ('Target', lambda d: d.get('target')),
    ('Disk', lambda d: d['disk_name']),
    ('Backend', lambda d: (d['record'] or {}).get('backend')),
    ('Format', lambda d: (d['record'] or {}).get('format')),
    ('Size', lambda d: human((d['record'] or {}).get('size'))),
    ('Backing format', lambda d: (d['record'] or {}).get('backing_format')),
    ('Source', lambda d: d.get('source')),
    ('On disk', lambda d: on_disk_summary(d.get('on_disk'))),
]


def on_disk_summary(info):
    if not info:
        return None
    if 'error' in info:
        return info['error']
    text = '%s, %s virtual, %s allocated' % (
        info.get('format'), human(info.get('virtual_size')),
        human(info.get('allocated')))
    if info.get('backing_file'):
        # The whole path is in --format json; the cache entry's name says
        # which base it is.
        text += ', over %s (%s)' % (os.path.basename(info['backing_file']),
                                    info.get('backing_format'))
    return text


def print_instance(data):
    print(field_table(data, skip=('disks',)))
    if data.get('disks'):
        print(row_table(DISK_COLUMNS, data['disks']))


def print_rows(columns, rows):
    print(row_table(columns, rows))


def emit(data, table_printer, fmt):
    """Print ``data`` as JSON (``fmt`` json) or with ``table_printer``."""
    if fmt == 'json':
        print(jsonutils.dumps(data, indent=2, sort_keys=True))
    else:
        table_printer(data)

"""How nova-libvirt prints: human-readable tables or one JSON document.

A command hands ``emit`` its data (a dict, or a list of dicts) and a view
that says how a table shows it. ``-c NAME`` picks what is printed (a field
or a column, by its JSON key or its table title, in any case), as cliff
does; in JSON it picks keys. Tables escape control characters, so a name
with an escape sequence or a newline cannot redraw the terminal or forge
rows.
"""

import os

from oslo_serialization import jsonutils
import prettytable

from nova.cmd import errors

FORMATS = ('table', 'json')


def human(n):
    if n is None:
        return '-'
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(n) < 1024 or unit == 'TiB':
            return ('%d %s' % (n, unit) if unit == 'B' or n == int(n)
                    else '%.1f %s' % (n, unit))
        n = n / 1024.0


def escape(text):
    """``text`` with every non-printable character as a Python escape
    (``\\x1b``, ``\\n``, ``\\u202e``); printable text, including non-ASCII
    letters, is kept as it is."""
    return ''.join(c if c.isprintable() else
                   c.encode('unicode_escape').decode('ascii') for c in text)


def cell(value):
    if value is None:
        return '-'
    if isinstance(value, (dict, list)):
        value = jsonutils.dumps(value, sort_keys=True)
    return escape(str(value))


def _picked(names, wanted):
    """The members of ``names`` (pairs of key and title) that ``wanted``
    (names given to -c) selects; all of them when nothing is wanted."""
    if not wanted:
        return list(names)
    wanted = {w.lower() for w in wanted}
    return [(key, title) for key, title in names
            if key.lower() in wanted or title.lower() in wanted]


class FieldView:
    """One object as a two-column table of its fields."""

    def __init__(self, skip=()):
        self.skip = skip

    def columns(self, data):
        return [(k, k) for k in sorted(data) if k not in self.skip]

    def select(self, data, wanted):
        if not wanted:
            return data
        keys = {k for k, _ in _picked(self.columns(data), wanted)}
        keys.update(k for k in self.skip if k in {w.lower() for w in wanted})
        return {k: v for k, v in data.items() if k in keys}

    def table(self, data, wanted=None):
        table = prettytable.PrettyTable(['Field', 'Value'])
        table.align = 'l'
        for key, _title in _picked(self.columns(data), wanted):
            table.add_row([escape(key), cell(data[key])])
        return table.get_string()


class RowView:
    """A list of objects as a table: ``columns`` are (key, title, text)
    with ``text(row)`` the cell's value (default: ``row[key]``)."""

    def __init__(self, columns):
        self._columns = [(c + (None,))[:3] for c in columns]

    def columns(self, rows):
        return [(key, title) for key, title, _ in self._columns]

    def select(self, rows, wanted):
        if not wanted:
            return rows
        keys = {k for k, _ in _picked(self.columns(rows), wanted)}
        return [{k: v for k, v in row.items() if k in keys} for row in rows]

    def table(self, rows, wanted=None):
        picked = {k for k, _ in _picked(self.columns(rows), wanted)}
        columns = [c for c in self._columns if c[0] in picked]
        table = prettytable.PrettyTable([title for _, title, _ in columns])
        table.align = 'l'
        for row in rows:
            table.add_row([cell(text(row) if text else row.get(key))
                           for key, _, text in columns])
        return table.get_string()


def on_disk_summary(info):
    if not info:
        return None
    if 'error' in info:
        return info['error']
    if 'format' not in info:
        # From stat alone (boot): what the host holds, not what is in it.
        return '%s allocated' % human(info.get('allocated'))
    text = '%s, %s virtual, %s allocated' % (
        info.get('format'), human(info.get('virtual_size')),
        human(info.get('allocated')))
    if info.get('backing_file'):
        # The whole path is in --format json; the cache entry's name says
        # which base it is.
        text += ', over %s (%s)' % (os.path.basename(info['backing_file']),
                                    info.get('backing_format'))
    return text


def _record(disk, name):
    return (disk['record'] or {}).get(name)


DISKS = RowView([
    ('target', 'Target'),
    ('disk_name', 'Disk'),
    ('backend', 'Backend', lambda d: _record(d, 'backend')),
    ('format', 'Format', lambda d: _record(d, 'format')),
    ('size', 'Size', lambda d: human(_record(d, 'size'))),
    ('backing_format', 'Backing format',
     lambda d: _record(d, 'backing_format')),
    ('source', 'Source'),
    ('on_disk', 'On disk', lambda d: on_disk_summary(d.get('on_disk'))),
])


class InstanceView(FieldView):
    """An instance's fields, then a table of its disks."""

    def __init__(self):
        super().__init__(skip=('disks',))

    def table(self, data, wanted=None):
        text = super().table(data, wanted)
        shown = not wanted or 'disks' in {w.lower() for w in wanted}
        if shown and data.get('disks'):
            text += '\n' + DISKS.table(data['disks'])
        return text


def emit(data, view, fmt='table', wanted=None):
    """Print ``data`` as JSON (``fmt`` json) or as ``view``'s table,
    keeping only what ``wanted`` (the -c names) selects.

    :raises: errors.UsageError naming a -c name that is no field or
        column of ``view`` (nothing printed).
    """
    _check_wanted(data, view, wanted)
    if fmt == 'json':
        print(jsonutils.dumps(view.select(data, wanted), indent=2,
                              sort_keys=True))
    else:
        print(view.table(data, wanted))


def _check_wanted(data, view, wanted):
    known = {name.lower() for pair in view.columns(data) for name in pair}
    known.update(k.lower() for k in getattr(view, 'skip', ()))
    unknown = [w for w in wanted or () if w.lower() not in known]
    if unknown:
        raise errors.UsageError(
            'no field or column named %s (there are: %s)' % (
                ', '.join(repr(w) for w in unknown),
                ', '.join(sorted(known))))

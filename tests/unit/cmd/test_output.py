"""nova.cmd.output: tables escape control characters; -c picks fields."""

from nova.cmd import output


def test_escape_keeps_printable_text_and_escapes_the_rest():
    assert output.escape('caf\u00e9 web-1') == 'caf\u00e9 web-1'
    assert output.escape('a\x1b[2Jb\nc\td') == 'a\\x1b[2Jb\\nc\\td'
    assert output.escape('\u202etxt') == '\\u202etxt'


def test_tables_escape_every_cell():
    view = output.RowView([('name', 'Name')])
    table = view.table([{'name': 'x\x1b]0;owned\x07'}])
    assert '\x1b' not in table and '\x07' not in table
    assert 'x\\x1b]0;owned\\x07' in table


def test_columns_by_key_or_title_in_any_case():
    view = output.RowView([('uuid', 'UUID'), ('vm_state', 'VM state')])
    rows = [{'uuid': 'u', 'vm_state': 'active'}]
    assert view.select(rows, ['vm state']) == [{'vm_state': 'active'}]
    assert 'UUID' not in view.table(rows, ['VM_STATE'])
    fields = output.FieldView(skip=('disks',))
    data = {'uuid': 'u', 'name': 'n', 'disks': []}
    assert fields.select(data, ['NAME']) == {'name': 'n'}
    assert fields.select(data, []) == data

"""The request context: who is asking, passed to every layer."""

from oslo_context import context as oslo_context


class RequestContext(oslo_context.RequestContext):
    """Security context and request information.

    Carries the user and project on whose behalf a call is made, and whether
    deleted rows are visible (``read_deleted``: ``no``, ``yes`` or ``only``).
    """

    def __init__(self, read_deleted='no', **kwargs):
        super().__init__(**kwargs)
        self.read_deleted = read_deleted

    def to_dict(self):
        values = super().to_dict()
        values['read_deleted'] = self.read_deleted
        return values

    @classmethod
    def from_dict(cls, values):
        return super().from_dict(values,
                                 read_deleted=values.get('read_deleted', 'no'))


def get_admin_context(read_deleted='no'):
    """Return a context with admin rights, for services and tools."""
    return RequestContext(is_admin=True, read_deleted=read_deleted,
                          overwrite=False)

"""Small helpers shared by every layer: names, paths and safe files."""

import os
import uuid

from nova import exception
from nova.virt import staging


def validate_uuid(value, kind='instance'):
    """Return ``value`` if it is a canonical UUID string.

    Canonical is exactly what ``str(uuid.UUID(value))`` writes: 36
    characters, lower-case hex in 8-4-4-4-12 groups. uuid.UUID() alone
    accepts much more (braces, ``urn:uuid:``, upper case, dashes anywhere
    or none), and two spellings of one UUID must never name two paths.

    :raises: InvalidUUID for anything else (``../``, NUL, paths, junk).
    """
    if isinstance(value, str):
        try:
            if value == str(uuid.UUID(value)):
                return value
        except ValueError:
            pass
    raise exception.InvalidUUID(uuid=value)


def safe_join(root, *parts):
    """Join ``parts`` under ``root`` and prove the result stays under it.

    Each part must be one plain path component: no separator, no NUL, not
    ``.`` or ``..``. Symlinks in the *directories* are resolved before the
    containment check, so a link planted inside ``root`` cannot lead out of
    it. The last component is deliberately not resolved: a link planted
    there stays a link, which an ``O_NOFOLLOW`` open or ``lexists`` then
    sees, instead of silently naming the link's target.

    :returns: the absolute, normalised path.
    :raises: InvalidName for a bad component, PathOutsideRoot otherwise.
    """
    for part in parts:
        if (not isinstance(part, str) or not part or part in ('.', '..')
                or os.sep in part or '\0' in part):
            raise exception.InvalidName(kind='path component', name=part,
                                        reason='must be one plain name')
    real_root = os.path.realpath(root)
    if not parts:
        return real_root
    parent = os.path.realpath(os.path.join(real_root, *parts[:-1]))
    path = os.path.join(parent, parts[-1])
    if os.path.commonpath([real_root, parent]) != real_root:
        raise exception.PathOutsideRoot(path=path, root=real_root)
    return path


def ensure_tree(path, mode=0o755):
    """Create ``path`` and its parents if missing; return it.

    The service's directories (``state_path``, ``instances_path`` and those
    under them) must be its own, like sshd's StrictModes: a directory
    that someone else owns or can write is refused.

    :raises: UnsafeDirectory naming ``path`` and the fix.
    """
    os.makedirs(path, mode=mode, exist_ok=True)
    staging.open_root(path).close()
    return path

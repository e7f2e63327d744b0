"""What a delete of the platform never goes through: a folder inside the tree being deleted that carries its own
ownership marker (another job's output nested in it), and a mount point (a bind mount, a mounted disk) inside
it. :mod:`ser_models.ownership.claims` asks :func:`kept_inside` before it deletes a tree; symbolic links are
never followed anyway (they are removed as links).
"""

from __future__ import annotations

import os

from ser_models import io


def kept_inside(target: str, marker: str, *, markers: bool = True) -> str | None:
    """Why the tree at ``target`` must not be deleted, or None when it may.

    Args:
        target: the folder about to be deleted (local path or URI; a folder, or a link to one).
        marker: the ownership marker's file name (``.ser-output.json``).
        markers: also refuse a folder of the tree (``target`` itself included) that carries ``marker``: another
            output of this platform, which its own owner deletes. False: only mount points count (a child the
            folder's own marker records as made for it, which its job then claimed, is the folder owner's).

    Returns:
        ``"<path> is a mount point"`` or ``"<path> is another output (it carries <marker>)"``.
    """
    if not io.is_local(target):
        if not markers:
            return None  # object stores have no mount points
        for rel in io.list_files(target):
            if rel == marker or rel.endswith("/" + marker):
                folder = io.join(target, rel[:-len(marker)]).rstrip("/")
                return f"{folder} is another output (it carries {marker})"
        return None
    top = str(io.local_path(target))
    if os.path.islink(top):
        return None  # a link is removed as a link: nothing is deleted through it
    for folder, _, files in os.walk(top, followlinks=False):
        if os.path.ismount(folder):
            return f"{folder} is a mount point"
        if markers and marker in files:
            return f"{folder} is another output (it carries {marker})"
    return None


__all__ = ["kept_inside"]

"""The fence every commit and every delete runs inside: which of this process's locks cover a path, however the
path is spelled, and the refusal of a write under a locked folder none of them matches.

A path is matched to the locks above it by where it is, not by how it is spelled: a local path is resolved
(``realpath``: links followed) and its folders are compared with each held lock's folder by device and inode, so
a path through a symbolic link or a bind mount finds the lock of the folder it really lies in; a URI is compared
by scheme and normalised key (``s3://b//pool/./x`` is ``s3://b/pool/x``). A path under a folder whose lock file
names one of this process's locks that it still cannot match (the folder was moved while held), or whose lock
file cannot be read while this process holds a lock, is refused by :func:`fenced_for` instead of let through
unfenced.
"""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager

from ser_models import io
from ser_models.exceptions import LockLostError
from ser_models.locks.folder_lock import _HELD, _HELD_GUARD, _OURS, LOCK_NAME, FolderLock
from ser_models.locks.lock_file import read_lock_file


def location(path: str | os.PathLike) -> tuple[str, str]:
    """``(store, path)`` of where ``path`` lies: ``("", realpath)`` for a local path (links followed, absolute),
    ``(scheme, bucket/key)`` for a URI with empty and ``.`` components dropped and the scheme lower-cased."""
    text = str(path)
    if io.is_local(text):
        return "", os.path.realpath(os.path.expanduser(str(io.local_path(text))))
    scheme, rest = text.split("://", 1)
    parts = [p for p in rest.split("?", 1)[0].split("/") if p not in ("", ".")]
    return scheme.lower(), "/".join(parts)


def _ancestors(where: tuple[str, str]) -> list[str]:
    """``where``'s path and every folder above it, nearest first (local: up to ``/``; a URI: up to its bucket)."""
    store, p = where
    out = [p]
    while True:
        up = os.path.dirname(p) if not store else (p.rsplit("/", 1)[0] if "/" in p else "")
        if not up or up == p:
            return out
        out.append(up)
        p = up


def _identity(folder: str) -> tuple[int, int] | None:
    """A local folder's ``(device, inode)`` (links followed); None when it does not exist."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _matches(lock: FolderLock, where: tuple[str, str], ids: set[tuple[int, int]]) -> bool:
    """Whether ``lock``'s folder is one of the folders ``where`` lies in (``ids``: their identities, local)."""
    store, folder = location(lock.folder)
    if store != where[0]:
        return False
    if folder == where[1] or where[1].startswith(folder.rstrip("/") + "/"):
        return True
    return not store and _identity(folder) in ids  # another spelling of the same folder (a bind mount)


def _covering(path: str | os.PathLike) -> list[FolderLock]:
    """This process's locks on ``path``'s folder or any folder above it, outermost first."""
    where = location(path)
    ids = set() if where[0] else {i for i in map(_identity, _ancestors(where)) if i is not None}
    with _HELD_GUARD:
        held = list(_HELD.values())
    found = [lk for lk in held if _matches(lk, where, ids)]
    return sorted(found, key=lambda lk: (len(location(lk.folder)[1]), lk.path))


def _same_folder(lock: FolderLock, store: str, folder: str) -> bool:
    """Whether ``lock`` is the folder lock of ``folder`` (on ``store``), however either is spelled."""
    if not lock.path.endswith("/" + LOCK_NAME):
        return False
    if location(lock.folder) == (store, folder):
        return True
    return not store and _identity(folder) is not None and _identity(folder) == _identity(lock.folder)


def _unmatched_lock(path: str | os.PathLike, covering: list[FolderLock]) -> tuple[str, OSError | None] | None:
    """``(lock file, error)`` of a folder above ``path`` whose lock may be one of this process's locks that none of
    ``covering`` is (this process locked that folder, and the path cannot be matched to the lock: the folder was
    moved while held, say): its lock file names one of them (``error`` None), or cannot be read, so whether it
    does cannot be told (a folder in its place, a lease the store will not return: ``error`` says why); None:
    none. A lock of another process above ``path`` is not this fence's business (a sweep's trial writes inside
    its driver's locked folder)."""
    with _HELD_GUARD:
        tokens = set(_OURS)
    if not tokens:
        return None
    text = str(path)
    store, _ = where = location(text)
    query = "?" + text.split("?", 1)[1] if store and "?" in text else ""
    for folder in _ancestors(where):
        if any(_same_folder(lk, store, folder) for lk in covering):
            continue
        lock_path = f"{store}://{folder}/{LOCK_NAME}{query}" if store else os.path.join(folder, LOCK_NAME)
        try:
            rec, _ = read_lock_file(lock_path, not store)
        except (FileNotFoundError, NotADirectoryError):  # no such folder (the path itself is a file): no lock
            continue
        except OSError as exc:  # a folder in its place, a lease the store will not return: it may be ours
            return lock_path, exc
        if rec and rec.get("token") in tokens:
            return lock_path, None
    return None


def held_lock_for(path: str | os.PathLike) -> FolderLock | None:
    """The lock this process holds on ``path``'s folder or the nearest folder above it (None: none)."""
    found = _covering(path)
    return found[-1] if found else None


def assert_held_for(path: str | os.PathLike) -> None:
    """Check that every lock this process holds on a folder above ``path`` is still ours. A commit uses
    :func:`fenced_for` instead, which also keeps a take-over from coming between the check and the commit.

    Raises:
        LockLostError: it was taken over.
    """
    for lock in _covering(path):  # every one: a ledger's own append lock sits inside the run folder's
        lock.assert_held()


@contextmanager
def fenced_for(path: str | os.PathLike):
    """``with fenced_for(path): <commit or delete of path>``: run the block only while every lock this process
    holds on a folder above ``path`` still names this writer, with no take-over in between.

    Locally the guards of those locks' folders (the ``flock`` that take-overs, releases and heartbeats take) are
    held, outermost folder first, while the locks are checked and while the block runs, so a take-over waits
    until the commit or delete is done and a writer whose lock was taken over before it commits and deletes
    nothing. On object stores each lease is read back right before the block (no guard exists there: a writer
    paused between that read and its write may still write once after a take-over). The locks are found by
    where ``path`` lies, however it is spelled (:func:`location`). Without a covering lock this is a no-op,
    unless a folder above ``path`` carries a lock of this process that cannot be matched, or (while this process
    holds any lock) a lock file that cannot be read: refused.
    Re-entrant: code already inside the guard of a folder may call it again.

    Raises:
        LockLostError: a covering lock was taken over, or ``path`` lies under a folder locked by this process
            that it cannot match, or under a lock file that cannot be read (the block did not run: nothing was
            committed or deleted).
    """
    covering = _covering(path)
    unmatched = _unmatched_lock(path, covering)
    if unmatched is not None and unmatched[1] is None:
        raise LockLostError(f"refusing to write or delete {path}: it lies under {unmatched[0].rsplit('/', 1)[0]}, "
                            f"whose lock {unmatched[0]} this process took, but the path cannot be matched to that lock "
                            "(was the folder moved or renamed while the job ran?); nothing was committed or deleted. "
                            "Rerun the job on the folder where it now is")
    if unmatched is not None:
        raise LockLostError(f"refusing to write or delete {path}: the lock file {unmatched[0]} of a folder above it "
                            f"cannot be read ({type(unmatched[1]).__name__}: {unmatched[1]}), so whether it is a lock "
                            "this process holds cannot be told; nothing was committed or deleted. "
                            f"Remove what is at {unmatched[0]} if no job is writing there (a "
                            "folder or an unreadable file in a lock file's place), then rerun")
    locks = [lk._root() for lk in covering]
    with ExitStack() as stack:
        for lock in locks:
            stack.enter_context(lock._folder_guard(mutate=False))
        for lock in locks:
            lock.assert_held()
        yield


__all__ = ["assert_held_for", "fenced_for", "held_lock_for", "location"]

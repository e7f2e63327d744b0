"""Delete only what we made: every output folder the platform cleans or replaces things in carries a marker.

A job that writes into an output folder (a pool, a segment output, an active-learning run folder, an
evidence folder, a sweep trial's folder, a feature cache) first *claims* it (:func:`open_output`):

* a missing or empty folder gets the marker ``<folder>/.ser-output.json`` (``kind``, ``created_at``,
  ``platform_version`` and ``children``: the sub-folders this platform recorded as its own before creating
  them, e.g. a pool's ``build-*`` folders);
* a folder whose marker names the same kind is ours;
* a folder made by an earlier version (no marker) is *adopted* (the marker is written and a line logged)
  only when it holds exactly that kind's layout, as recognised by the job's ``recognise`` function (a pool:
  ``summary.json`` and the build folders it names; a run folder: a ``run.json`` of the same job and the run
  layout's names). A folder with any entry the layout does not name is never adopted;
* anything else, a non-empty folder without the marker or with another kind's, is refused with
  :class:`~ser_models.exceptions.ForeignFolderError` naming the folder, its kind (if any) and a few entries.
  Nothing is written into a refused folder.

Deletion goes through :func:`remove` and :func:`clear`, which refuse a folder not marked with the caller's
kind, a path that leaves the folder, and the marker and lock themselves; :func:`remove` with
``recorded=True`` deletes only a child the marker records (a pool build, a feature-cache shard folder being
written). Recording a child happens under the folder's lock (:mod:`ser_models.locks`), before the child is
created, so a crash never leaves an unrecorded folder of ours that a later run could not clean.

If a folder really is yours and the layout check refuses it (a file you added to a run folder, say), move
the extra entries out, or write the marker yourself: ``{"kind": "<kind>"}`` in ``<folder>/.ser-output.json``.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterable

import pyarrow.fs as pafs

from ser_models import io
from ser_models.exceptions import ForeignFolderError
from ser_models.locks import LOCK_NAME, FolderLock, assert_held_for

MARKER_NAME = ".ser-output.json"
#: What each kind of output folder is (for messages).
KINDS = {
    "pool": "a prepared pool (jobs.prepare_pool)",
    "segments": "a segmentation output (jobs.segment)",
    "run": "a run folder (jobs.after, a sweep trial)",
    "evidence": "an evidence folder (jobs.evidence)",
    "feature_cache": "a feature cache folder",
    "export": "an exported dataset folder (jobs.convert to=lhotse / to=hf)",
}
#: ``recognise(folder, entries) -> children to record, or None``: is an unmarked folder this kind's layout?
Recognise = Callable[[str, list[str]], "list[str] | None"]
_SHOWN = 8


def _ours(name: str) -> bool:
    """The marker, the lock and a lock being taken over: never a reason to refuse, never deleted by jobs."""
    return name == MARKER_NAME or name.startswith(LOCK_NAME)


def entries(folder: str | os.PathLike) -> list[str]:
    """The folder's direct children, without the marker and lock files (empty when it does not exist)."""
    return [n for n in io.list_dir(folder) if not _ours(n)]


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The folder's marker (None: none, or unreadable)."""
    path = io.join(folder, MARKER_NAME)
    if not io.exists(path):
        return None
    try:
        marker = io.read_json(path)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _show(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f", ... ({len(names)} entries)" if len(names) > _SHOWN else "")


def _refuse(folder: str, kind: str, marker: dict | None, names: list[str], why: str = "") -> ForeignFolderError:
    what = KINDS.get(kind, kind)
    has = f"it is marked as kind {marker.get('kind')!r}" if marker else f"it has no {MARKER_NAME} marker"
    return ForeignFolderError(
        f"refusing to write or delete in {folder}: it is not empty and not {what} made by this platform ({has}"
        f"{'; ' + why if why else ''}). It holds: {_show(names)}. Point the job's output at a new or empty folder. "
        f"If this folder is really {what} from this platform, move the entries it does not make elsewhere, or "
        f"write {{\"kind\": \"{kind}\"}} to {io.join(folder, MARKER_NAME)}")


def check_claim(folder: str | os.PathLike, kind: str, recognise: Recognise | None = None) -> tuple[str, list[str]]:
    """Whether ``folder`` may be claimed as ``kind``, without writing anything.

    Returns:
        ``("ours", [])`` (marked ``kind``), ``("new", [])`` (missing or empty) or ``("legacy", children)``
        (an earlier version's layout, recognised; ``children``: what the marker will record).

    Raises:
        ForeignFolderError: a non-empty folder without the marker (and not recognised) or with another kind's.
    """
    folder = io.storage_path(folder)
    marker = read_marker(folder)
    names = entries(folder)
    if marker is not None:
        if marker.get("kind") == kind:
            return "ours", []
        raise _refuse(folder, kind, marker, names)
    if not names:
        return "new", []
    children = recognise(str(folder), names) if recognise is not None else None
    if children is None:
        raise _refuse(folder, kind, None, names)
    return "legacy", list(children)


def _write_marker(folder: str, marker: dict) -> None:
    io.write_json_atomic(io.join(folder, MARKER_NAME), marker)


def claim(folder: str | os.PathLike, kind: str, recognise: Recognise | None = None, log=print) -> dict:
    """Claim ``folder`` as ``kind`` (see :func:`check_claim`): write the marker of a new or adopted folder.

    Returns:
        The folder's marker.
    """
    # The package is imported whenever this module is (a submodule): read its version without importing it
    # here, which the layering test would count as a circle through ``ser_models/__init__``.
    version = getattr(sys.modules.get("ser_models"), "__version__", "unknown")
    folder = io.storage_path(folder)
    state, children = check_claim(folder, kind, recognise)
    if state == "ours":
        return read_marker(folder) or {}
    marker = {"kind": kind, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "platform_version": version,
              "children": sorted(set(children)), "adopted": state == "legacy"}
    _write_marker(folder, marker)
    if state == "legacy":
        log(f"{folder}: adopted as {KINDS.get(kind, kind)} written by an earlier version (its layout is exactly "
            f"ours; marker {MARKER_NAME} written" + (f", recorded {_show(sorted(children))}" if children else "")
            + ")")
    return marker


def open_output(folder: str | os.PathLike, kind: str, *, what: str | None = None, recognise: Recognise | None = None,
                log=print, **lock_kwargs) -> FolderLock:
    """Refuse a foreign ``folder`` (writing nothing), lock it, then claim it: the job's first call on its output.

    Args:
        folder: the output folder (local path or URI).
        kind: one of :data:`KINDS`.
        what: the folder in words, for lock messages (default: the kind).
        recognise: the kind's legacy-layout check (see :func:`check_claim`).
        lock_kwargs: passed to :class:`~ser_models.locks.FolderLock`.

    Returns:
        The held lock (a context manager: ``with open_output(...):``).

    Raises:
        ForeignFolderError: the folder is not ours.
        LockHeldError: another process writes it.
    """
    check_claim(folder, kind, recognise)
    lock = FolderLock(folder, what or kind.replace("_", " "), log=log, **lock_kwargs).acquire()
    try:
        claim(folder, kind, recognise, log=log)  # again under the lock: the folder may have changed meanwhile
    except BaseException:
        lock.release()
        raise
    return lock


def _marked(folder: str, kind: str) -> dict:
    marker = read_marker(folder)
    if marker is None or marker.get("kind") != kind:
        raise _refuse(folder, kind, marker, entries(folder), "nothing deleted")
    return marker


def recorded(folder: str | os.PathLike, kind: str) -> set[str]:
    """The children the marker of ``folder`` (kind ``kind``) records as ours."""
    return set(_marked(str(io.storage_path(folder)), kind).get("children") or [])


def record(folder: str | os.PathLike, kind: str, names: Iterable[str], *, add: bool = True) -> None:
    """Record ``names`` as children of ours (``add=False``: forget them), under the folder's lock."""
    folder = str(io.storage_path(folder))
    assert_held_for(io.join(folder, MARKER_NAME))
    marker = _marked(folder, kind)
    names = {_child(folder, n) for n in names}
    children = set(marker.get("children") or [])
    new = children | names if add else children - names
    if new != children:
        _write_marker(folder, {**marker, "children": sorted(new)})


def _child(folder: str, rel: str) -> str:
    """The first component of the relative path ``rel``, checked to stay inside ``folder``."""
    rel = str(rel)
    parts = rel.split("/")
    if not rel or rel.startswith("/") or "://" in rel or any(p in ("", ".", "..") for p in parts) or "\x00" in rel:
        raise ForeignFolderError(f"refusing to delete {rel!r} under {folder}: not a plain path inside the folder")
    if _ours(parts[0]):
        raise ForeignFolderError(f"refusing to delete {rel!r} under {folder}: the folder's marker and lock stay")
    return parts[0]


def remove(folder: str | os.PathLike, kind: str, rel: str, *, recorded_only: bool) -> bool:
    """Delete ``folder/rel`` (a file or a folder tree), only inside a folder marked ``kind``.

    Args:
        folder: the marked output folder.
        kind: its kind.
        rel: a relative path inside it (``build-x``, ``build-x/data/split=_quarantine``, ``cv_choices``).
        recorded_only: True: ``rel``'s first component must be a child the marker records (else nothing is
            deleted and ``ForeignFolderError`` is raised); False: a name of the kind's own fixed layout.

    Returns:
        Whether something was deleted (False: it did not exist).

    Raises:
        ForeignFolderError: the folder is not marked ``kind``, ``rel`` leaves it or names the marker or lock,
            or (``recorded_only``) its first component is not recorded.
    """
    folder = str(io.storage_path(folder))
    marker = _marked(folder, kind)
    first = _child(folder, rel)
    if recorded_only and first not in set(marker.get("children") or []):
        raise ForeignFolderError(f"refusing to delete {io.join(folder, rel)}: {first!r} is not recorded as made by "
                                 f"this platform in {io.join(folder, MARKER_NAME)}")
    target = io.join(folder, rel)
    fs, p = io.filesystem(target)
    kind_of = fs.get_file_info(p).type
    if kind_of == pafs.FileType.NotFound:
        return False
    if kind_of == pafs.FileType.Directory:
        io.delete_dir(target)
    else:
        io.fs_delete(target)
    return True


def clear(folder: str | os.PathLike, kind: str) -> list[str]:
    """Delete everything in a folder marked ``kind`` but its marker and lock (a trial folder taking another
    trial's state); returns the names deleted.

    Raises:
        ForeignFolderError: the folder is not marked ``kind``.
    """
    folder = str(io.storage_path(folder))
    _marked(folder, kind)
    names = entries(folder)
    for name in names:
        remove(folder, kind, name, recorded_only=False)
    return names


def recognise_run(job: str | tuple[str, ...], layout: Iterable[str]) -> Recognise:
    """A run folder of an earlier version: a ``run.json`` recording ``job`` (or one of several), and only names
    of ``layout``."""
    allowed = {"run.json", "config.yaml", *layout}
    jobs = (job,) if isinstance(job, str) else tuple(job)

    def recognise(folder: str, names: list[str]) -> list[str] | None:
        if all(n.endswith((".yaml", ".yml")) for n in names):
            return []  # only config files (the job's own, kept beside its run): a new run; they stay unrecorded
        if "run.json" not in names or not set(names) <= allowed:
            return None
        try:
            return [] if io.read_json(io.join(folder, "run.json")).get("job") in jobs else None
        except (OSError, ValueError, AttributeError):
            return None

    return recognise


def recognise_names(required: Iterable[str], allowed: Iterable[str] = (), patterns: Iterable[str] = ()) -> Recognise:
    """A layout of fixed names: every name in ``required`` present, every entry in ``required``, ``allowed``
    or matching one of the regular expressions ``patterns``."""
    required, allowed = set(required), set(required) | set(allowed)
    regexes = [re.compile(p) for p in patterns]

    def recognise(folder: str, names: list[str]) -> list[str] | None:
        if not required <= set(names):
            return None
        if all(n in allowed or any(r.fullmatch(n) for r in regexes) for n in names):
            return []
        return None

    return recognise


__all__ = ["KINDS", "MARKER_NAME", "check_claim", "claim", "clear", "entries", "open_output", "read_marker",
           "recognise_names", "recognise_run", "record", "recorded", "remove"]

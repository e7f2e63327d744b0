"""Delete only what we made, and write only where we may: the one path by which every writer claims its output.

Every job (and every benchmark with a work folder) claims its output before its first byte with
:func:`claim_output` (a folder; :func:`check_output` makes the same refusals without writing, for jobs that
check their inputs first) or :func:`claim_file` (one file written atomically):

* an output that is one of the job's inputs, lies inside one, or contains one is refused with
  :class:`~ser_models.exceptions.OutputOverlapError` (:func:`check_apart`; links resolved first);
* a missing or empty folder gets the marker ``<folder>/.ser-output.json`` (``kind``, ``created_at``,
  ``platform_version``, ``children``: the sub-folders this platform recorded as its own before creating them,
  e.g. a pool's ``build-*`` folders; ``job`` for a run folder; ``files`` for an export);
* a folder whose marker names the same kind (and job) is ours;
* a folder made by an earlier version (no marker) is *adopted* (the marker is written and a line logged) only
  when its files read back as that kind's, as the kind's ``recognise`` function checks (a pool: a
  ``summary.json`` whose build folders exist; a run folder: a ``run.json`` recording that job); names alone
  never suffice;
* anything else is refused with :class:`~ser_models.exceptions.ForeignFolderError` naming the folder, its
  kind (if any) and a few entries. Nothing is written into a refused folder. The temporary files that killed
  atomic writes leave never make a folder foreign; the next owner removes them. They are told by their name's
  prefix, which only the platform writes (``.ser-tmp-``, :data:`ser_models.io.TEMP_PREFIX`): a person's hidden
  file (``.report.draft_v2.tmp``) makes a folder non-empty and is never deleted.

Every delete of the platform goes through this module (a test finds any other call site): :func:`remove` and
:func:`clear` refuse a folder not marked with the caller's kind, a path that leaves the folder, and the marker
and lock themselves; :func:`remove` with ``recorded_only=True`` deletes only a child the marker records;
:func:`replace_files` deletes only the files an earlier export recorded; :func:`remove_if` deletes one file only
when its content is what the platform writes there; :func:`discard_staging` only a staging folder made by
:func:`make_staging`. Links are removed as links, never followed; a tree is never deleted through a mount point
inside it, nor through a folder that carries its own marker (another output) unless the folder's marker records
it as made for it (:func:`clear` keeps such a folder and says so; :func:`remove` refuses). Deletes and marker
writes are fenced (:func:`ser_models.locks.fenced_for`): a writer whose lock was taken over deletes and records
nothing.

If a folder really is yours and the layout check refuses it (a file you added to a run folder, say), move
the extra entries out, or write the marker yourself: ``{"kind": "<kind>"}`` in ``<folder>/.ser-output.json``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack, contextmanager

import pyarrow.fs as pafs

from ser_models import io
from ser_models.exceptions import ForeignFolderError
from ser_models.locks import LOCK_NAME, FolderLock, assert_held_for, fenced_for, held_lock_for
from ser_models.ownership.nested import kept_inside
from ser_models.ownership.overlap import check_apart

MARKER_NAME = ".ser-output.json"
#: What each kind of output folder is (for messages).
KINDS = {
    "pool": "a prepared pool (jobs.prepare_pool)",
    "segments": "a segmentation output (jobs.segment)",
    "run": "a run folder (jobs.after, a sweep trial)",
    "evidence": "an evidence folder (jobs.evidence)",
    "feature_cache": "a feature cache folder",
    "export": "an exported dataset folder (jobs.convert to=lhotse / to=hf)",
    "audio": "a folder of imported audio files named by their content (jobs.convert audio_dir)",
    "encoder": "an imported encoder folder (jobs.import_encoder)",
    "corpus": "a generated demo corpus (jobs.make_demo_pool, jobs.make_demo_archive)",
    "bench": "a benchmark's work folder (python -m bench.<name> --workdir)",
}
#: ``recognise(folder, entries) -> children to record, or None (or the reason, for the refusal to name)``: is
#: an unmarked folder this kind's layout?
Recognise = Callable[[str, list[str]], "list[str] | str | None"]
_SHOWN = 8


def _ours(name: str) -> bool:
    """The marker, the lock and a lock being taken over: never a reason to refuse, never deleted by jobs."""
    return name == MARKER_NAME or name.startswith(LOCK_NAME)


def _litter(name: str) -> bool:
    """A temporary file of an atomic write that a kill left behind: never a reason to refuse a folder (a job
    killed while writing its first marker must not block the folder for good); the next owner removes it
    (:func:`claim`). Only names with the platform's own prefix (:data:`ser_models.io.TEMP_PREFIX`) count, never
    a shape a person's file can have: ``.report.draft_v2.tmp`` is theirs."""
    return name.startswith(io.TEMP_PREFIX)


def entries(folder: str | os.PathLike) -> list[str]:
    """The folder's direct children, without the marker and lock files and the temporary files of interrupted
    atomic writes (empty when it does not exist)."""
    return [n for n in io.list_dir(folder) if not _ours(n) and not _litter(n)]


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


def check_claim(folder: str | os.PathLike, kind: str, recognise: Recognise | None = None, *,
                job: str | None = None) -> tuple[str, list[str]]:
    """Whether ``folder`` may be claimed as ``kind``, without writing anything.

    Returns:
        ``("ours", [])`` (marked ``kind``), ``("new", [])`` (missing or empty) or ``("legacy", children)``
        (an earlier version's layout, recognised; ``children``: what the marker will record).

    Raises:
        ForeignFolderError: a non-empty folder without the marker (and not recognised) or with another kind's,
            or (``job`` given) a run folder of another job.
    """
    folder = io.storage_path(folder)
    marker = read_marker(folder)
    names = entries(folder)
    if marker is not None:
        if marker.get("kind") == kind and (job is None or marker.get("job") in (None, job)):
            return "ours", []
        why = f"it is {marker.get('job')}'s, not {job}'s" if marker.get("kind") == kind else ""
        raise _refuse(folder, kind, marker, names, why)
    if not names:
        return "new", []
    children = recognise(str(folder), names) if recognise is not None else None
    if children is None or isinstance(children, str):
        raise _refuse(folder, kind, None, names, children or "")
    return "legacy", list(children)


def _write_marker(folder: str, marker: dict) -> None:
    with fenced_for(io.join(folder, MARKER_NAME)):  # a writer whose lock was taken over records nothing
        io.write_json_atomic(io.join(folder, MARKER_NAME), marker)


def _sweep_litter(folder: str) -> None:
    """Remove the temporary files that killed atomic writes left at the top of ``folder`` (the caller owns it;
    fenced like every delete)."""
    for name in io.list_dir(folder):
        if _litter(name):  # a file, or a temporary folder (a trial's checkpoint report): never through a mount
            with fenced_for(io.join(folder, name)):
                _delete(io.join(folder, name), markers=True)


def claim(folder: str | os.PathLike, kind: str, recognise: Recognise | None = None, log=print, *,
          job: str | None = None) -> dict:
    """Claim ``folder`` as ``kind`` (see :func:`check_claim`): write the marker of a new or adopted folder.

    Returns:
        The folder's marker.
    """
    # The package is imported whenever this module is (a submodule): read its version without importing it
    # here, which the layering test would count as a circle through ``ser_models/__init__``.
    version = getattr(sys.modules.get("ser_models"), "__version__", "unknown")
    folder = io.storage_path(folder)
    state, children = check_claim(folder, kind, recognise, job=job)
    _sweep_litter(folder)
    if state == "ours":
        return read_marker(folder) or {}
    marker = {"kind": kind, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "platform_version": version,
              "children": sorted(set(children)), "adopted": state == "legacy", **({"job": job} if job else {})}
    _write_marker(folder, marker)
    if state == "legacy":
        log(f"{folder}: adopted as {KINDS.get(kind, kind)} written by an earlier version (its layout is exactly "
            f"ours; marker {MARKER_NAME} written" + (f", recorded {_show(sorted(children))}" if children else "")
            + ")")
    return marker


def open_output(folder: str | os.PathLike, kind: str, *, what: str | None = None, recognise: Recognise | None = None,
                job: str | None = None, log=print, **lock_kwargs) -> FolderLock:
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
    check_claim(folder, kind, recognise, job=job)
    lock = FolderLock(folder, what or kind.replace("_", " "), log=log, **lock_kwargs).acquire()
    try:
        claim(folder, kind, recognise, log=log, job=job)  # again under the lock: the folder may have changed meanwhile
    except BaseException:
        lock.release()
        raise
    return lock


def check_output(folder: str | os.PathLike, kind: str, *, job: str | None = None, layout: Iterable[str] = (),
                 inputs: Mapping[str, object] | None = None, key: str = "output_dir",
                 recognise: Recognise | None = None) -> None:
    """:func:`claim_output`'s refusals, writing nothing: for a job that checks its config and inputs before it
    claims (a refusal then comes first, and a config error leaves no trace)."""
    check_apart(folder, inputs or {}, key=key)
    if recognise is None and kind == "run" and job:
        recognise = recognise_run(job, layout)
    check_claim(folder, kind, recognise, job=job)


def claim_output(folder: str | os.PathLike, kind: str, *, job: str | None = None, layout: Iterable[str] = (),
                 inputs: Mapping[str, object] | None = None, key: str = "output_dir",
                 recognise: Recognise | None = None, what: str | None = None, log=print,
                 **lock_kwargs) -> FolderLock:
    """The one way a job takes its output folder, before its first byte: refuse an output that overlaps an
    input (:func:`check_apart`) or a folder that is not ours (:func:`check_claim`), then lock and mark it.

    Args:
        folder: the output folder (local path or URI).
        kind: one of :data:`KINDS`.
        job: the job (``jobs.predict``): a ``run`` folder is recorded as that job's, and a run folder of
            another job is refused.
        layout: the names the job writes (a ``run`` folder of an earlier version is adopted only with a
            ``run.json`` of ``job`` and these names).
        inputs: ``{config key: path}`` of what the job reads.
        key: the output's config key, for messages.
        recognise: the kind's legacy-layout check (default for ``run``: :func:`recognise_run`).
        what: the folder in words, for lock messages.
        lock_kwargs: passed to :class:`~ser_models.locks.FolderLock`.

    Returns:
        The held lock (``with claim_output(...):``).

    Raises:
        OutputOverlapError: the output overlaps an input.
        ForeignFolderError: the folder is not this kind's (or this job's) output.
        LockHeldError: another process writes it.
    """
    check_apart(folder, inputs or {}, key=key)
    if recognise is None and kind == "run" and job:
        recognise = recognise_run(job, layout)
    return open_output(folder, kind, what=what or (f"{job} output folder" if job else None), recognise=recognise,
                       job=job, log=log, **lock_kwargs)


@contextmanager
def deferred_claim(folder: str | os.PathLike, kind: str, **kwargs):
    """For a job that checks its config and inputs before it touches its output: the refusals of
    :func:`claim_output` now (nothing written), and a ``claim()`` to call right before the job's first write,
    whose lock is held until the ``with`` block ends. A config error in between leaves no folder behind.

    Yields:
        ``claim()``: takes the claim (once; later calls do nothing) and returns the held lock.
    """
    check_output(folder, kind, **{k: v for k, v in kwargs.items()
                                  if k in ("job", "layout", "inputs", "key", "recognise")})
    with ExitStack() as stack:
        held = []
        if io.exists(folder):  # a folder that exists may have a live writer: a second job stops at once
            stack.enter_context(FolderLock(folder, kwargs.get("what") or f"{kwargs.get('job') or kind} output folder",
                                           log=kwargs.get("log", print)))

        def claim() -> FolderLock:
            if not held:
                held.append(stack.enter_context(claim_output(folder, kind, **kwargs)))
            return held[0]

        yield claim


def claim_file(path: str | os.PathLike, *, inputs: Mapping[str, object] | None = None, key: str = "output") -> None:
    """The claim of a job whose output is one file (an ONNX graph, a converted manifest, a plot), written
    atomically: refuse a path that overlaps an input, or that is a folder (or a link to one).

    Raises:
        OutputOverlapError: the file is an input, or lies inside or contains one.
        ForeignFolderError: a folder is at ``path``; nothing is written.
    """
    check_apart(path, inputs or {}, key=key)
    fs, p = io.filesystem(path)
    if fs.get_file_info(p).type == pafs.FileType.Directory:
        raise ForeignFolderError(f"refusing to write {key}={path}: it is a folder ({_show(entries(path)) or 'empty'}); "
                                 f"{key} names the one file to write. Name a file path instead")


def assert_claimed(folder: str | os.PathLike) -> None:
    """Before a job's first write into ``folder``: it carries a marker and this process holds its lock.

    Raises:
        ForeignFolderError: the job did not claim its output (:func:`claim_output`); nothing is written.
    """
    folder = str(io.storage_path(folder)).rstrip("/")
    lock = held_lock_for(folder)
    if lock is None or str(lock.folder).rstrip("/") != folder or read_marker(folder) is None:
        raise ForeignFolderError(f"refusing to write into {folder}: the job has not claimed it (a marked folder "
                                 "whose lock this process holds); every writer claims its output with "
                                 "ser_models.ownership.claim_output before its first byte")


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
    """Delete ``folder/rel`` (a file or a folder tree), only inside a folder marked ``kind``, inside the fence
    (:func:`~ser_models.locks.fenced_for`: a writer whose lock was taken over deletes nothing).

    Args:
        folder: the marked output folder.
        kind: its kind.
        rel: a relative path inside it (``build-x``, ``build-x/data/split=_quarantine``, ``cv_choices``).
        recorded_only: True: ``rel``'s first component must be a child the marker records (else nothing is
            deleted and ``ForeignFolderError`` is raised); False: a name of the kind's own fixed layout, which
            is not deleted when a folder in it carries its own marker (another output).

    Returns:
        Whether something was deleted (False: it did not exist).

    Raises:
        ForeignFolderError: the folder is not marked ``kind``, ``rel`` leaves it or names the marker or lock,
            (``recorded_only``) its first component is not recorded, or the tree holds a mount point or
            (not ``recorded_only``) another output: nothing is deleted.
        LockLostError: this writer's lock was taken over; nothing is deleted.
    """
    folder = str(io.storage_path(folder))
    first = _child(folder, rel)
    target = io.join(folder, rel)
    with fenced_for(target):
        marker = _marked(folder, kind)
        if recorded_only and first not in set(marker.get("children") or []):
            raise ForeignFolderError(f"refusing to delete {target}: {first!r} is not recorded as made by this "
                                     f"platform in {io.join(folder, MARKER_NAME)}")
        deleted, why = _delete(target, markers=not recorded_only)
    if why:
        raise ForeignFolderError(f"refusing to delete {target}: {why}, and a delete never goes through one; nothing "
                                 f"was deleted. Move it out of {folder} (or unmount it) and run again")
    return deleted


def _delete(target: str, *, markers: bool) -> tuple[bool, str | None]:
    """Delete the file or tree ``target`` unless :func:`~ser_models.ownership.nested.kept_inside` keeps it:
    ``(deleted, why kept)``."""
    fs, p = io.filesystem(target)
    kind_of = fs.get_file_info(p).type
    if kind_of == pafs.FileType.NotFound:
        return False, None
    if kind_of == pafs.FileType.Directory:
        why = kept_inside(target, MARKER_NAME, markers=markers)
        if why:
            return False, why
        io.delete_dir(target)
    else:
        io.fs_delete(target)
    return True, None


def clear(folder: str | os.PathLike, kind: str, log=print) -> list[str]:
    """Delete everything in a folder marked ``kind`` but its marker and lock (a trial folder taking another
    trial's state), inside the fence; returns the names deleted. A folder in it that carries its own marker
    (another job's output, such as a pool inside a benchmark's work folder) is kept, unless this folder's marker
    records it as made for it, and so is any tree with a mount point inside: each with a line saying so.

    Raises:
        ForeignFolderError: the folder is not marked ``kind``.
        LockLostError: this writer's lock was taken over; nothing is deleted.
    """
    folder = str(io.storage_path(folder))
    gone = []
    with fenced_for(folder):
        mine = set(_marked(folder, kind).get("children") or [])
        for name in entries(folder):
            _, why = _delete(io.join(folder, name), markers=name not in mine)
            if why:
                log(f"{folder}: keeping {name}: {why}, and clearing the folder never deletes through one")
            else:
                gone.append(name)
    return gone


def replace_files(folder: str | os.PathLike, kind: str, written: Iterable[str], *, log=print) -> list[str]:
    """After a writer (an export) has written ``written`` (paths relative to ``folder``): delete the files the
    marker records from its previous write that this one did not write, and record ``written`` instead, each
    with the SHA-256 of its content as the platform wrote it. Everything else in the folder (a README, a
    ``curated/`` folder a person added) is left as it is, and so is a recorded file whose content changed
    since the platform wrote it (a person edited it) or whose content was never recorded (an earlier
    version's export): a warning names it, and it is no longer recorded, so it is the person's from then on.

    Returns:
        The relative paths deleted.

    Raises:
        ForeignFolderError: the folder is not marked ``kind``.
    """
    folder = str(io.storage_path(folder))
    written = sorted({_relative(folder, f) for f in written})
    hashes = {rel: file_sha256(io.join(folder, rel)) for rel in written if _hashable(folder, rel)}
    gone = []
    # Under the fence: a writer whose lock was taken over deletes nothing of the new owner's.
    with fenced_for(io.join(folder, MARKER_NAME)):
        marker = _marked(folder, kind)
        known = marker.get("hashes") or {}
        for rel in sorted(set(marker.get("files") or []) - set(written)):
            _child(folder, rel)  # inside the folder, never the marker or the lock
            target = io.join(folder, rel)
            fs, p = io.filesystem(target)
            if _through_link(folder, rel) or fs.get_file_info(p).type != pafs.FileType.File:
                continue  # a link on the way (a person's folder linked in) or not a file now: left as it is
            if known.get(rel) != file_sha256(target):
                log(f"WARNING {target}: kept, although the previous export wrote it and this one did not: its "
                    + ("content changed since then (edited?)" if rel in known else "content was not recorded")
                    + ". It is yours now; delete it yourself if it is not needed")
                continue
            io.fs_delete(target)
            gone.append(rel)
        io.write_json_atomic(io.join(folder, MARKER_NAME), {**marker, "files": written, "hashes": hashes})
    return gone


def _hashable(folder: str, rel: str) -> bool:
    """A written file inside ``folder`` (one outside is recorded as given, never hashed nor deleted)."""
    try:
        _child(folder, rel)
    except ForeignFolderError:
        return False
    return io.exists(io.join(folder, rel))


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's content (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with io.open_input_file(path) as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _through_link(folder: str, rel: str) -> bool:
    """Whether any component of ``folder/rel`` below ``folder`` is a symbolic link (local folders)."""
    parts = rel.split("/")
    return any(io.is_link(io.join(folder, *parts[:i])) for i in range(1, len(parts) + 1))


def _relative(folder: str, path: str) -> str:
    """``path`` (a URI, or a local path, absolute or relative to the working folder) relative to ``folder``."""
    path, base = str(path), folder.rstrip("/") + "/"
    if io.is_local(path) and io.is_local(folder):
        return os.path.relpath(os.path.abspath(str(io.local_path(path))), os.path.abspath(str(io.local_path(folder))))
    return path[len(base):] if path.startswith(base) else path


def remove_if(path: str | os.PathLike, recognise: Callable[[str], bool], what: str) -> bool:
    """Delete the one file ``path`` only when ``recognise(path)`` finds it to be what the platform writes there
    (by its content), never following a link; anything else is left with a log line.

    Returns:
        Whether the file was deleted.
    """
    path = str(path)
    fs, p = io.filesystem(path)
    if io.is_link(path) or fs.get_file_info(p).type != pafs.FileType.File:
        return False
    try:
        ours = recognise(path)
    except (OSError, ValueError):
        ours = False
    if not ours:
        print(f"{path}: left as it is (it does not read as {what} this platform wrote)")
        return False
    with fenced_for(path):  # a writer whose lock was taken over deletes nothing
        io.fs_delete(path)
    return True


#: Where this platform's staging folders live: made by :func:`make_staging`, removed by :func:`discard_staging`.
_STAGING_PREFIX = "ser-staging-"


def make_staging(label: str) -> str:
    """A new local temporary folder for a job's staging files (a checkpoint before it is published)."""

    return tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{label}-")


def discard_staging(path: str | os.PathLike) -> None:
    """Remove a folder made by :func:`make_staging` (nothing else: a path of another shape is refused), as a link
    if it is one; a missing folder is fine."""

    p = os.path.abspath(str(path))
    if os.path.dirname(p) != os.path.abspath(tempfile.gettempdir()) or not os.path.basename(p).startswith(
            _STAGING_PREFIX):
        raise ForeignFolderError(f"refusing to delete {p}: not a staging folder this platform made "
                                 f"({tempfile.gettempdir()}/{_STAGING_PREFIX}*)")
    if os.path.lexists(p):
        io.delete_dir(p)


def recognise_run(job: str | tuple[str, ...], layout: Iterable[str]) -> Recognise:
    """A run folder of an earlier version, recognised by content: a ``run.json`` that reads as a run record of
    ``job`` (or one of several: ``format``, ``job`` and a ``config`` mapping), and only names of ``layout``.
    Names alone never suffice: a folder of YAML files, or a ``run.json`` of another job or of no job, is not
    adopted."""
    layout = tuple(layout)
    # a layout folder's next version staged by a swap that a kill interrupted (``.<name>.incoming``)
    allowed = {"run.json", "config.yaml", *layout, *(f".{name}.incoming" for name in layout)}
    jobs = (job,) if isinstance(job, str) else tuple(job)

    def recognise(folder: str, names: list[str]) -> list[str] | None:
        if "run.json" not in names or not set(names) <= allowed:
            return None
        try:
            record = io.read_json(io.join(folder, "run.json"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("job") not in jobs or not isinstance(record.get("config"), dict):
            return None
        return []

    return recognise



__all__ = ["KINDS", "MARKER_NAME", "Recognise", "file_sha256", "assert_claimed", "check_apart", "check_claim", "check_output", "claim",
           "claim_file", "claim_output", "clear", "deferred_claim", "discard_staging", "entries", "make_staging",
           "open_output", "read_marker", "recognise_run", "record", "recorded", "remove", "remove_if", "replace_files"]

"""How a folder an earlier version made (no marker) is recognised by its content before it is adopted.

A kind's ``recognise(folder, names)`` returns ``[]`` when the folder's entries read back as that kind's (the
claim then writes the marker), and None otherwise (the folder is refused as foreign). Names alone never suffice:
a ``run.json`` must be a run record of the job, a CSV must have the columns in its header, a JSON file must be an
object (:func:`~ser_models.ownership.claims.claim_output` takes the function). The run folder's recogniser,
which a claim of a run folder applies by default, stays with the claims
(:func:`~ser_models.ownership.claims.recognise_run`); these are the other layouts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import pyarrow.fs as pafs

from ser_models import io
from ser_models.ownership.claims import Recognise, read_marker, recognise_run


def recognise_csv(tables: Mapping[str, Iterable[str]], allowed: Iterable[str] = ()) -> Recognise:
    """A layout recognised by content: every CSV file of ``tables`` present with (at least) its columns in its
    header line, and no entry outside ``tables`` and ``allowed``."""
    tables = {name: set(columns) for name, columns in tables.items()}
    names_ok = set(tables) | set(allowed)

    def recognise(folder: str, names: list[str]) -> list[str] | None:
        if not set(tables) <= set(names) or not set(names) <= names_ok:
            return None
        for name, columns in tables.items():
            try:
                with io.open_input_file(io.join(folder, name)) as fh:
                    header = fh.read(1 << 16).split(b"\n", 1)[0].decode("utf-8").strip()
            except (OSError, UnicodeDecodeError):
                return None
            if not columns <= set(header.split(",")):
                return None
        return []

    return recognise


def recognise_files(layout: Mapping[str, str]) -> Recognise:
    """A layout recognised by content, for a job that writes no ``run.json``: every entry is a name of
    ``layout`` and reads back as its kind there: ``"json"`` (a JSON object), ``"csv:<column>"`` (a CSV whose
    header names that column), ``"run:<job>"`` (a folder holding a run record of that job, or marked as
    that job's), ``"dir"`` (a folder), ``"file"`` (a file; a plot, a text the job writes); at least one entry."""
    def reads(folder: str, name: str, kind: str) -> bool:
        path = io.join(folder, name)
        try:
            if kind == "json":
                return isinstance(io.read_json(path), dict)
            if kind.startswith("csv:"):
                with io.open_input_file(path) as fh:
                    header = fh.read(1 << 16).split(b"\n", 1)[0].decode("utf-8").strip()
                return kind[4:] in header.split(",")
            if kind.startswith("run:"):
                marker = read_marker(path) or {}
                if marker.get("kind") == "run" and marker.get("job") in (None, kind[4:]):
                    return True
                return recognise_run(kind[4:], ())(path, ["run.json"]) == [] if io.exists(
                    io.join(path, "run.json")) else False
            fs, p = io.filesystem(path)
            want = pafs.FileType.Directory if kind == "dir" else pafs.FileType.File
            return fs.get_file_info(p).type == want
        except (OSError, ValueError, UnicodeDecodeError):
            return False

    def recognise(folder: str, names: list[str]) -> list[str] | None:
        ok = names and all(n in layout and reads(folder, n, layout[n]) for n in names)
        return [] if ok else None

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


__all__ = ["recognise_csv", "recognise_files", "recognise_names"]

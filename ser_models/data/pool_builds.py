"""Which build folders of a pool are ours: recorded in the pool's ownership marker, removed only when recorded.

A pool (:mod:`ser_models.data.prepare`) writes every build or update into a new ``build-<id>/`` folder and
commits it with ``summary.json``. Before creating a build folder, the builder (holding the pool's lock)
records its name in the pool's marker (:mod:`ser_models.ownership`); a build that no live version references
is deleted only when the marker records it. Anything else in the pool folder (``build-old/`` a person put
there, a ``data/`` folder that is not the old layout's) is left alone with a line naming it.
"""

from __future__ import annotations

import re

import pyarrow as pa

from ser_models.data.pool import POOL_SCHEMA, QUARANTINE_SCHEMA
from ser_models.io import join, list_dir, list_files, read_json
from ser_models.ownership import parquet_with, record, recorded, remove

#: Prefix of the per-build folders inside a pool (``summary.json`` names the current one).
BUILD_PREFIX = "build-"
# The build folders this platform names (a timestamp and a random suffix): how a pool written before
# ownership markers is told from a folder that only holds something called build-*.
_BUILD_NAME = re.compile(rf"{BUILD_PREFIX}\d{{8}}T\d{{6}}-[0-9a-f]{{8}}")


def remove_builds(out: str, keep: set[str]) -> None:
    """Delete the builds not in ``keep`` that the pool's marker records as ours (and the pre-version-2
    layout's ``data/``, recorded when such a pool was adopted); a folder it does not record is left alone,
    with a line naming it. Called under the pool's lock."""
    ours = recorded(out, "pool")
    present = set(list_dir(out))
    for name in sorted(present):
        if name in keep or not (name.startswith(BUILD_PREFIX) or name == "data"):
            continue
        if name in ours:
            remove(out, "pool", name, recorded_only=True)
        else:
            print(f"pool {out}: leaving {name}/ alone: this platform did not record it as one of its builds")
    record(out, "pool", {n for n in ours if n not in keep}, add=False)  # removed now, or gone before


def drop_build(out: str, build: str) -> None:
    """Remove the build this run started (a failed build or update) and forget it."""
    remove(out, "pool", build, recorded_only=True)
    record(out, "pool", [build], add=False)


def legacy_pool(folder: str, names: list[str]) -> list[str] | str | None:
    """The builds to record when ``folder`` is a pool written before ownership markers; None when it has no
    ``summary.json`` (no pool at all), else the reason it is not one (for the refusal to name).

    The rule reads content, never names alone: ``summary.json`` reads as a pool summary (a ``fingerprint``
    and a ``format_version``), and the pool's data reads back as that version's Parquet with the pool's
    columns (:data:`LEGACY_POOL_COLUMNS`): for a summary naming a build, every live file it lists (or every
    file under ``<build>/data/``); for the first layout (no ``build``), every file under ``data/`` is a
    ``split=<name>/*.parquet`` of the pool's and ``quarantine.parquet``, if there, is a quarantine table. At
    least one data file, and every other entry is a build folder the summary names, a folder named the way
    only this platform names builds (``build-<YYYYmmddTHHMMSS>-<8 hex>``: a crash's leftover) or, for the
    first layout, ``data/``, ``quarantine.parquet`` or ``config.yaml``. Anything else, and the folder is not
    adopted (``summary.json`` with a ``fingerprint`` beside a ``data/`` of audio files is a person's folder).
    """
    if "summary.json" not in names:
        return None
    try:
        summary = read_json(join(folder, "summary.json"))
    except (OSError, ValueError) as exc:
        return f"its summary.json does not read as JSON ({type(exc).__name__}: {exc})"
    if not isinstance(summary, dict) or "fingerprint" not in summary or "format_version" not in summary:
        return "its summary.json does not read as a pool's (a pool's has a fingerprint and a format_version)"
    try:
        live = referenced(folder, summary) if "build" in summary else set()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"the builds its summary.json names do not read as a pool's ({type(exc).__name__}: {exc})"
    if not live <= set(names):  # a summary naming builds that are not there describes another folder
        return f"its summary.json names builds that are not here: {', '.join(sorted(live - set(names)))}"
    old_layout = {"data", "quarantine.parquet", "config.yaml"} if "build" not in summary else set()
    children = []
    for name in names:
        if name == "summary.json" or (name.startswith(".summary.json.") and name.endswith(".tmp")):
            continue
        if name in live or _BUILD_NAME.fullmatch(name) or name == "data" and name in old_layout:
            children.append(name)
        elif name not in old_layout:
            return f"it holds {name!r}, which no version of the pool writes"
    problem = _data_problem(folder, summary, names)
    return children if problem is None else problem


#: The columns every pool version wrote into its data files (the split is the hive partition, not a column;
#: later versions added the segment columns, which older files lack and readers fill with nulls).
LEGACY_POOL_COLUMNS = pa.schema([f for f in POOL_SCHEMA if f.name not in (
    "split", "recording", "channel", "start", "end", "group")])


def _data_problem(folder: str, summary: dict, names: list[str]) -> str | None:
    """Why the pool's data files (see :func:`legacy_pool`) do not all read as the pool's Parquet (at least
    one), or None when they do."""
    if "build" in summary:
        listing = summary.get("files")
        if listing is not None:
            files = [f for names_ in read_json(join(folder, listing))["files"].values() for f in names_]
        else:
            data = join(folder, summary["build"], "data")
            files = [f"{summary['build']}/data/{f}" for f in list_files(data)]
    else:
        if "data" not in names:
            return "it has no data/ folder"
        files = [f"data/{f}" for f in list_files(join(folder, "data"))]
        if "quarantine.parquet" in names and not parquet_with(join(folder, "quarantine.parquet"),
                                                               QUARANTINE_SCHEMA):
            return "its quarantine.parquet does not read as a pool's quarantine table"
    if not files:
        return "it has no data file"
    for rel in files:
        parts = str(rel).split("/")
        if len(parts) < 2 or not parts[-2].startswith("split=") or not parts[-1].endswith(".parquet"):
            return f"its data file {rel} is not a pool's split=<name>/<file>.parquet"
        if not parquet_with(join(folder, rel), LEGACY_POOL_COLUMNS):
            return f"its data file {rel} does not read as Parquet with the pool's columns"
    return None


def referenced(out: str, summary: dict | None) -> set[str]:
    """The build folders a committed summary reads from: its own and every live file's."""
    if summary is None:
        return set()
    keep = {summary["build"]}
    if "files" in summary:
        listing = read_json(join(out, summary["files"]))["files"]
        keep |= {name.split("/", 1)[0] for names in listing.values() for name in names}
    return keep


__all__ = ["BUILD_PREFIX", "LEGACY_POOL_COLUMNS", "drop_build", "legacy_pool", "referenced", "remove_builds"]

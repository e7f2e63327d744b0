"""Which build folders of a pool are ours: recorded in the pool's ownership marker, removed only when recorded.

A pool (:mod:`ser_models.data.prepare`) writes every build or update into a new ``build-<id>/`` folder and
commits it with ``summary.json``. Before creating a build folder, the builder (holding the pool's lock)
records its name in the pool's marker (:mod:`ser_models.ownership`); a build that no live version references
is deleted only when the marker records it. Anything else in the pool folder (``build-old/`` a person put
there, a ``data/`` folder that is not the old layout's) is left alone with a line naming it.
"""

from __future__ import annotations

import re

from ser_models.io import join, list_dir, read_json
from ser_models.ownership import record, recorded, remove

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


def legacy_pool(folder: str, names: list[str]) -> list[str] | None:
    """The builds to record when ``folder`` is a pool written before ownership markers; None when it is not.

    The rule: ``summary.json`` reads as a pool summary (a ``fingerprint``; the build folders it reads from
    exist), and every other entry is a build folder it names, a
    folder named the way only this platform names builds (``build-<YYYYmmddTHHMMSS>-<8 hex>``: a crash's
    leftover), or, for a pre-version-2 summary (no ``build`` key), ``data/``, ``quarantine.parquet`` or
    ``config.yaml``. Any other entry, or no summary, and the folder is not adopted.
    """
    if "summary.json" not in names:
        return None
    try:
        summary = read_json(join(folder, "summary.json"))
        live = referenced(folder, summary) if isinstance(summary, dict) and "build" in summary else set()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(summary, dict) or "fingerprint" not in summary:
        return None
    if not live <= set(names):  # a summary naming builds that are not there describes another folder
        return None
    old_layout = {"data", "quarantine.parquet", "config.yaml"} if "build" not in summary else set()
    children = []
    for name in names:
        if name == "summary.json" or (name.startswith(".summary.json.") and name.endswith(".tmp")):
            continue
        if name in live or _BUILD_NAME.fullmatch(name) or name == "data" and name in old_layout:
            children.append(name)
        elif name not in old_layout:
            return None
    return children


def referenced(out: str, summary: dict | None) -> set[str]:
    """The build folders a committed summary reads from: its own and every live file's."""
    if summary is None:
        return set()
    keep = {summary["build"]}
    if "files" in summary:
        listing = read_json(join(out, summary["files"]))["files"]
        keep |= {name.split("/", 1)[0] for names in listing.values() for name in names}
    return keep


__all__ = ["BUILD_PREFIX", "drop_build", "legacy_pool", "referenced", "remove_builds"]

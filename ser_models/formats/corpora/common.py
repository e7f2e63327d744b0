"""What the corpus importers share: folder listings, the refusal reasons of their own, speaker-disjoint splits.

Each corpus importer turns the corpus's label files or file names into :class:`~ser_models.formats.rows.Row`
objects and hands them to :func:`~ser_models.formats.rows.finish`, so the checks, the report, the refused-rows
listing and the writes are those of every other import. Before those checks a corpus importer may refuse a row
for a reason of its own:

=====================  ===================================================================================
reason                 why
=====================  ===================================================================================
``malformed_line``     a label line (IEMOCAP) or label-file row (MSP-Podcast) that does not read as the
                       corpus documents it; the detail names the file and the line
``bad_file_name``      an audio file whose name does not follow the corpus's naming scheme (CREMA-D,
                       RAVDESS), or whose codes are outside the documented tables
``excluded_label``     a label the corpus's usual class set leaves out (IEMOCAP ``fru``, ``xxx``, ...;
                       MSP-Podcast ``O`` and ``X``)
``excluded_song``      a RAVDESS song file (vocal channel 02) while ``include_song`` is off
=====================  ===================================================================================
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable

import pyarrow.fs as pafs

from ser_models import io

MALFORMED_LINE = "malformed_line"
BAD_FILE_NAME = "bad_file_name"
EXCLUDED_LABEL = "excluded_label"
EXCLUDED_SONG = "excluded_song"
#: Every corpus here is English speech.
LANGUAGE = "en"
SPLIT_NAMES = ("train", "dev", "test")


def entries(folder: str) -> list[tuple[str, bool]]:
    """``(name, is a folder)`` of a folder's direct children, sorted by name; empty when the folder is missing.

    A local folder is read with ``os.scandir`` (no stat per entry on most file systems); a URI is listed through
    ``pyarrow.fs`` (one listing call).
    """
    if io.is_local(folder):
        try:
            with os.scandir(io.local_path(folder)) as it:
                found = [(e.name, e.is_dir()) for e in it]
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(found)
    fs, p = io.filesystem(folder)
    infos = fs.get_file_info(pafs.FileSelector(p, allow_not_found=True))
    return sorted((i.base_name, i.type == pafs.FileType.Directory) for i in infos)


def is_dir(path: str) -> bool:
    """Whether ``path`` (local or a URI) is a folder (one stat)."""
    if io.is_local(path):
        return os.path.isdir(io.local_path(path))
    fs, p = io.filesystem(path)
    return fs.get_file_info(p).type == pafs.FileType.Directory


def is_file(path: str) -> bool:
    """Whether ``path`` (local or a URI) is a file (one stat)."""
    if io.is_local(path):
        return os.path.isfile(io.local_path(path))
    fs, p = io.filesystem(path)
    return fs.get_file_info(p).type == pafs.FileType.File


def root_of(path: str) -> str:
    """The corpus root as rows name their files: local paths absolute and normalised, URIs without a trailing
    ``/``."""
    root = str(io.storage_path(path))
    return os.path.normpath(root) if io.is_local(root) else root


def speaker_splits(speakers: Iterable[str], *, seed: int, dev_fraction: float, test_fraction: float
                   ) -> dict[str, str]:
    """``{speaker: split}``: each speaker in exactly one of ``train``, ``dev`` and ``test``.

    The speakers are ordered by the SHA-256 of ``"<seed>:<speaker>"`` (hex digest; ties, which do not happen,
    by the id). The first ``round(n * test_fraction)`` go to ``test``, the next ``round(n * dev_fraction)`` to
    ``dev`` (halves round up) and the rest to ``train``; at least one speaker stays in ``train``. The same
    speakers and seed always give the same splits, on any machine; another seed gives another draw.

    Args:
        speakers: the speaker ids (repeats are fine).
        seed: the draw.
        dev_fraction: the share of speakers in ``dev``.
        test_fraction: the share of speakers in ``test``.
    """
    unique = sorted(set(speakers))
    order = sorted(unique, key=lambda s: (hashlib.sha256(f"{seed}:{s}".encode()).hexdigest(), s))
    n = len(order)
    n_test = min(int(n * test_fraction + 0.5), max(n - 1, 0))
    n_dev = min(int(n * dev_fraction + 0.5), max(n - 1 - n_test, 0))
    out = {}
    for i, speaker in enumerate(order):
        out[speaker] = "test" if i < n_test else "dev" if i < n_test + n_dev else "train"
    return out


def split_note(splits: dict[str, str], what: str = "speakers") -> str:
    """One report line: how many speakers each split holds, with the test and dev speakers named (up to 30 each)."""
    by_split: dict[str, list[str]] = {}
    for speaker, split in sorted(splits.items()):
        by_split.setdefault(split, []).append(speaker)
    parts = []
    for split in SPLIT_NAMES:
        members = by_split.get(split, [])
        shown = f" ({', '.join(members)})" if split != "train" and members and len(members) <= 30 else ""
        parts.append(f"{split} {len(members)}{shown}")
    return f"{what} per split: " + ", ".join(parts)


def counted_note(counts: Counter, what: str, names: dict[str, str] | None = None) -> list[str]:
    """``[what: code n (name), ...]`` when ``counts`` holds anything, else ``[]``."""
    if not counts:
        return []
    names = names or {}
    items = ", ".join(f"{code} {n}" + (f" ({names[code]})" if code in names else "")
                      for code, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return [f"{what}: {items}"]


__all__ = ["BAD_FILE_NAME", "EXCLUDED_LABEL", "EXCLUDED_SONG", "LANGUAGE", "MALFORMED_LINE", "SPLIT_NAMES",
           "counted_note", "entries", "is_dir", "is_file", "root_of", "speaker_splits", "split_note"]

"""Names that come from data (``utt_id``, ``recording``, ``speaker``, ``group``, ``label``) made safe to use.

Two rules, one per concern:

* **What an id may be** (:func:`id_problem`, :func:`check_ids`, applied when a manifest is read): any text of 1 to
  :data:`MAX_ID_CHARS` characters without control characters (Unicode category ``Cc``: NUL, tab, newline, CR,
  DEL, ...), lone surrogates (``Cs``: not encodable as UTF-8) or line / paragraph separators (``Zl``, ``Zp``).
  Such characters break CSV rows, log lines and file systems; everything else (``a/b``, ``../x``, ``=x``,
  ``%2e%2e``, ``a∕b``, ``Abc`` next to ``abc``) is a valid id, because ids are never used as file names as
  they are.
* **What a file named after an id is called** (:func:`safe_file_name`): a readable ASCII slug of the id, a
  ``-`` and the first :data:`HASH_CHARS` hex digits of the SHA-256 of the id's exact UTF-8 bytes, then the
  suffix (``"Ses01/F=1"`` -> ``"Ses01_F_1-6b0f...e2.wav"``). The slug is for people; the hash makes the name
  unique: ids that differ in any code point (case, a Unicode look-alike, NFC vs NFD) get different hashes, and
  since the hash is lowercase hex, the names also differ on case-insensitive file systems. The name is a
  single path component that never starts with ``.`` or ``-`` and holds only ``[A-Za-z0-9._-]``, so it cannot
  climb out of its folder, hide, or read as a command-line option.

Every path built from data goes through :func:`safe_child`, which checks that it stays inside its folder
(resolving symbolic links for local paths; normalising ``..`` for URIs such as ``s3://``).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path

from ser_models import io
from ser_models.exceptions import ManifestError, UnsafePathError

__all__ = ["HASH_CHARS", "MAX_ID_CHARS", "SLUG_CHARS", "check_ids", "id_problem", "safe_child", "safe_file_name"]

#: Longest id accepted (characters). A file name built from an id is bounded anyway (slug + hash); this keeps
#: messages, CSV cells and Label Studio tasks readable and refuses obviously broken columns (a whole
#: transcript pasted into ``utt_id``).
MAX_ID_CHARS = 200
#: Hex digits of the SHA-256 in a safe file name: 64 bits, so a million ids share a name with probability
#: about 3e-8.
HASH_CHARS = 16
#: Longest readable part of a safe file name (characters); names stay far below the 255-byte limit of
#: common file systems.
SLUG_CHARS = 60
_BAD_CATEGORIES = {"Cc": "a control character", "Cs": "a lone surrogate", "Zl": "a line separator",
                   "Zp": "a paragraph separator"}
_NOT_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
#: Errors list this many offending rows, then how many more there are.
SHOWN_ROWS = 10


def id_problem(value: object) -> str | None:
    """Why ``value`` cannot be an id (see the module docstring), or None when it can.

    Args:
        value: a cell of an id column (after the manifest reader strips surrounding whitespace).

    Returns:
        e.g. ``"is empty"``, ``"has a control character U+0000 at position 3"``, ``"is 300 characters long
        (at most 200)"``; None for a valid id.
    """
    if value is None:
        return "is empty"
    text = str(value)
    if not text:
        return "is empty"
    if len(text) > MAX_ID_CHARS:
        return f"is {len(text)} characters long (at most {MAX_ID_CHARS})"
    for pos, ch in enumerate(text):
        what = _BAD_CATEGORIES.get(unicodedata.category(ch))
        if what:
            return f"has {what} U+{ord(ch):04X} at position {pos + 1}"
    return None


def check_ids(values: Iterable[object], column: str, where: Callable[[int], str], source: str,
              allow_missing: bool = True) -> None:
    """Refuse a column of ids with one error that names every offending row (the first :data:`SHOWN_ROWS`).

    Args:
        values: the column's cells in row order (None = missing).
        column: the column's name, for the message.
        where: 0-based row index -> its location (e.g. ``"row 3 (line 4)"``).
        source: the file, for the message.
        allow_missing: a missing (None) cell is fine (optional columns such as ``speaker``); False for
            ``utt_id``.

    Raises:
        ManifestError: ``<source>: column 'utt_id': 2 values cannot be ids (...): row 3 (line 4) '../x\\n' has a
            control character U+000A at position 5; ...``.
    """
    bad = []
    for i, value in enumerate(values):
        if value is None and allow_missing:
            continue
        why = id_problem(value)
        if why:
            shown = value if value is None or len(str(value)) <= 80 else f"{str(value)[:80]}..."
            bad.append(f"{where(i)} {shown!r} {why}")
    if bad:
        more = f"; and {len(bad) - SHOWN_ROWS} more" if len(bad) > SHOWN_ROWS else ""
        raise ManifestError(
            f"{source}: column {column!r}: {len(bad)} value(s) cannot be ids (ids are 1 to {MAX_ID_CHARS} "
            f"characters without control characters, tabs or line breaks): " + "; ".join(bad[:SHOWN_ROWS]) + more)


def safe_file_name(value: str, suffix: str = "") -> str:
    """The file name that stands for id ``value`` (see the module docstring): ``<slug>-<hash><suffix>``.

    Args:
        value: any id (not checked here: an invalid one still maps to a safe name).
        suffix: e.g. ``".wav"``; must itself be ``.`` and ``[A-Za-z0-9_-]`` characters.

    Returns:
        One path component of ``[A-Za-z0-9._-]`` characters, at most ``SLUG_CHARS + 1 + HASH_CHARS +
        len(suffix)`` long, never starting with ``.`` or ``-``; distinct ids give distinct names (also when
        compared without case).

    Raises:
        UnsafePathError: ``suffix`` holds other characters.
    """
    if suffix and not re.fullmatch(r"(\.[A-Za-z0-9_-]+)+", suffix):
        raise UnsafePathError(f"file name suffix {suffix!r} must look like '.wav'")
    text = str(value)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]
    # NFKD first so that accented letters keep their base letter in the readable part ("é" -> "e").
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = _NOT_SLUG.sub("_", ascii_text).lstrip("._-")[:SLUG_CHARS].rstrip(".")
    return f"{slug or 'id'}-{digest}{suffix}"


def safe_child(folder: str | os.PathLike, name: str) -> str:
    """``folder/name``, checked to stay inside ``folder``.

    Args:
        folder: a local folder or a URI (``s3://bucket/run/clips``); it need not exist yet.
        name: a relative path below it (usually one :func:`safe_file_name`; ``a/b`` sub-paths are fine).

    Returns:
        The joined path (the folder as given, then ``name`` normalised), as :func:`ser_models.io.join` writes it.

    Raises:
        UnsafePathError: ``name`` is empty, absolute, holds NUL, or leads outside ``folder`` (through ``..`` or,
            for a local folder, through a symbolic link that points elsewhere); the message names both.
    """
    text = str(name)
    if not text or "\x00" in text:
        raise UnsafePathError(f"{folder}: file name {text!r} is empty or holds NUL")
    if text.startswith(("/", "\\")) or "://" in text or re.match(r"^[A-Za-z]:[\\/]", text):
        raise UnsafePathError(f"{folder}: file name {text!r} is absolute; it must lie inside that folder")
    rel = posixpath.normpath(text)
    if rel in (".", "..") or rel.startswith("../"):
        raise UnsafePathError(f"{folder}: file name {text!r} leads outside that folder")
    path = io.join(folder, rel)
    if io.is_local(folder):
        base = io.local_path(folder).expanduser().absolute().resolve()
        target = Path(io.local_path(path)).expanduser().absolute().resolve()
        if base not in target.parents:
            raise UnsafePathError(f"{folder}: file name {text!r} resolves to {target}, outside that folder "
                                  "(a symbolic link?)")
    return path

"""Content hashes of model files, each file's sha256 cached beside it so that a large model is read once.

:func:`hash_files` names a folder's model files by content: the sha256 of every matching file's name and
sha256, whatever the folder's path (a moved folder keeps its hash). Reading a 1 GB model takes seconds, so
each file's sha256 is kept in one sidecar, ``<folder>/.ser-hashes.json`` (:data:`SIDECAR_NAME`), keyed by file
name with the file's size, ``mtime_ns`` and inode when it was hashed. An entry is trusted only while all three
still match: a file rewritten in place (new ``mtime``), replaced by a rename or a copy (new inode) or grown is
hashed again. The sidecar is written atomically (:func:`ser_models.io.write_json_atomic`), only when an entry
changed, and is never hashed itself (hidden files are skipped). A folder that cannot be written (read-only, a
shared model store) is hashed without the sidecar; this process still remembers each file's sha256 by the same
(size, ``mtime_ns``, inode) test, so it reads the folder once.

An encoder is not keyed through this cache: it is built from its files read once and keyed by the bytes read
(:mod:`ser_models.encoders.loading`), and nothing is written into its folder. The sidecar serves folders the
platform made (an imported encoder); a folder another job or a person owns is hashed with ``cache=False``.

What the cache cannot see: a file rewritten in place with the same size and its old modification time set back
(``touch -d``), within the file system's timestamp resolution, is trusted; so is a sidecar edited by hand. A
file that changes while it is hashed is hashed again (three tries, then :class:`OSError`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

import pyarrow.fs as pafs

from ser_models.io import filesystem, is_local, local_path, read_json, write_json_atomic

#: The sidecar holding each file's sha256 (hidden, so it never matches a pattern and is never hashed).
SIDECAR_NAME = ".ser-hashes.json"
#: The sidecar's format (another value: the sidecar is ignored and rewritten).
SIDECAR_FORMAT = 1
#: What names a Hugging Face model folder's computation: its weights and the configs that shape its features.
MODEL_FILE_PATTERNS = ("*.safetensors", "*.bin", "config.json", "preprocessor_config.json")
#: Every file at the top of a folder but hidden ones (a checkpoint folder: ``model.json`` and its weights).
ALL_FILES = ("*",)
_CHUNK = 1 << 24
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: This process's sha256 of each local file, by (real path, size, mtime_ns, inode): a read-only folder is
#: read once per process, and a folder seen before costs one ``stat`` per file.
_MEMO: dict[tuple[str, int, int, int], str] = {}
#: Files read and hashed in this process (tests and ``bench/fingerprint.py`` read it; nothing else does).
HASHED: list[str] = []


def hash_files(folder: str | os.PathLike, patterns: Iterable[str] = MODEL_FILE_PATTERNS, *, cache: bool = True) -> str:
    """sha256 (hex) of the files at the top of ``folder`` whose names match ``patterns``, by name and content.

    Args:
        folder: a local folder or a ``pyarrow.fs`` URI (a URI is hashed without any cache).
        patterns: ``fnmatch`` patterns over file names (hidden files never match).
        cache: read and write the sidecar (False: this process's memory only; for a folder another job owns).

    Raises:
        FileNotFoundError: ``folder`` is not a folder.
        OSError: a file cannot be read, or kept changing while it was hashed.
    """
    patterns = tuple(patterns)
    if not is_local(folder):
        digests = _remote_digests(str(folder), patterns)
    else:
        digests = _local_digests(local_path(folder).expanduser(), patterns, cache)
    return files_identity(digests)


def files_identity(digests: dict[str, str]) -> str:
    """sha256 (hex) of a set of files by name and content: ``{name: sha256 of its bytes}`` (what
    :func:`hash_files` returns for a folder, and :mod:`ser_models.encoders.loading` for the bytes it read)."""
    h = hashlib.sha256(b"ser-files-v1\n")
    for name in sorted(digests):
        h.update(f"{name}\0{digests[name]}\n".encode())
    return h.hexdigest()


def model_files(folder: Path, patterns: Iterable[str] = MODEL_FILE_PATTERNS) -> list[str]:
    """The names of the files at the top of the local ``folder`` that :func:`hash_files` covers (links followed)."""
    patterns = tuple(patterns)
    return [n for n in sorted(os.listdir(folder)) if _matches(n, patterns) and (folder / n).is_file()]


def file_digest(path: str | os.PathLike) -> str:
    """sha256 (hex) of one file's bytes (a local path, remembered by this process as :func:`hash_files` does, or
    a ``pyarrow.fs`` URI, read every time)."""
    if not is_local(path):
        fs, p = filesystem(path)
        with fs.open_input_stream(p) as fh:
            return _digest_stream(fh, str(path))
    p = local_path(path).expanduser()
    return _stable_digest(p, os.stat(p))[0]


def clear_memo() -> None:
    """Forget this process's file hashes (tests: make the next call read the sidecar, or the files)."""
    _MEMO.clear()


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return not name.startswith(".") and any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _stamp(st: os.stat_result) -> dict:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _local_digests(folder: Path, patterns: tuple[str, ...], cache: bool) -> dict[str, str]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    # follows links: a Hugging Face snapshot links to its blobs
    files = {name: os.stat(folder / name) for name in model_files(folder, patterns)}
    old = _read_sidecar(folder) if cache else {}
    entries, digests = {}, {}
    for name, st in files.items():
        stamp = _stamp(st)
        entry = old.get(name)
        if entry is not None and all(entry.get(k) == v for k, v in stamp.items()):
            digests[name] = entry["sha256"]
            _MEMO[(os.path.realpath(folder / name), *stamp.values())] = entry["sha256"]
        else:
            digests[name], st = _stable_digest(folder / name, st)
            stamp = _stamp(st)  # what was hashed (the same before and after reading)
        entries[name] = {**stamp, "sha256": digests[name]}
    if cache and entries != old:
        try:
            write_json_atomic(folder / SIDECAR_NAME, {"format": SIDECAR_FORMAT, "files": entries})
        except OSError:
            pass  # a read-only folder: the hashes live in this process's memory (_MEMO) instead
    return digests


def _read_sidecar(folder: Path) -> dict[str, dict]:
    """The sidecar's entries, or {} when it is missing, unreadable or not in this format (then rewritten)."""
    path = folder / SIDECAR_NAME
    if not path.is_file():
        return {}
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT or not isinstance(data.get("files"), dict):
        return {}
    valid = {}
    for name, entry in data["files"].items():
        if (isinstance(entry, dict) and all(isinstance(entry.get(k), int) for k in ("size", "mtime_ns", "inode"))
                and isinstance(entry.get("sha256"), str) and _SHA256.fullmatch(entry["sha256"])):
            valid[name] = entry
    return valid


def _stable_digest(path: Path, st: os.stat_result) -> tuple[str, os.stat_result]:
    """``(sha256, stat)`` of ``path``, whose ``stat`` was ``st``: from this process's memory when the file is
    unchanged, else read, and read again when its size, ``mtime`` or inode changed while it was read."""
    for _ in range(3):
        key = (os.path.realpath(path), *_stamp(st).values())
        if key in _MEMO:
            return _MEMO[key], st
        with open(path, "rb") as fh:
            digest = _digest_stream(fh, str(path))
        after = os.stat(path)
        if _stamp(after) == _stamp(st):
            _MEMO[key] = digest
            return digest, st
        st = after
    raise OSError(f"{path} kept changing while it was hashed (is a job writing it?)")


def _digest_stream(fh, name: str) -> str:
    h = hashlib.sha256()
    while chunk := fh.read(_CHUNK):
        h.update(chunk)
    HASHED.append(name)
    return h.hexdigest()


def _remote_digests(folder: str, patterns: tuple[str, ...]) -> dict[str, str]:
    fs, p = filesystem(folder)
    info = fs.get_file_info(p)
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"{folder} is not a folder")
    digests = {}
    for child in fs.get_file_info(pafs.FileSelector(p, recursive=False)):
        if child.type == pafs.FileType.File and _matches(child.base_name, patterns):
            with fs.open_input_stream(child.path) as fh:
                digests[child.base_name] = _digest_stream(fh, f"{folder.rstrip('/')}/{child.base_name}")
    return digests

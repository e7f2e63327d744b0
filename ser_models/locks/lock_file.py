"""The lock file itself: reading ``<folder>/.ser-lock.json`` back (a local file, or a lease object on a store)
as a record and a fingerprint, and its holder in words.

A record is what :class:`~ser_models.locks.folder_lock.FolderLock` writes: the holder's identity
(:mod:`ser_models.locks.identity`), its owner token, heartbeat and what the folder is. The fingerprint is
compared only with itself (a writer watches a lock of another machine until it stays unchanged for ``stale_s``),
never with a clock.
"""

from __future__ import annotations

import json
import os
import time

from ser_models import io
from ser_models.locks.identity import HOST
from ser_models.locks.identity import identity as _identity
from ser_models.locks.identity import iso as _iso
from ser_models.locks.identity import same_machine as _same_machine

#: Reads of a lease that failed (an overwrite in flight, a throttled request) are retried this many times, with
#: a doubling pause from 0.05 s (about 0.75 s in all), before the error is raised (object stores only).
READ_TRIES = 5


def read_lock_file(path: str, local: bool) -> tuple[dict | None, object]:
    """``(record, fingerprint)`` of the lock file ``path``; ``(None, None)`` when there is none.

    A file being created (empty or half-written) reads as ``{}``. The fingerprint changes whenever the holder
    beats: the bytes, and locally the file's inode, size and mtime too.

    Args:
        path: the lock file (local path or store URI).
        local: ``path`` is on the local filesystem (read with one ``open``; else :func:`read_lease`).

    Raises:
        OSError: a lease exists but could not be read (:func:`read_lease`).
    """
    if local:
        try:
            fd = os.open(io.local_path(path), os.O_RDONLY)
        except FileNotFoundError:
            return None, None
        try:
            st = os.fstat(fd)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            raw = b"".join(chunks)
        finally:
            os.close(fd)
        fingerprint: object = (raw, st.st_ino, st.st_size, st.st_mtime_ns)
    else:
        raw = read_lease(path)
        if raw is None:
            return None, None
        fingerprint = raw
    return parse_record(raw), fingerprint


def parse_record(raw: bytes) -> dict:
    """A lock file's bytes as its record: ``{}`` for a file being created, half-written or not a JSON object."""
    try:
        rec = json.loads(raw.decode() or "{}")
    except ValueError:
        rec = {}
    return rec if isinstance(rec, dict) else {}


def read_lease(path: str) -> bytes | None:
    """The lease object's bytes, or None when there is none.

    A read that fails while the object exists, or returns bytes that are not a JSON object, is retried
    (:data:`READ_TRIES`): leases are only ever written whole, so such a read met an overwrite in flight or a
    throttled request (moto's server even answers a read that meets an overwrite with torn bytes). Bytes that
    stay unreadable as JSON are returned (an abandoned or foreign object: watched, then taken over). A read
    that keeps failing raises: it is never read as an empty lease, which a waiter would take over once it
    stayed "empty" for ``stale_s``.

    Raises:
        OSError: the lease exists but could not be read, naming it and the store's last error.
    """
    fs, p = io.filesystem(path)
    raw, error = None, None
    for attempt in range(READ_TRIES):
        if fs.get_file_info(p).type.name == "NotFound":
            return None
        try:
            raw = io.read_bytes(path)
        except OSError as exc:  # FileNotFoundError included: deleted between the two calls, looked at again
            raw, error = None, exc
        else:
            try:
                if isinstance(json.loads(raw.decode()), dict):
                    return raw
            except ValueError:  # UnicodeDecodeError included
                pass
        time.sleep(0.05 * 2 ** attempt)
    if raw is None:
        raise OSError(f"the lock file {path} exists but could not be read ({READ_TRIES} tries): {error}")
    return raw


def describe_holder(rec: dict | None) -> str:
    """The holder of the lock record ``rec`` in words: host, pid, start time and last heartbeat (by the holder's
    own clock)."""
    if not rec:
        return "a writer that is creating the lock right now"
    same = _same_machine(rec)
    thread = (f", thread {rec['thread']!r} (another thread of this process)"
              if same and rec.get("pid") == os.getpid() and rec.get("thread") else "")
    me = _identity()
    if same or rec.get("host") != HOST:
        where = ""
    elif rec.get("boot_id") == me["boot_id"] and rec.get("pidns") == me["pidns"] and "boot_id" in rec:
        where = " (its pid cannot be checked from this process)"
    else:
        where = " (another boot or PID namespace of this host)"
    return (f"host {rec.get('host', '?')}{where}, pid {rec.get('pid', '?')}{thread}, started "
            f"{_iso(rec.get('started_at'))}, last heartbeat {_iso(rec.get('heartbeat_at'))} by its clock")


__all__ = ["READ_TRIES", "describe_holder", "parse_record", "read_lease", "read_lock_file"]

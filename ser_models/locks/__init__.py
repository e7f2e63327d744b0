"""One writer at a time: the lock file of each output folder, who holds it, and the folder guard its changes run
under.

- :mod:`~ser_models.locks.folder_lock`: :class:`FolderLock` (take, heartbeat, take over, release) and the fence
  every commit runs inside (:func:`fenced_for`);
- :mod:`~ser_models.locks.lock_file`: reading the lock file back (local file or lease object) as a record and a
  fingerprint, and its holder in words;
- :mod:`~ser_models.locks.identity`: a holder's identity (host, boot, PID namespace, pid and its start time) and
  when a holder is stale;
- :mod:`~ser_models.locks.guard`: the ``flock`` of a local folder that lock changes on this machine run under.

docs/safety.md tells the whole story.
"""

from ser_models.locks.folder_lock import (
    DEFAULT_STALE_S,
    LOCK_NAME,
    MIN_STALE_S,
    READ_TRIES,
    SETTLE_S,
    STALE_ENV,
    TAKE_OVER_ENV,
    WAIT_ENV,
    FolderLock,
    assert_held_for,
    fenced_for,
    held_lock_for,
    holder_id,
    machine_identity,
    stale_seconds,
    take_over_holder,
    wait_seconds,
)

__all__ = ["DEFAULT_STALE_S", "LOCK_NAME", "MIN_STALE_S", "READ_TRIES", "SETTLE_S", "STALE_ENV", "TAKE_OVER_ENV",
           "WAIT_ENV", "FolderLock", "assert_held_for", "fenced_for", "held_lock_for", "holder_id", "machine_identity",
           "stale_seconds", "take_over_holder", "wait_seconds"]

"""One writer at a time: the lock file of each output folder, who holds it, and the folder guard its changes run
under.

- :mod:`~ser_models.locks.folder_lock`: :class:`FolderLock` (take, heartbeat, take over, release);
- :mod:`~ser_models.locks.fence`: the fence every commit and every delete runs inside (:func:`fenced_for`), which
  finds the locks above a path however it is spelled;
- :mod:`~ser_models.locks.lock_file`: reading the lock file back (local file or lease object) as a record and a
  fingerprint, and its holder in words;
- :mod:`~ser_models.locks.lease`: an S3 lease's conditional create, rewrite and delete (``If-None-Match`` /
  ``If-Match``);
- :mod:`~ser_models.locks.identity`: a holder's identity (host, boot, PID namespace, pid and its start time) and
  when a holder is stale;
- :mod:`~ser_models.locks.guard`: the ``flock`` of a local folder that lock changes on this machine run under.

docs/safety.md tells the whole story.
"""

from ser_models import io as _io
from ser_models.locks.fence import assert_held_for, fenced_for, held_lock_for
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
    holder_id,
    machine_identity,
    stale_seconds,
    take_over_holder,
    wait_seconds,
)

# Deletes of the base floor (a checkpoint swap's retire) run in the same fence as every commit.
_io.set_delete_fence(fenced_for)

__all__ = ["DEFAULT_STALE_S", "LOCK_NAME", "MIN_STALE_S", "READ_TRIES", "SETTLE_S", "STALE_ENV", "TAKE_OVER_ENV",
           "WAIT_ENV", "FolderLock", "assert_held_for", "fenced_for", "held_lock_for", "holder_id", "machine_identity",
           "stale_seconds", "take_over_holder", "wait_seconds"]

"""One writer at a time: a lock file in each output folder (pool, run folder, feature cache, segment output).

A lock is the file ``<folder>/.ser-lock.json``: its holder's identity (:mod:`ser_models.locks.identity`), a random
owner token, a heartbeat (``beat`` counter, ``heartbeat_at`` by the holder's clock) and what the folder is. In
short (docs/safety.md has the whole story): a holder on this host, boot and PID namespace is judged by its pid and
is never taken over while alive; any other is stale only once a watching writer saw it unchanged for ``stale_s``
on its own monotonic clock. Locally the file is created with ``O_CREAT | O_EXCL`` and heartbeats, take-overs,
releases and fenced commits run under an ``flock`` of the folder (:mod:`ser_models.locks.guard`); on S3 the lease
object is created only where none is and rewritten or deleted only as it was read (conditional writes,
:mod:`ser_models.locks.lease`); on other object stores, and on an S3 store that ignores conditions, it is written
when absent and read back after :data:`SETTLE_S`. A commit runs inside
:func:`~ser_models.locks.fence.fenced_for` (so does every delete) and raises
:class:`~ser_models.exceptions.LockLostError` unless every lock above it still names this writer. ``SER_LOCK_TAKE_OVER=<host>:<pid>`` takes over the holder it names (never one alive here). Locks are
released on exit; a lock belongs to the thread that took it (the same thread may take it again, nested stages)."""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
import uuid
from contextlib import contextmanager

from ser_models import io
from ser_models.exceptions import LockHeldError, LockLostError
from ser_models.locks import lease
from ser_models.locks.guard import folder_guard as _guard
from ser_models.locks.identity import (
    DEFAULT_STALE_S,
    HOST,
    MAX_HEARTBEAT_S,
    MIN_STALE_S,
    STALE_ENV,
    TAKE_OVER_ENV,
    WAIT_ENV,
    check_stale,
    holder_id,
    machine_identity,
    stale_seconds,
    take_over_holder,
    wait_seconds,
)
from ser_models.locks.identity import identity as _identity
from ser_models.locks.identity import now as _now
from ser_models.locks.identity import pid_alive as _pid_alive
from ser_models.locks.identity import same_machine as _same_machine
from ser_models.locks.lock_file import READ_TRIES, describe_holder, parse_record, read_lock_file

LOCK_NAME = ".ser-lock.json"
#: Seconds a taker waits at least for the folder's guard (held by a commit in progress, or by a process paused
#: in the middle of one) before it gives up taking a stale lock over.
GUARD_WAIT_S = 60.0
#: Seconds a lease writer waits before reading its lease back (object stores only).
SETTLE_S = 0.5

#: Locks this process holds, by lock-file path (re-entry by the same thread shares them; ``held_lock_for``
#: finds them).
_HELD: dict[str, FolderLock] = {}
#: The owner tokens of this process's locks that are held or being taken, so that a lock file naming this pid is
#: never mistaken for one this process left behind while another of its threads is creating it.
_OURS: dict[str, FolderLock] = {}
#: What this process saw of each lock file of another machine: ``path -> (fingerprint, monotonic time first
#: seen)``. A lock is stale once its fingerprint stayed the same for ``stale_s``.
_SEEN: dict[str, tuple[object, float]] = {}
_HELD_GUARD = threading.Lock()


class FolderLock:
    """The writer's lock of one folder (``with FolderLock(folder, "pool"):``).

    Args:
        folder: the folder to lock (local path or ``pyarrow.fs`` URI); created if missing.
        what: what the folder is, for messages ("pool", "run folder", ...).
        name: the lock file's name inside ``folder`` (a second lock in one folder, e.g. the ledger's).
        take_over: ``"<host>:<pid>"`` of a holder whose lock to take over at once, even while its heartbeat is
            recent (default: ``$SER_LOCK_TAKE_OVER``); a lock of any other holder is respected, and so is a holder
            alive on this machine.
        stale_s: how long (s) a lock of another machine must be seen unchanged before it is stale (default:
            :func:`stale_seconds`; at least :data:`MIN_STALE_S`).
        wait_s: how long to wait for a held lock before giving up (0: stop at once; short critical sections
            such as one ledger append wait a little); ``$SER_LOCK_WAIT_S`` raises it. A writer that waits at
            least ``stale_s`` takes over a lock of another machine that stays unchanged meanwhile.
        log: where the take-over line goes.

    Raises:
        ConfigError: ``stale_s`` / ``$SER_LOCK_STALE_S`` below :data:`MIN_STALE_S` (or not a number), a bad
            ``$SER_LOCK_WAIT_S``, or a bad ``take_over``.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "output folder", *, name: str = LOCK_NAME,
                 take_over: str | None = None, stale_s: float | None = None, wait_s: float = 0.0, log=print):
        self.folder = io.storage_path(folder)
        self.what = what
        self.path = io.join(self.folder, name)
        self.take_over = take_over_holder(os.environ.get(TAKE_OVER_ENV) if take_over is None else take_over)
        self.thread: threading.Thread | None = None  # the owner (set when taken): other threads are other writers
        self.stale_s = stale_seconds() if stale_s is None else check_stale(stale_s, "stale_s")
        self.heartbeat_s = min(MAX_HEARTBEAT_S, self.stale_s / 4)
        self.wait_s = max(float(wait_s), wait_seconds())
        self.log = log
        self.local = io.is_local(self.path)
        self.s3 = not self.local and lease.is_s3(self.path)  # S3: conditional writes where the store honours them
        self.token = uuid.uuid4().hex
        self.started = None
        self._pid = os.getpid()
        self._outer: FolderLock | None = None
        self._depth = 0
        self._beats = 0
        self._stop = threading.Event()
        #: Held by the heartbeat while it checks ``_stop`` and writes; a release sets ``_stop`` under it, so no
        #: beat writes after the release has begun.
        self._beat_guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._lost: str | None = None
        #: The last heartbeat error (a store that failed a write; the next beat retries).
        self.beat_error: str | None = None

    def __repr__(self) -> str:
        return f"FolderLock(path={self.path!r}, held={self.held})"

    # -- state -----------------------------------------------------------------------------------------
    @property
    def held(self) -> bool:
        return self._outer.held if self._outer is not None else self._depth > 0

    def _record(self) -> dict:
        me = _identity()
        return {"host": me["host"], "boot_id": me["boot_id"], "pidns": me["pidns"], "pid": me["pid"],
                "proc_start": me["proc_start"], "token": self.token, "thread": threading.current_thread().name,
                "started_at": self.started, "heartbeat_at": _now(), "beat": 0, "heartbeat_s": self.heartbeat_s,
                "what": self.what, "folder": str(self.folder)}

    def _read(self) -> tuple[dict | None, object]:
        """The lock file's ``(record, fingerprint)`` (:func:`~ser_models.locks.lock_file.read_lock_file`)."""
        return read_lock_file(self.path, self.local)

    def _conditional(self) -> bool:
        """Whether this lock's lease takes conditional writes: on S3, where the store honours all three
        (:func:`~ser_models.locks.lease.honours_conditions`, tried once per bucket on a scratch object named as
        litter in this folder)."""
        if not self.s3:
            return False
        if lease.honours_conditions(io.join(self.folder, f"{io.TEMP_PREFIX}{LOCK_NAME}.{uuid.uuid4().hex}.tmp")):
            return True
        self._say_unconditional()
        return False

    def _read_lease(self) -> tuple[dict | None, bytes | None, str | None]:
        """An S3 lease's ``(record, bytes, ETag)`` (``(None, None, None)``: none), for a conditional rewrite or
        delete of exactly what was read."""
        got = lease.get(self.path)
        if got is None:
            return None, None, None
        raw, etag = got
        return parse_record(raw), raw, etag

    def _watch(self, fingerprint: object) -> float:
        """Seconds (on this process's monotonic clock) that the lock file has read as ``fingerprint``."""
        now = time.monotonic()
        with _HELD_GUARD:
            seen = _SEEN.get(self.path)
            if seen is None or seen[0] != fingerprint:
                _SEEN[self.path] = (fingerprint, now)
                return 0.0
            return now - seen[1]

    def _local_stale(self, rec: dict) -> str | None:
        """Why the lock ``rec`` of a holder on this machine and namespace is stale; None while it is alive (it is
        then never taken over, however old its heartbeat)."""
        pid = int(rec["pid"])
        me = _identity()
        if pid == me["pid"]:
            if rec.get("proc_start") is not None and me["proc_start"] is not None \
                    and str(rec["proc_start"]) != str(me["proc_start"]):
                return f"its process {pid} on this host ({HOST}) is gone (this process now has its pid)"
            with _HELD_GUARD:
                owner = _OURS.get(rec.get("token"))
            if owner is None:
                return f"it was left by this process (pid {pid}) and is no longer held"
            if owner.thread is not None and not owner.thread.is_alive():
                return f"its thread {owner.thread.name!r} of this process (pid {pid}) ended without releasing it"
            return None
        if not _pid_alive(pid, rec.get("proc_start")):
            return f"its process {pid} on this host ({HOST}) is gone"
        return None

    def _take_over_reason(self, rec: dict, fingerprint: object, take_over: str | None) -> str | None:
        """Why the lock ``rec`` (read as ``fingerprint``) may be taken over now, or None to respect it."""
        if not rec:  # a file being created right now, or left empty by a writer that died creating it
            seen = self._watch(fingerprint)
            return (f"its file is empty and has not changed for {seen:.1f} s of watching "
                    f"({STALE_ENV}={self.stale_s:g})") if seen >= self.stale_s else None
        if _same_machine(rec):
            return self._local_stale(rec)  # a live holder here is never taken over, even when named
        if take_over is not None and holder_id(rec) == take_over:
            return f"{TAKE_OVER_ENV}={take_over} names it"
        seen, need = self._watch(fingerprint), self._stale_for(rec)
        if seen >= need:
            return (f"it has not changed for {seen:.1f} s of watching from here: no heartbeat for "
                    f"{need:g} s ({STALE_ENV}={self.stale_s:g})")
        return None

    def _stale_for(self, rec: dict) -> float:
        """Unchanged this long, ``rec`` is stale: ``stale_s``, and at least four of its holder's own heartbeats."""
        beat = rec.get("heartbeat_s")
        return max(self.stale_s, 4 * float(beat)) if isinstance(beat, (int, float)) else self.stale_s

    def _seen_for(self, fingerprint: object) -> float:
        with _HELD_GUARD:
            seen = _SEEN.get(self.path)
        return time.monotonic() - seen[1] if seen is not None and seen[0] == fingerprint else 0.0

    def describe(self, rec: dict | None) -> str:
        """The holder in words (:func:`~ser_models.locks.lock_file.describe_holder`)."""
        return describe_holder(rec)

    def _refusal(self, rec: dict | None, fingerprint: object, take_over: str | None) -> LockHeldError:
        """The error of a writer that found ``rec`` holding the lock: who holds it, and the exact take-over key."""
        msg = (f"the {self.what} {self.folder} is being written by another process ({self.describe(rec)}; "
               f"lock file {self.path}). Wait for it to finish.")
        seen = self._seen_for(fingerprint)
        if not rec:
            return LockHeldError(
                msg + f" Its lock file is being written right now (empty, unchanged for {seen:.0f} s of the "
                f"{self.stale_s:g} s after which it counts as abandoned): rerun in a moment")
        holder = holder_id(rec)
        if take_over is not None and take_over != holder:
            msg += (f" {TAKE_OVER_ENV}={take_over} is set, but the holder changed: the lock is now held by {holder}, "
                    "so nothing was taken over.")
        if _same_machine(rec):
            if rec.get("pid") == os.getpid():
                return LockHeldError(msg + " Another thread of this process holds it: two threads are two writers")
            if take_over is not None and take_over == holder:
                return LockHeldError(
                    msg + f" {TAKE_OVER_ENV}={take_over} names it, but its process {rec.get('pid')} is alive on this "
                    "host: stop it first (a lock of a process that exited is taken over by itself)")
            return LockHeldError(
                msg + f" Its process {rec.get('pid')} is alive on this host, so its lock is never taken over while "
                f"it runs, even when paused and even with {TAKE_OVER_ENV}={holder}: stop it, and the next writer "
                "takes its lock over by itself")
        return LockHeldError(
            msg + f" It runs on another machine (or in another PID namespace), where this process cannot check its "
            f"pid, and its heartbeat changed while this writer watched it: it is alive. A lock that stays unchanged "
            f"for {STALE_ENV}={self.stale_s:g} s while a writer watches it is taken over by itself; to take this one "
            f"over now (a host you know is gone), rerun with {TAKE_OVER_ENV}={holder}")

    # -- acquire / release -------------------------------------------------------------------------------
    def acquire(self) -> FolderLock:
        """Take the lock (or join this thread's hold of it).

        Raises:
            LockHeldError: another live writer (another process, or another thread of this one) holds it (after
                ``wait_s``), naming it and the exact take-over key.
        """
        if self._depth > 0 or self._outer is not None:
            return self  # this handle holds it already (``with open_output(...):`` on an acquired lock)
        me = threading.current_thread()
        with _HELD_GUARD:
            outer = _HELD.get(self.path)
            # Re-entry only by the thread that holds it (nested stages), never a forked child's copy.
            if outer is not None and outer.held and outer._pid == os.getpid() and outer.thread is me:
                outer._depth += 1
                self._outer, self.token, self.started, self.thread = outer, outer.token, outer.started, me
                return self
            _OURS[self.token] = self
        self.thread = me
        try:
            self._acquire_file()
        except BaseException:
            with _HELD_GUARD:
                _OURS.pop(self.token, None)
            raise
        self._depth, self._pid, self._lost, self._beats = 1, os.getpid(), None, 0
        with _HELD_GUARD:
            _HELD[self.path] = self
            _SEEN.pop(self.path, None)
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lock-heartbeat {self.path}", daemon=True)
        self._thread.start()
        return self

    def _acquire_file(self) -> None:
        deadline = time.monotonic() + self.wait_s
        take_over = self.take_over
        poll = 0.05 if self.local else 0.2
        spins, first = 0, {}
        while True:
            self.started = _now()
            if self._create():
                return
            rec, fingerprint = self._read()
            spins += 1
            if spins > 1000:  # pragma: no cover - a lock file that keeps changing under us without a pause
                raise LockHeldError(f"the {self.what} {self.folder}: could not take the lock {self.path}")
            if rec is None:
                continue  # released between our create and read: try again
            reason = self._take_over_reason(rec, fingerprint, take_over)
            if reason:
                guard_s = max(deadline - time.monotonic(), GUARD_WAIT_S)
                if self._take_over(take_over, guard_s):
                    continue  # create ours; a writer that created one first wins, and we see it next
                raise LockHeldError(
                    f"the {self.what} {self.folder}: its lock {self.path} may be taken over ({reason}), but the "
                    f"folder's guard stayed held by another process for {guard_s:.0f} s (a commit in progress, or a "
                    "process paused in the middle of one); nothing was taken over. Rerun once it is done")
            # Past the writer's own wait, a lock whose holder this process cannot check (another machine, or an
            # empty file) is watched: refused as soon as it beats (alive), taken over once unchanged for stale_s.
            watch = not (rec and _same_machine(rec)) and fingerprint == first.setdefault("fp", fingerprint)
            if watch and "said" not in first and time.monotonic() >= deadline:
                first["said"] = self.log(f"lock {self.path}: held by {self.describe(rec)}, which this process "
                                         f"cannot check: watching it for up to {self._stale_for(rec):g} s "
                                         f"({STALE_ENV})")
            if time.monotonic() < deadline or watch:
                spins = 0
                time.sleep(poll)
                continue
            raise self._refusal(rec, fingerprint, take_over)

    def _create(self) -> bool:
        data = json.dumps(self._record(), sort_keys=True).encode()
        if self.local:
            p = io.local_path(self.path)
            p.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            io.fsync_dir(p.parent)
            return True
        if self._conditional():
            try:
                lease.put(self.path, data, create=True)
            except lease.LeaseConflict:
                got = lease.get(self.path)  # a retried create of ours answers 412 too: look at what is there
                return got is not None and got[0] == data
            return True
        if io.exists(self.path):
            return False
        io.write_bytes_atomic(self.path, data)
        time.sleep(SETTLE_S)  # a writer that also saw no lease has written by now: the last PUT wins
        rec, _ = self._read()
        return bool(rec) and rec.get("token") == self.token

    def _say_unconditional(self) -> None:
        """One line per process: this S3 store does not honour conditional writes (the read-back protocol is
        used)."""
        if not getattr(FolderLock, "_said_unconditional", False):
            FolderLock._said_unconditional = True
            self.log(f"lock {self.path}: the store does not honour conditional requests (If-None-Match and If-Match "
                     "on a write, If-Match on a delete), so its leases are written and read back instead; a writer "
                     "paused between a read of its lease and the write or delete that follows may then overwrite "
                     "or delete a new holder's lease (docs/failure-model.md)")

    @contextmanager
    def _folder_guard(self, stop: threading.Event | None = None, *, mutate: bool = True,
                      timeout: float | None = None):
        """:func:`_guard` of this lock's folder (local folders; object stores have none and yield True)."""
        if not self.local:
            yield True
            return
        with _guard(io.local_path(self.path).parent, stop, mutate=mutate, timeout=timeout) as got:
            yield got

    def _take_over(self, take_over: str | None, guard_s: float | None = None) -> bool:
        """Remove the lock file if, read again now, it may still be taken over, and log whose it was. False when
        the folder's guard stayed held for ``guard_s`` (another process is committing, or paused while it is).

        Locally the read and the removal run under :meth:`_folder_guard`: no other taker, no releasing holder, no
        heartbeat and no fenced commit can come in between, so the file removed is the one judged stale (a lock
        just created by a racing taker, or that beat meanwhile, reads differently and is kept). The caller then
        creates its own with ``O_EXCL``: of several takers, one creates it and the others find it held. On object
        stores the lease is read once more right before the delete, and deleted only if it still reads the same
        (on S3, only if its ETag is still the one read); a racing taker is settled by the conditional create
        (S3) or the lease's read-back.
        """
        with self._folder_guard(timeout=guard_s) as got:
            if not got:
                return False
            rec, fingerprint = self._read()
            reason = self._take_over_reason(rec, fingerprint, take_over) if rec is not None else None
            if reason is None:
                return True  # released meanwhile, or now held by a live writer: the caller looks again
            if self.local:
                io.local_path(self.path).unlink(missing_ok=True)
                io.fsync_dir(io.local_path(self.path).parent)
            elif self._conditional():
                _, raw, etag = self._read_lease()
                if raw != fingerprint:
                    return True  # it beat (or was replaced) meanwhile: not what was judged stale
                try:
                    lease.delete(self.path, if_match=etag)
                except lease.LeaseConflict:
                    return True  # it changed or went since that read: the caller looks again
            else:
                _, again = self._read()
                if again != fingerprint:
                    return True  # it beat (or was replaced) meanwhile: not what was judged stale
                try:
                    io.fs_delete(self.path)
                except FileNotFoundError:
                    return True  # a racing taker deleted it first: the caller looks again (its read-back settles it)
        with _HELD_GUARD:
            _SEEN.pop(self.path, None)
        self.log(f"lock {self.path}: taking over the stale lock of {self.describe(rec)} ({reason})")
        return True

    def _write_record(self, rec: dict) -> None:
        """Replace the lock file with ``rec`` whole (:func:`ser_models.io.write_bytes_atomic`: a temporary file
        renamed over it, or one PUT; its temporary name is litter that claims ignore)."""
        io.write_bytes_atomic(self.path, json.dumps(rec, sort_keys=True).encode())

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                with self._folder_guard(self._stop) as got:  # no take-over or fenced commit in between
                    if not got:
                        return  # released while we waited for the guard
                    rec, _, etag = self._read_lease() if self._conditional() else (*self._read(), None)
                    if not rec or rec.get("token") != self.token:
                        self._lost = f"now held by {self.describe(rec)}" if rec else "its lock file is gone"
                        return
                    with self._beat_guard:
                        if self._stop.is_set():
                            return  # released while we read: the lease is the release's to remove
                        self._beats = max(self._beats, int(rec.get("beat") or 0)) + 1
                        beat = {**rec, "beat": self._beats, "heartbeat_at": _now()}
                        if etag is None:
                            self._write_record(beat)
                            continue
                        try:  # only over the lease just read: a take-over since then keeps its own
                            lease.put(self.path, json.dumps(beat, sort_keys=True).encode(), if_match=etag)
                        except lease.LeaseConflict:
                            # A retried request of ours (its first try landed) and a concurrent write answer
                            # the same way: lost only if the lease now names another writer, or is gone.
                            now, _, _ = self._read_lease()
                            if not now or now.get("token") != self.token:
                                self._lost = "taken over between its read of the lease and its rewrite"
                                return
            except Exception as exc:  # noqa: BLE001 - a failed beat is retried; a fenced commit decides
                self.beat_error = f"{type(exc).__name__}: {exc}"

    def _check_token(self) -> None:
        """Raise LockLostError unless the lock file names this writer now (one small read)."""
        rec, _ = self._read()
        if self._lost or not rec or rec.get("token") != self.token:
            holder = self.describe(rec) if rec else "nobody (the lock file is gone)"
            seen = f"; its heartbeat saw it {self._lost}" if self._lost else ""  # once lost, lost for good
            raise LockLostError(f"the {self.what} {self.folder}: this writer's lock {self.path} was taken over "
                                f"(now: {holder}{seen}); stopping before the commit, nothing was committed")

    def _root(self) -> FolderLock:
        return self._outer._root() if self._outer is not None else self

    def assert_held(self) -> None:
        """Check that this writer still holds the lock (one small read). A commit uses :meth:`fenced` instead,
        which also keeps a take-over from coming between this check and the commit.

        Raises:
            LockLostError: another process took it over (or the file is gone): do not commit.
        """
        root = self._root()
        if root._depth <= 0:
            raise LockLostError(f"the {self.what} {self.folder}: this writer does not hold its lock {self.path}")
        root._check_token()

    @contextmanager
    def fenced(self):
        """``with lock.fenced(): <commit>``: the commit runs only while the lock still names this writer, under the
        guard that take-overs use (locally), so no take-over comes between the check and the commit.

        Raises:
            LockLostError: the lock was taken over (nothing inside the block ran).
        """
        root = self._root()
        with root._folder_guard(mutate=False):
            root.assert_held()
            yield self

    def release(self) -> None:
        """Give the lock up (the file is removed only while it still names this writer)."""
        if self._outer is not None:
            outer, self._outer = self._outer, None
            outer._depth -= 1
            if outer._depth <= 0:
                outer._release_file()
            return
        if self._depth <= 0:
            return
        self._depth -= 1
        if self._depth == 0:
            self._release_file()

    def _release_file(self) -> None:
        self._depth = 0
        with self._beat_guard:  # a beat that read the lease before this finds _stop set and writes nothing
            self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()  # its wait wakes on _stop; a beat waiting for the guard gives up
        with _HELD_GUARD:
            if _HELD.get(self.path) is self:
                del _HELD[self.path]
        try:
            with self._folder_guard():  # no taker replaces the file between our read and our removal
                self._remove_if_ours()
        except OSError:
            pass  # the store is gone (interpreter exit): a stale lock is taken over by the next writer
        finally:
            with _HELD_GUARD:
                _OURS.pop(self.token, None)

    def _remove_if_ours(self) -> None:
        if self._conditional():
            rec, _, etag = self._read_lease()
            if rec and rec.get("token") == self.token:
                try:
                    lease.delete(self.path, if_match=etag)
                except lease.LeaseConflict:
                    pass  # taken over since that read: the lease is its new holder's
            return
        rec, _ = self._read()
        if rec and rec.get("token") == self.token:
            if self.local:
                io.local_path(self.path).unlink(missing_ok=True)
            else:
                io.fs_delete(self.path)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@atexit.register
def _release_all() -> None:
    for lock in list(_HELD.values()):
        if lock._pid == os.getpid():  # a forked child never releases its parent's locks
            lock._release_file()


__all__ = ["DEFAULT_STALE_S", "LOCK_NAME", "MIN_STALE_S", "READ_TRIES", "SETTLE_S", "STALE_ENV", "TAKE_OVER_ENV",
           "WAIT_ENV", "FolderLock", "holder_id", "machine_identity", "stale_seconds", "take_over_holder",
           "wait_seconds"]

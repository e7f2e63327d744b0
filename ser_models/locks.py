"""One writer at a time: a lock file in each output folder (pool, run folder, feature cache, segment output).

A lock is the file ``<folder>/.ser-lock.json`` holding the holder's host, pid, thread, process start time, start
time, heartbeat time and a random owner token.

* **Local folders**: the file is created with ``os.open(O_CREAT | O_EXCL)``: of two writers exactly one
  creates it. The holder refreshes its heartbeat by touching the file (its mtime) from a daemon thread.
* **Object stores** (``s3://`` through ``pyarrow.fs``): pyarrow has no conditional put (``If-None-Match: *``)
  and the platform does not depend on boto3 at run time, so the lock is a *lease object*: written when
  absent, read back after :data:`SETTLE_S` to check that the owner token is ours (two writers that both saw
  no lease: the later PUT wins and the earlier writer sees another token and stops), refreshed by the
  heartbeat thread (which first checks that the lease still names us), and checked again by
  :meth:`FolderLock.assert_held` before every commit (ledger append, pool publish, cache shard publish). The
  remaining window (a writer whose check-to-put takes longer than :data:`SETTLE_S`) is closed at the commit
  check: a writer that lost its lease stops there with :class:`~ser_models.exceptions.LockLostError`.

A second writer stops at once with :class:`~ser_models.exceptions.LockHeldError` naming the holder. A *stale*
lock is taken over with a log line: its process is gone (same host, pid dead or reused), or its heartbeat is
older than ``$SER_LOCK_STALE_S`` seconds (default :data:`DEFAULT_STALE_S`; a host that died). To take one
holder's lock over at once (a dead host whose heartbeat is still recent), name it as the refusal prints it:
``SER_LOCK_TAKE_OVER=<host>:<pid>``; with ``ray job submit`` pass it in the runtime environment
(``--runtime-env-json '{"env_vars": {"SER_LOCK_TAKE_OVER": "node-7:4242"}}'``). Only locks of that holder are
taken over: a lock held by anyone else (the holder changed) is refused as usual, and so is a named holder whose
process is alive on this host. The old value ``1`` (take over whatever lock the job meets) is refused with a
:class:`~ser_models.exceptions.ConfigError` that explains the new form.

Locally, take-overs and releases of one folder's locks run under an ``flock`` of the folder (the kernel drops
it when its holder dies, so it never goes stale): the stale file is judged again and removed under it, then
the taker creates its own with ``O_EXCL``. Of several processes taking one stale lock over at once, exactly
one holds it afterwards; the others see the new holder.

Locks are released on exit (context manager and ``atexit``); a SIGKILL leaves the file, which the next writer on
the same host takes over at once (dead pid), on another host after the stale time.

A lock belongs to the thread that took it. The same thread may take it again (nested job stages): the inner
handle shares the outer one. Another thread of the same process is another writer: it is refused (or waits,
with ``wait_s``) like another process. A lock whose thread ended without releasing it is stale.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone

from ser_models import io
from ser_models.exceptions import ConfigError, LockHeldError, LockLostError

LOCK_NAME = ".ser-lock.json"
TAKE_OVER_ENV = "SER_LOCK_TAKE_OVER"
STALE_ENV = "SER_LOCK_STALE_S"
#: A lock whose heartbeat is older than this (s) is stale (``$SER_LOCK_STALE_S`` overrides it).
DEFAULT_STALE_S = 120.0
#: Seconds a lease writer waits before reading its lease back (object stores only).
SETTLE_S = 0.5
HOST = socket.gethostname()

#: Locks this process holds, by lock-file path (re-entry by the same thread shares them; ``held_lock_for``
#: finds them).
_HELD: dict[str, FolderLock] = {}
#: The owner tokens of this process's locks that are held or being taken, so that a lock file naming this pid is
#: never mistaken for one this process left behind while another of its threads is creating it.
_OURS: dict[str, FolderLock] = {}
_HELD_GUARD = threading.Lock()
_LEGACY_TAKE_OVER = ("1", "true", "yes", "on")


def _now() -> float:
    return time.time()


def _iso(t: float | None) -> str:
    if t is None:
        return "?"
    return datetime.fromtimestamp(float(t), timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S%z")


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (Linux; None elsewhere or when gone)."""
    try:
        with open(f"/proc/{int(pid)}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError, ValueError):
        return None


def _proc_start(pid: int) -> str | None:
    """The start tick of process ``pid``: a pid reused by another process has another one."""
    stat = _proc_stat(pid)
    return stat[19] if stat and len(stat) > 19 else None


def _pid_alive(pid: int, proc_start: str | None) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    stat = _proc_stat(pid)
    if stat and stat[0] in ("Z", "X"):  # a zombie: dead, only not yet reaped by its parent
        return False
    return proc_start is None or _proc_start(pid) in (None, proc_start)


def holder_id(rec: dict) -> str:
    """``<host>:<pid>`` of a lock record: the value ``SER_LOCK_TAKE_OVER`` takes to take that holder's locks over."""
    return f"{rec.get('host', '?')}:{rec.get('pid', '?')}"


def take_over_holder(value: object) -> str | None:
    """The holder ``SER_LOCK_TAKE_OVER`` (or ``take_over=``) names, as ``<host>:<pid>``; None when unset.

    Raises:
        ConfigError: any other value, ``1`` included (it used to take over every lock the job met, live writers
            on other hosts included), with the form to use instead.
    """
    if value is None or value is False or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip()
    host, sep, pid = text.rpartition(":")
    if isinstance(value, str) and sep and host and pid.isdigit():
        return f"{host}:{int(pid)}"
    why = ("it no longer takes over every lock the job meets (that took live writers' locks on other hosts too)"
           if isinstance(value, bool) or text.lower() in _LEGACY_TAKE_OVER else "it names no holder")
    raise ConfigError(
        f"{TAKE_OVER_ENV}={text} is not accepted: {why}. Name the writer whose locks to take over, exactly as the "
        f"'being written by another process' message prints it: {TAKE_OVER_ENV}=<host>:<pid> (for example "
        f"{TAKE_OVER_ENV}=node-7:4242), or unset {TAKE_OVER_ENV}")


def stale_seconds() -> float:
    """``$SER_LOCK_STALE_S`` or :data:`DEFAULT_STALE_S`."""
    try:
        return float(os.environ.get(STALE_ENV) or DEFAULT_STALE_S)
    except ValueError:
        return DEFAULT_STALE_S


class FolderLock:
    """The writer's lock of one folder (``with FolderLock(folder, "pool"):``).

    Args:
        folder: the folder to lock (local path or ``pyarrow.fs`` URI); created if missing.
        what: what the folder is, for messages ("pool", "run folder", ...).
        name: the lock file's name inside ``folder`` (a second lock in one folder, e.g. the ledger's).
        take_over: ``"<host>:<pid>"`` of a holder whose lock to take over at once, even while its heartbeat is
            recent (default: ``$SER_LOCK_TAKE_OVER``); a lock of any other holder is respected.
        stale_s: heartbeat age (s) after which a lock is stale (default: :func:`stale_seconds`).
        wait_s: how long to wait for a held lock before giving up (0: stop at once; short critical sections
            such as one ledger append wait a little).
        log: where the take-over line goes.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "output folder", *, name: str = LOCK_NAME,
                 take_over: str | None = None, stale_s: float | None = None, wait_s: float = 0.0, log=print):
        self.folder = io.storage_path(folder)
        self.what = what
        self.path = io.join(self.folder, name)
        self.take_over = take_over_holder(os.environ.get(TAKE_OVER_ENV) if take_over is None else take_over)
        self.thread: threading.Thread | None = None  # the owner (set when taken): other threads are other writers
        self.stale_s = stale_seconds() if stale_s is None else float(stale_s)
        self.heartbeat_s = max(0.05, min(30.0, self.stale_s / 4))
        self.wait_s = float(wait_s)
        self.log = log
        self.local = io.is_local(self.path)
        self.token = uuid.uuid4().hex
        self.started = None
        self._pid = os.getpid()
        self._outer: FolderLock | None = None
        self._depth = 0
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
        return {"host": HOST, "pid": os.getpid(), "proc_start": _proc_start(os.getpid()), "token": self.token,
                "thread": threading.current_thread().name, "started_at": self.started, "heartbeat_at": _now(),
                "what": self.what, "folder": str(self.folder)}

    def _read(self) -> tuple[dict | None, float]:
        """``(record, heartbeat age in s)``; ``(None, 0)`` when there is no lock file. A file being created
        (empty or half-written) reads as ``{}``, aged by its mtime."""
        fs, p = io.filesystem(self.path)
        info = fs.get_file_info(p)
        if info.type.name == "NotFound":
            return None, 0.0
        try:
            raw = io.read_bytes(self.path)
        except (FileNotFoundError, OSError):
            if not io.exists(self.path):
                return None, 0.0
            raw = b""
        try:
            rec = json.loads(raw.decode() or "{}")
        except ValueError:
            rec = {}
        mtime = info.mtime.timestamp() if info.mtime is not None else None
        beat = max([t for t in (rec.get("heartbeat_at"), mtime) if t is not None], default=_now())
        return rec, max(0.0, _now() - float(beat))

    def _stale(self, rec: dict, age: float) -> str | None:
        """Why ``rec`` is stale, or None while its holder looks alive."""
        if rec.get("host") == HOST and rec.get("pid") is not None:
            if int(rec["pid"]) == os.getpid():
                with _HELD_GUARD:
                    owner = _OURS.get(rec.get("token"))
                if owner is None:
                    return f"it was left by this process (pid {rec['pid']}) and is no longer held"
                if owner.thread is not None and not owner.thread.is_alive():
                    return (f"its thread {owner.thread.name!r} of this process (pid {rec['pid']}) ended without "
                            "releasing it")
            elif not _pid_alive(rec["pid"], rec.get("proc_start")):
                return f"its process {rec['pid']} on this host ({HOST}) is gone"
        if age > self.stale_s:
            return f"its heartbeat is {age:.0f} s old (stale after {self.stale_s:g} s, {STALE_ENV})"
        return None

    def _named_alive(self, rec: dict) -> bool:
        """The holder ``rec`` runs on this host and its process is alive (never taken over, even when named)."""
        return (rec.get("host") == HOST and rec.get("pid") is not None
                and _pid_alive(rec["pid"], rec.get("proc_start")))

    def _take_over_reason(self, rec: dict, age: float, take_over: str | None) -> str | None:
        """Why the lock ``rec`` (heartbeat ``age`` s old) may be taken over now, or None to respect it."""
        if not rec:  # a file being created right now, or left empty by a writer that died creating it
            return f"its file is empty and {age:.0f} s old" if age > self.stale_s else None
        stale = self._stale(rec, age)
        if stale is None and take_over is not None and holder_id(rec) == take_over and not self._named_alive(rec):
            return f"{TAKE_OVER_ENV}={take_over} names it"
        return stale

    def describe(self, rec: dict | None, age: float = 0.0) -> str:
        """The holder in words: host, pid, start time and heartbeat age."""
        if not rec:
            return "a writer that is creating the lock right now"
        thread = (f", thread {rec['thread']!r} (another thread of this process)"
                  if rec.get("host") == HOST and rec.get("pid") == os.getpid() and rec.get("thread") else "")
        return (f"host {rec.get('host', '?')}, pid {rec.get('pid', '?')}{thread}, started "
                f"{_iso(rec.get('started_at'))}, last heartbeat {age:.0f} s ago")

    def _refusal(self, rec: dict | None, age: float, take_over: str | None) -> LockHeldError:
        """The error of a writer that found ``rec`` holding the lock: who holds it, and the exact take-over key."""
        msg = (f"the {self.what} {self.folder} is being written by another process ({self.describe(rec, age)}; "
               f"lock file {self.path}). Wait for it to finish.")
        if not rec:
            return LockHeldError(msg + " Its lock file is being written right now: rerun in a moment")
        holder = holder_id(rec)
        if take_over is not None and take_over != holder:
            msg += (f" {TAKE_OVER_ENV}={take_over} is set, but the holder changed: the lock is now held by {holder}, "
                    "so nothing was taken over.")
        elif take_over is not None:
            msg += (f" {TAKE_OVER_ENV}={take_over} names it, but its process {rec.get('pid')} is alive on this host: "
                    "stop it first (a lock of a process that exited is taken over by itself).")
        if rec.get("host") == HOST and rec.get("pid") == os.getpid():
            return LockHeldError(msg + " Another thread of this process holds it: two threads are two writers")
        return LockHeldError(
            msg + f" If that process is gone (a dead host), rerun with {TAKE_OVER_ENV}={holder} to take its lock "
            f"over now; a lock whose process died on this host, or whose heartbeat is older than "
            f"{STALE_ENV}={self.stale_s:g} s, is taken over by itself")

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
        self._depth, self._pid = 1, os.getpid()
        with _HELD_GUARD:
            _HELD[self.path] = self
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lock-heartbeat {self.path}", daemon=True)
        self._thread.start()
        return self

    def _acquire_file(self) -> None:
        deadline = time.monotonic() + self.wait_s
        take_over = self.take_over
        for _attempt in range(1000):
            self.started = _now()
            if self._create():
                return
            rec, age = self._read()
            if rec is None:
                continue  # released between our create and read: try again
            if self._take_over_reason(rec, age, take_over):
                self._take_over(take_over)
                continue  # create ours; a writer that created one first wins, and we see it next
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise self._refusal(rec, age, take_over)
        raise LockHeldError(  # pragma: no cover - a lock file that keeps changing under us
            f"the {self.what} {self.folder}: could not take the lock {self.path}")

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
        if io.exists(self.path):
            return False
        io.write_bytes_atomic(self.path, data)
        time.sleep(SETTLE_S)  # a writer that also saw no lease has written by now: the last PUT wins
        rec, _ = self._read()
        return bool(rec) and rec.get("token") == self.token

    @contextmanager
    def _folder_guard(self):
        """Serialise the take-overs and releases of this folder's local locks: an exclusive ``flock`` of the
        folder (of a guard file beside the lock where folders cannot be locked). The kernel drops it when its
        holder dies, so unlike a lock file it can never be left behind."""
        p = io.local_path(self.path)
        fd = os.open(p.parent, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:  # e.g. NFS, whose flock is a POSIX lock that needs a file opened for writing
                os.close(fd)
                fd = os.open(p.with_name(f"{p.name}.guard"), os.O_RDWR | os.O_CREAT, 0o644)
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _take_over(self, take_over: str | None) -> None:
        """Remove the lock file if, read again now, it may still be taken over, and log whose it was.

        Locally the read and the removal run under :meth:`_folder_guard`: no other taker and no releasing holder
        can replace the file in between, so the file removed is the one judged stale (a lock just created by a
        racing taker is judged live and kept). The caller then creates its own with ``O_EXCL``: of several
        takers, one creates it and the others find it held. On object stores the lease is removed only while it
        still holds the token read; a racing taker is settled by the lease's read-back.
        """
        if self.local:
            with self._folder_guard():
                rec, age = self._read()
                reason = self._take_over_reason(rec, age, take_over) if rec is not None else None
                if reason is None:
                    return  # released meanwhile, or now held by a live writer: the caller looks again
                io.local_path(self.path).unlink(missing_ok=True)
                io.fsync_dir(io.local_path(self.path).parent)
        else:
            rec, age = self._read()
            reason = self._take_over_reason(rec, age, take_over) if rec is not None else None
            if reason is None:
                return
            io.fs_delete(self.path)
        self.log(f"lock {self.path}: taking over the stale lock of {self.describe(rec, age)} ({reason})")

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                rec, _ = self._read()
                if not rec or rec.get("token") != self.token:
                    self._lost = f"now held by {self.describe(rec)}" if rec else "its lock file is gone"
                    return
                with self._beat_guard:
                    if self._stop.is_set():
                        return  # released while we read: the lease is the release's to remove
                    if self.local:
                        os.utime(io.local_path(self.path))
                    else:
                        io.write_bytes_atomic(self.path, json.dumps({**rec, "heartbeat_at": _now()},
                                                                    sort_keys=True).encode())
            except Exception as exc:  # noqa: BLE001 - a failed beat is retried; assert_held decides
                self.beat_error = f"{type(exc).__name__}: {exc}"

    def assert_held(self) -> None:
        """Check, right before a commit, that this writer still holds the lock (one small read).

        Raises:
            LockLostError: another process took it over (or the file is gone): do not commit.
        """
        if self._outer is not None:
            self._outer.assert_held()
            return
        if self._depth <= 0:
            raise LockLostError(f"the {self.what} {self.folder}: this writer does not hold its lock {self.path}")
        rec, age = self._read()
        if self._lost or not rec or rec.get("token") != self.token:
            holder = self.describe(rec, age) if rec else "nobody (the lock file is gone)"
            raise LockLostError(f"the {self.what} {self.folder}: this writer's lock {self.path} was taken over "
                                f"(now: {holder}); stopping before the commit")

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
            self._thread.join()  # its wait wakes on _stop; a beat in flight ends without writing
        with _HELD_GUARD:
            if _HELD.get(self.path) is self:
                del _HELD[self.path]
        try:
            if self.local:
                with self._folder_guard():  # no taker replaces the file between our read and our unlink
                    self._remove_if_ours()
            else:
                self._remove_if_ours()
        except OSError:
            pass  # the store is gone (interpreter exit): a stale lock is taken over by the next writer
        finally:
            with _HELD_GUARD:
                _OURS.pop(self.token, None)

    def _remove_if_ours(self) -> None:
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


def held_lock_for(path: str | os.PathLike) -> FolderLock | None:
    """The lock this process holds on ``path``'s folder or the nearest folder above it (None: none)."""
    p = str(io.storage_path(path)).rstrip("/")
    best = None
    with _HELD_GUARD:
        for lock in _HELD.values():
            folder = str(lock.folder).rstrip("/")
            if (p == folder or p.startswith(folder + "/")) and (best is None or len(folder) > len(str(best.folder))):
                best = lock
    return best


def assert_held_for(path: str | os.PathLike) -> None:
    """Before a commit under ``path``: check that every lock this process holds on a folder above it is still ours.

    Raises:
        LockLostError: it was taken over.
    """
    p = str(io.storage_path(path)).rstrip("/")
    with _HELD_GUARD:
        covering = [lk for lk in _HELD.values() if p == str(lk.folder).rstrip("/")
                    or p.startswith(str(lk.folder).rstrip("/") + "/")]
    for lock in covering:  # every one: a ledger's own append lock sits inside the run folder's
        lock.assert_held()


@atexit.register
def _release_all() -> None:
    for lock in list(_HELD.values()):
        if lock._pid == os.getpid():  # a forked child never releases its parent's locks
            lock._release_file()


__all__ = ["DEFAULT_STALE_S", "LOCK_NAME", "SETTLE_S", "STALE_ENV", "TAKE_OVER_ENV", "FolderLock", "assert_held_for",
           "held_lock_for", "holder_id", "stale_seconds", "take_over_holder"]

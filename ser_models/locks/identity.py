"""Who holds a lock, and the settings that say how long a lock lives (:mod:`ser_models.locks` uses them).

A holder is named by host, boot id (``/proc/sys/kernel/random/boot_id``), PID namespace (``/proc/self/ns/pid``),
pid and the process's start tick: a pid is checked only on the same machine and namespace, and a reused pid
(another start tick) or a zombie is a holder that is gone.
"""

from __future__ import annotations

import math
import os
import socket
import time
from datetime import datetime, timezone

from ser_models.exceptions import ConfigError

TAKE_OVER_ENV = "SER_LOCK_TAKE_OVER"
STALE_ENV = "SER_LOCK_STALE_S"
WAIT_ENV = "SER_LOCK_WAIT_S"
#: A lock that a watching writer saw unchanged for this long (s) is stale (``$SER_LOCK_STALE_S`` overrides it).
DEFAULT_STALE_S = 120.0
#: The smallest ``stale_s`` accepted (s): heartbeats come every ``stale_s / 4`` (at most every
#: :data:`MAX_HEARTBEAT_S`), so a lock is stale only after at least three missed heartbeats.
MIN_STALE_S = 1.0
#: The longest interval between two heartbeats (s).
MAX_HEARTBEAT_S = 30.0
HOST = socket.gethostname()
_LEGACY_TAKE_OVER = ("1", "true", "yes", "on")
_IDENTITY: dict[int, dict] = {}


def now() -> float:
    return time.time()


def iso(t: float | None) -> str:
    if t is None:
        return "?"
    try:
        return datetime.fromtimestamp(float(t), timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S%z")
    except (OverflowError, OSError, ValueError):
        return "?"


def read_text(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def proc_stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (Linux; None elsewhere or when gone)."""
    text = read_text(f"/proc/{pid}/stat")
    try:
        return text.rsplit(")", 1)[1].split() if text else None
    except IndexError:
        return None


def proc_start(pid: int | str) -> str | None:
    """The start tick of process ``pid``: a pid reused by another process has another one."""
    stat = proc_stat(pid)
    return stat[19] if stat and len(stat) > 19 else None


def identity() -> dict:
    """This process's identity: ``host``, ``boot_id``, ``pidns``, ``pid``, ``proc_start``, and ``local_pids``
    (this process's ``/proc`` shows its own PID namespace, so other pids can be checked there)."""
    pid = os.getpid()
    found = _IDENTITY.get(pid)
    if found is None:
        try:
            pidns = os.readlink("/proc/self/ns/pid")
        except OSError:
            pidns = None
        try:
            local_pids = os.readlink("/proc/self") == str(pid)
        except OSError:
            local_pids = False
        found = {"host": HOST, "boot_id": read_text("/proc/sys/kernel/random/boot_id"), "pidns": pidns,
                 "pid": pid, "proc_start": proc_start("self"), "local_pids": local_pids}
        _IDENTITY.clear()  # a forked child is another process
        _IDENTITY[pid] = found
    return found


def machine_identity() -> dict:
    """``{"host", "boot_id", "pidns"}`` of this process: a lock record that names all three (and this process can
    see its namespace's pids) is judged by its pid here; any other by observation."""
    me = identity()
    return {k: me[k] for k in ("host", "boot_id", "pidns")}


def same_machine(rec: dict) -> bool:
    """The holder of ``rec`` runs on this machine, booted the same, in this PID namespace: its pid can be checked."""
    me = identity()
    return (me["local_pids"] and me["boot_id"] is not None and me["pidns"] is not None
            and rec.get("host") == me["host"] and rec.get("boot_id") == me["boot_id"]
            and rec.get("pidns") == me["pidns"] and isinstance(rec.get("pid"), int))


def pid_alive(pid: int, proc_start: str | None) -> bool:
    """Process ``pid`` of this PID namespace is the one that started at tick ``proc_start`` and is not a zombie."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (OverflowError, ValueError):
        return False
    except PermissionError:
        pass  # it exists (another user's): its stat still tells whether it is the same process
    stat = proc_stat(int(pid))
    if stat and stat[0] in ("Z", "X"):  # a zombie: dead, only not yet reaped by its parent
        return False
    start = stat[19] if stat and len(stat) > 19 else None
    return proc_start is None or start is None or start == str(proc_start)


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


def check_stale(value: object, name: str) -> float:
    try:
        stale = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        stale = math.nan
    if not math.isfinite(stale) or stale < MIN_STALE_S:
        raise ConfigError(
            f"{name}={value} is not accepted: a lock's stale time must be a number of seconds of at least "
            f"{MIN_STALE_S:g} (heartbeats come every stale_s/4, at most every {MAX_HEARTBEAT_S:g} s, and a lock "
            f"counts as stale only after at least three missed heartbeats); the default is {DEFAULT_STALE_S:g}")
    return stale


def stale_seconds() -> float:
    """``$SER_LOCK_STALE_S`` or :data:`DEFAULT_STALE_S`.

    Raises:
        ConfigError: a value below :data:`MIN_STALE_S`, zero or negative, or not a number.
    """
    raw = os.environ.get(STALE_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_STALE_S
    return check_stale(raw.strip(), STALE_ENV)


def wait_seconds() -> float:
    """``$SER_LOCK_WAIT_S`` (0 when unset): how long any writer may wait for a held lock at least.

    Raises:
        ConfigError: a negative value or not a number.
    """
    raw = os.environ.get(WAIT_ENV)
    if raw is None or not raw.strip():
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        wait = math.nan
    if not wait >= 0:
        raise ConfigError(f"{WAIT_ENV}={raw} is not accepted: it must be a number of seconds (0 or more) that a "
                          "writer may wait for a held lock")
    return wait


__all__ = ["DEFAULT_STALE_S", "HOST", "MAX_HEARTBEAT_S", "MIN_STALE_S", "STALE_ENV", "TAKE_OVER_ENV", "WAIT_ENV",
           "check_stale", "holder_id", "identity", "iso", "machine_identity", "now", "pid_alive", "proc_start",
           "read_text", "same_machine", "stale_seconds", "take_over_holder", "wait_seconds"]

"""Who holds a lock, and when it is stale: a holder is host + boot id + PID namespace + pid + process start time.

* A holder alive on this machine and namespace is never taken over, however old its heartbeat (a paused
  process resumes with its lock); a dead pid, a reused pid (another start time) or a zombie is gone at once.
* A record of the same host name with another boot id or PID namespace (a container, a cloned VM) is another
  machine: its pid means nothing here, so it is judged by observation only.
* Observation, never clocks: a lock of another machine is stale only once the writer watched it unchanged for
  ``stale_s`` on its own monotonic clock, whatever time its heartbeat (or the file's mtime) claims.
* An empty lock file (a writer half-way through creating it) is respected until watched unchanged for
  ``stale_s``.
* ``/proc`` read right: the stat fields of a process whose name holds ``)``, the start tick ``/proc`` shows, a pid
  checked with signal 0 only, a holder whose ``/proc`` entry is hidden, dead (``X``) and zombie states.
* Which lock covers a path however the folder is spelled; what a writer that lost its lock, or let it go, is
  told; a forked child forgets its parent's folder guards.
* ``SER_LOCK_STALE_S`` below the minimum, zero, negative or not a number is a ConfigError.

The holders are real processes (``python -c``) or lock files crafted as another machine would write them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ser_models.exceptions import ConfigError, LockHeldError, LockLostError
from ser_models.locks import (
    LOCK_NAME,
    MIN_STALE_S,
    STALE_ENV,
    TAKE_OVER_ENV,
    WAIT_ENV,
    FolderLock,
    held_lock_for,
    machine_identity,
)
from ser_models.locks import guard as lock_guard
from ser_models.locks import identity as lock_identity
from ser_models.locks.identity import pid_alive, proc_start, proc_stat
from ser_models.testing import beating_lock

ROOT = Path(__file__).resolve().parents[2]
# Holds the lock (stale after 1 s), then commits under it once ``go`` exists, and says how that went.
HOLD_THEN_COMMIT = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from ser_models.exceptions import LockLostError
from ser_models.io import write_json_atomic
from ser_models.locks import FolderLock, fenced_for
lock = FolderLock({folder!r}, "pool", stale_s=1.0).acquire()
print("held", flush=True)
while not Path({go!r}).exists():
    time.sleep(0.02)
try:
    with fenced_for({folder!r} + "/summary.json"):
        write_json_atomic({folder!r} + "/summary.json", {{"token": lock.token}})
    print("committed", lock.token, flush=True)
except LockLostError as exc:
    print("stopped:", exc, flush=True)
"""


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for name in (TAKE_OVER_ENV, STALE_ENV, WAIT_ENV):
        monkeypatch.delenv(name, raising=False)


def _write_lock(folder: Path, **fields) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rec = {"token": "t" * 32, "started_at": time.time(), "heartbeat_at": time.time(), "beat": 0, **fields}
    (folder / LOCK_NAME).write_text(json.dumps(rec))
    return rec


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def _start_tick(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


def test_a_paused_holder_on_this_machine_is_never_taken_over_and_commits_after_it_resumes(tmp_path):
    folder, go = tmp_path / "pool", tmp_path / "go"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_THEN_COMMIT.format(root=str(ROOT), folder=str(folder),
                                                                          go=str(go))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held", proc.stderr.read()
        proc.send_signal(signal.SIGSTOP)  # alive, but no heartbeat from now on
        t0 = time.monotonic()
        with pytest.raises(LockHeldError, match=f"process {proc.pid} is alive on this host") as err:
            FolderLock(folder, "pool", stale_s=1.0, wait_s=2.5).acquire()  # watches it 2.5 x stale_s
        assert time.monotonic() - t0 >= 2.5 and "never taken over" in str(err.value)
        with pytest.raises(LockHeldError, match="alive on this host: stop it first"):  # naming it changes nothing
            FolderLock(folder, "pool", stale_s=1.0, take_over=f"{socket.gethostname()}:{proc.pid}").acquire()
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == proc.pid
        proc.send_signal(signal.SIGCONT)
        go.touch()
        out, err_text = proc.communicate(timeout=60)
        assert out.splitlines()[-1].startswith("committed"), (out, err_text)
        token = out.split()[-1]
        assert json.loads((folder / "summary.json").read_text()) == {"token": token}
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("other", ["boot id", "pid namespace", "a record without them"])
def test_a_record_of_this_host_from_another_boot_or_pid_namespace_is_not_judged_by_its_pid(tmp_path, other):
    """Its pid is this process's own (the pid of a process in another namespace may be anything): it is neither
    'left by this process' nor, with a dead pid, gone; it is watched like another machine's."""
    me = machine_identity()
    rec = {**me, "pid": os.getpid(), "proc_start": "1"}
    if other == "boot id":
        rec["boot_id"] = "00000000-0000-4000-8000-000000000000"
    elif other == "pid namespace":
        rec["pidns"] = "pid:[1]"
    else:  # a lock written before boot id and namespace were recorded
        del rec["boot_id"], rec["pidns"]
    for name, pid in (("a", os.getpid()), ("b", _dead_pid())):  # our own pid, and a pid that is dead here
        _write_lock(tmp_path / name, **{**rec, "pid": pid})
        lines = []
        t0 = time.monotonic()
        with FolderLock(tmp_path / name, "pool", stale_s=1.0, log=lines.append):  # watched 1 s: stale
            assert time.monotonic() - t0 >= 1.0
        assert len(lines) == 2 and "cannot check: watching it" in lines[0] and "has not changed for" in lines[1]
        assert not any("left by this process" in line or "is gone" in line for line in lines)
    _write_lock(tmp_path / "c", **rec)
    with beating_lock(tmp_path / "c" / LOCK_NAME), pytest.raises(LockHeldError, match="another machine") as err:
        FolderLock(tmp_path / "c", "pool", stale_s=1.0).acquire()
    assert f"{TAKE_OVER_ENV}={socket.gethostname()}:{os.getpid()}" in str(err.value)


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def test_a_reused_pid_is_not_the_live_holder(tmp_path):
    """A record naming a live pid with another start time is a process that is gone (its pid reused); with the
    right start time it is the live holder and is refused. (Fails if the start time were ignored.)"""
    me = machine_identity()
    proc = _sleeper()
    try:
        tick = _start_tick(proc.pid)
        _write_lock(tmp_path / "live", **me, pid=proc.pid, proc_start=tick)
        with pytest.raises(LockHeldError, match=f"process {proc.pid} is alive on this host"):
            FolderLock(tmp_path / "live", "pool", stale_s=1.0).acquire()
        _write_lock(tmp_path / "reused", **me, pid=proc.pid, proc_start=str(int(tick) - 1))
        lines = []
        with FolderLock(tmp_path / "reused", "pool", stale_s=1.0, log=lines.append):  # at once: no wait_s
            pass
        assert len(lines) == 1 and f"its process {proc.pid} on this host" in lines[0] and "is gone" in lines[0]
    finally:
        proc.kill()
        proc.wait()
    # This process's own pid with another start time: an earlier process that had our pid, not us.
    _write_lock(tmp_path / "own", **me, pid=os.getpid(), proc_start="1")
    lines = []
    with FolderLock(tmp_path / "own", "pool", stale_s=1.0, log=lines.append):
        pass
    assert len(lines) == 1 and "is gone" in lines[0]


ZOMBIE = ("import os, sys; sys.path.insert(0, {root!r}); from ser_models.locks import FolderLock; "
          "FolderLock({folder!r}, 'pool').acquire(); print('held', flush=True); sys.stdin.readline(); os._exit(0)")


def test_a_zombie_holder_is_gone(tmp_path):
    folder = tmp_path / "pool"
    proc = subprocess.Popen([sys.executable, "-c", ZOMBIE.format(root=str(ROOT), folder=str(folder))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        proc.stdin.write("\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 30  # it exits without releasing; unreaped (no wait), it is a zombie
        while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        lines = []
        with FolderLock(folder, "pool", stale_s=1.0, log=lines.append):
            pass
        assert len(lines) == 1 and f"its process {proc.pid}" in lines[0] and "is gone" in lines[0]
    finally:
        proc.kill()
        proc.wait()


def test_an_empty_lock_file_is_respected_until_watched_unchanged_for_stale_s(tmp_path):
    folder = tmp_path / "pool"
    folder.mkdir()
    (folder / LOCK_NAME).write_bytes(b"")  # a writer between creating its lock file and writing it

    def finish_creating():  # ... which it does 0.3 s later (a writer of another machine)
        time.sleep(0.3)
        (folder / LOCK_NAME).write_text(json.dumps({"host": "node-7", "pid": 1, "token": "n" * 32}))

    import threading

    writer = threading.Thread(target=finish_creating)
    writer.start()
    with pytest.raises(LockHeldError, match="host node-7"):
        FolderLock(folder, "pool", stale_s=1.0).acquire()
    writer.join()
    (folder / LOCK_NAME).write_bytes(b"")  # one that died creating it
    lines = []
    with FolderLock(folder, "pool", stale_s=1.0, log=lines.append) as lock:
        assert json.loads((folder / LOCK_NAME).read_text())["token"] == lock.token
    assert len(lines) == 2 and "empty and has not changed" in lines[1]


# Another machine's holder that keeps beating (its ``beat`` counter), while its clock, and the mtime its file
# server gives the file, are a million seconds off ours in either direction.
BEATER = """
import json, os, sys, time
path, skew = sys.argv[1], float(sys.argv[2])
rec = json.loads(open(path).read())
while True:
    rec["beat"] += 1
    rec["heartbeat_at"] = time.time() + skew
    with open(path + ".tmp", "w") as fh:
        fh.write(json.dumps(rec))
    os.utime(path + ".tmp", (time.time() + skew, time.time() + skew))
    os.replace(path + ".tmp", path)
    time.sleep(0.25)
"""


def _node7_lock(folder: Path, skew: float) -> dict:
    beat = time.time() + skew
    rec = _write_lock(folder, host="node-7", boot_id="b" * 36, pidns="pid:[4026531836]", pid=4242,
                      proc_start="99", started_at=beat - 60, heartbeat_at=beat)
    os.utime(folder / LOCK_NAME, (beat, beat))
    return rec


def test_a_lock_of_another_machine_that_keeps_beating_is_never_taken_over_whatever_its_clock(tmp_path):
    folder = tmp_path / "run"
    rec = _node7_lock(folder, skew=-1e6)  # its clock, and its file's mtime, 11 days behind ours
    beater = subprocess.Popen([sys.executable, "-c", BEATER, str(folder / LOCK_NAME), "-1e6"])
    try:
        with pytest.raises(LockHeldError, match="host node-7, pid 4242") as err:
            FolderLock(folder, "run folder", stale_s=1.0, wait_s=3.0).acquire()  # watched 3 x stale_s
        assert "it is alive" in str(err.value)
        assert json.loads((folder / LOCK_NAME).read_text())["token"] == rec["token"]
    finally:
        beater.kill()
        beater.wait()


def test_a_frozen_lock_of_another_machine_whose_heartbeat_is_in_the_future_is_taken_over_after_watching(tmp_path):
    folder = tmp_path / "run"
    _node7_lock(folder, skew=+1e6)  # its clock 11 days ahead: by clocks it would beat "in the future" forever
    lines = []
    t0 = time.monotonic()
    with FolderLock(folder, "run folder", stale_s=1.0, log=lines.append):  # a writer that may not wait watches
        pass
    assert 1.0 <= time.monotonic() - t0 < 5
    assert len(lines) == 2 and "node-7" in lines[1] and "has not changed for" in lines[1]


def test_the_wait_variable_lets_a_writer_watch_a_lock_and_take_it_over(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    _node7_lock(folder, skew=0)
    monkeypatch.setenv(WAIT_ENV, "3")
    lines = []
    with FolderLock(folder, "run folder", stale_s=1.0, log=lines.append):
        pass
    assert len(lines) == 1 and "has not changed for" in lines[0]  # within its own wait: no watching line


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", str(MIN_STALE_S / 2)])
def test_a_stale_time_below_the_minimum_or_not_a_number_is_a_config_error(tmp_path, monkeypatch, value):
    monkeypatch.setenv(STALE_ENV, value)
    with pytest.raises(ConfigError, match=rf"{STALE_ENV}={value} is not accepted: .* at least {MIN_STALE_S:g}"):
        FolderLock(tmp_path, "pool")
    monkeypatch.delenv(STALE_ENV)
    if value != "abc":
        with pytest.raises(ConfigError, match=f"stale_s={float(value)} is not accepted"):
            FolderLock(tmp_path, "pool", stale_s=float(value))


@pytest.mark.parametrize("stale", [MIN_STALE_S, 7.0, 120.0, 3600.0])
def test_every_accepted_stale_time_outlives_three_heartbeats(stale):
    lock = FolderLock("/nonexistent-folder", "pool", stale_s=stale)
    assert lock.stale_s >= 3 * lock.heartbeat_s and lock.heartbeat_s > 0


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_a_bad_wait_variable_is_a_config_error(tmp_path, monkeypatch, value):
    monkeypatch.setenv(WAIT_ENV, value)
    with pytest.raises(ConfigError, match=f"{WAIT_ENV}={value} is not accepted"):
        FolderLock(tmp_path, "pool")


# A process whose command name (``comm``, the field in parentheses of /proc/<pid>/stat) holds ") (" twice.
NAMED = ("import ctypes, sys, time; ctypes.CDLL(None).prctl(15, b'a) b) c', 0, 0, 0); "
         "print('ready', flush=True); time.sleep(60)")


def _fields(pid: int) -> list[str]:
    """The stat fields after the command name, parsed here without the module: what ``proc_stat`` must return."""
    with open(f"/proc/{pid}/stat") as fh:
        text = fh.read()
    return text[text.rindex(")") + 1:].split()


@pytest.fixture
def named_child():
    proc = subprocess.Popen([sys.executable, "-c", NAMED], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_the_stat_fields_of_a_process_whose_name_holds_parentheses_start_after_the_last_one(named_child):
    with open(f"/proc/{named_child.pid}/stat") as fh:
        assert "(a) b) c)" in fh.read()
    fields = proc_stat(named_child.pid)
    assert fields == _fields(named_child.pid)
    assert fields[0] in ("S", "R") and int(fields[1]) == os.getpid()  # state, then the parent's pid
    assert proc_start(named_child.pid) == fields[19]


def test_a_gone_process_has_no_stat_and_no_start_tick():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid is free
    assert proc_stat(proc.pid) is None
    assert proc_start(proc.pid) is None
    assert pid_alive(proc.pid, None) is False


def test_this_process_start_tick_is_the_one_proc_shows():
    assert proc_start(os.getpid()) == _fields(os.getpid())[19]
    assert proc_start("self") == _fields(os.getpid())[19]


def test_checking_a_live_pid_sends_it_no_signal(named_child):
    start = proc_start(named_child.pid)
    assert pid_alive(named_child.pid, start) is True
    assert pid_alive(named_child.pid, None) is True  # a record without a start tick: the pid alone
    assert pid_alive(named_child.pid, str(int(start) + 1)) is False  # another process with this pid
    time.sleep(0.2)
    assert named_child.poll() is None  # signal 0 only: a SIGHUP would have ended it


@pytest.mark.parametrize("stat, alive", [
    (None, True),  # /proc hides the pid (hidepid, another mount): alive by the signal check alone
    ("(python) S " + " ".join(["1"] * 18), True),  # 19 fields: too short to hold a start tick
    ("(python) S " + " ".join(["1"] * 18) + " 777", False),  # 20 fields: tick 777, not the holder's 555
    ("(python) X " + " ".join(["1"] * 18) + " 555", False),  # dead, not yet gone from /proc
    ("(python) Z " + " ".join(["1"] * 18) + " 555", False),  # a zombie
    ("(python) x " + " ".join(["1"] * 18) + " 555", True),  # states are upper case: not the dead state
])
def test_a_holder_is_judged_by_its_stat_line(monkeypatch, stat, alive):
    real = lock_identity.read_text
    monkeypatch.setattr(lock_identity, "read_text",
                        lambda path: (f"{os.getpid()} {stat}" if stat else None) if path.endswith("/stat") else real(path))
    assert pid_alive(os.getpid(), "555") is alive


@pytest.mark.parametrize("fields, start", [(19, None), (20, "t19"), (21, "t19")])
def test_a_start_tick_needs_twenty_fields(monkeypatch, fields, start):
    line = "9 (p) " + " ".join(f"t{i}" for i in range(fields))
    monkeypatch.setattr(lock_identity, "read_text", lambda path: line)
    assert proc_start(9) == start


@pytest.mark.parametrize("spelling", ["{d}/runX", "{d}/runX/"])
def test_a_held_lock_covers_its_folder_and_what_is_below_it_however_spelled(tmp_path, spelling):
    lock = FolderLock(spelling.format(d=tmp_path), "run folder").acquire()
    try:
        for path in (f"{tmp_path}/runX", f"{tmp_path}/runX/", f"{tmp_path}/runX/labels/ledger.parquet"):
            assert held_lock_for(path) is lock, path
        assert held_lock_for(f"{tmp_path}/run") is None
        assert held_lock_for(f"{tmp_path}/runXY/summary.json") is None
    finally:
        lock.release()


def test_a_writer_whose_lock_file_is_gone_is_told_nobody_holds_it(tmp_path):
    with FolderLock(tmp_path, "run folder") as lock:
        (tmp_path / LOCK_NAME).unlink()
        with pytest.raises(LockLostError, match=r"was taken over \(now: nobody \(the lock file is gone\)\); "
                                                r"stopping before the commit, nothing was committed"):
            lock.assert_held()


def test_a_writer_whose_lock_was_taken_is_told_who_holds_it_now(tmp_path):
    with FolderLock(tmp_path, "run folder") as lock:
        (tmp_path / LOCK_NAME).write_text(json.dumps({"host": "node-9", "pid": 41, "token": "t" * 32}))
        with pytest.raises(LockLostError, match=r"\(now: host node-9, pid 41, started \?, last heartbeat \?"):
            lock.assert_held()


def test_a_writer_that_lost_its_lock_once_has_lost_it_even_when_its_record_comes_back(tmp_path):
    """The heartbeat found another holder: whatever the file says later (a copy restored by hand), this writer's
    work may have interleaved with the other's, so it never commits again."""
    lock = FolderLock(tmp_path, "run folder", stale_s=1.0).acquire()
    try:
        path = tmp_path / LOCK_NAME
        ours = path.read_bytes()
        path.write_text(json.dumps({"host": "node-9", "pid": 41, "token": "t" * 32}))
        deadline = time.monotonic() + 10
        while lock._lost is None:
            assert time.monotonic() < deadline, "the heartbeat never saw the other holder"
            time.sleep(0.05)
        path.write_bytes(ours)
        with pytest.raises(LockLostError, match=r"was taken over \(now: host .*; its heartbeat saw it now held by "
                                                r"host node-9, pid 41, started \?"):
            lock.assert_held()
    finally:
        lock.release()


def test_a_nested_hold_is_checked_through_the_outer_one_and_a_released_one_is_not_held(tmp_path):
    outer = FolderLock(tmp_path, "run folder").acquire()
    inner = FolderLock(tmp_path, "run folder").acquire()  # the same thread: nested stages share the hold
    inner.assert_held()
    inner.release()
    outer.assert_held()
    outer.release()
    with pytest.raises(LockLostError, match=r"this writer does not hold its lock .*\.ser-lock\.json$"):
        outer.assert_held()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_forgets_its_parents_guards_and_takes_its_own(tmp_path):
    """The child closes its copies of the parent's guard fds and starts with no guards, so a guard of its own
    works (and the parent's flock stays the parent's)."""
    other = tmp_path / "other"
    other.mkdir()
    with FolderLock(tmp_path / "run", "run folder") as lock, lock.fenced():
        fds = [g.fd for g in lock_guard._FOLDER_GUARDS.values() if g.fd is not None]
        assert fds
        pid = os.fork()
        if pid == 0:  # the child: report by exit code only
            code = 0
            try:
                for fd in fds:
                    try:
                        os.fstat(fd)
                        code |= 1  # the parent's guard fd is still open here
                    except OSError:
                        pass
                if lock_guard._FOLDER_GUARDS:
                    code |= 2
                with lock_guard.folder_guard(other, timeout=5) as got:
                    code |= 0 if got else 4
            except BaseException:  # noqa: BLE001 - any failure is a failed test, reported by the exit code
                code |= 8
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        os.fstat(fds[0])  # the parent's own fd is untouched


# -- the guard, the record and the words ------------------------------------------------------------------------


def test_where_a_folder_cannot_be_flocked_the_guard_locks_a_file_in_it(tmp_path, monkeypatch):
    """NFS: ``flock`` of a folder fails (a POSIX lock needs a file open for writing), so the guard locks
    ``.ser-lock.json.guard`` in the folder instead."""
    import errno
    import fcntl
    import stat

    real = fcntl.flock

    def no_folder_locks(fd, flags):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.ENOLCK, "No locks available")
        return real(fd, flags)

    monkeypatch.setattr(lock_guard.fcntl, "flock", no_folder_locks)
    with lock_guard.folder_guard(tmp_path) as got:
        assert got
        assert (tmp_path / lock_guard.GUARD_NAME).is_file()


def test_a_thread_waiting_for_another_threads_guard_gives_up_as_soon_as_it_is_stopped(tmp_path):
    """Thread A is taking the guard (another process holds the flock); thread B waits for A. B's stop (a
    heartbeat being released) ends its wait at once, not when A is done."""
    import threading

    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
                               "os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); "
                               "time.sleep(60)", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        taking, stop, outcome = threading.Event(), threading.Event(), []

        def a():
            with lock_guard.folder_guard(tmp_path, timeout=8) as got:
                outcome.append(("a", got))

        def b():
            with lock_guard.folder_guard(tmp_path, stop=stop) as got:
                outcome.append(("b", got))

        ta = threading.Thread(target=a, daemon=True)
        ta.start()
        time.sleep(0.3)  # A is now retrying the flock, as this process's taker
        tb = threading.Thread(target=b, daemon=True)
        tb.start()
        time.sleep(0.3)
        stop.set()
        tb.join(3)
        assert not tb.is_alive() and outcome == [("b", False)]
        assert not taking.is_set()
    finally:
        holder.kill()
        holder.wait()
    ta.join(10)
    assert ("a", True) in outcome


def test_forgetting_guards_drops_every_guard_and_gives_a_new_mutex(tmp_path):
    with lock_guard.folder_guard(tmp_path):
        pass  # leaves this folder's entry, with no fd held
    assert lock_guard._FOLDER_GUARDS
    old = lock_guard._FOLDER_GUARDS_LOCK
    lock_guard.forget_guards()
    assert lock_guard._FOLDER_GUARDS == {} and lock_guard._FOLDER_GUARDS_LOCK is not old
    with lock_guard.folder_guard(tmp_path) as got:
        assert got


def test_a_pid_namespace_that_cannot_be_read_is_none(monkeypatch):
    real = os.readlink

    def readlink(path, *a, **kw):
        if str(path) == "/proc/self/ns/pid":
            raise PermissionError(path)
        return real(path, *a, **kw)

    monkeypatch.setattr(lock_identity.os, "readlink", readlink)
    monkeypatch.setattr(lock_identity, "_IDENTITY", {})
    me = lock_identity.identity()
    assert me["pidns"] is None and me["pid"] == os.getpid()
    assert not lock_identity.same_machine({**me, "pid": os.getpid()})  # without a namespace, never by pid


@pytest.mark.parametrize("value", [None, False, "", "   "])
def test_an_unset_or_blank_take_over_names_nobody(value):
    assert lock_identity.take_over_holder(value) is None


def test_a_lock_says_what_it_guards_and_where_in_its_record(tmp_path):
    folder = tmp_path / "a" / "b" / "pool"  # the parents do not exist yet
    lock = FolderLock(folder).acquire()
    try:
        assert lock.what == "output folder"
        path = folder / LOCK_NAME
        rec = json.loads(path.read_text())
        assert rec["what"] == "output folder" and rec["folder"] == str(folder)
        assert rec["beat"] == 0 and rec["token"] == lock.token
        assert path.stat().st_mode & 0o777 == 0o644 & ~_umask()
        names = {t.name for t in __import__("threading").enumerate()}
        assert f"lock-heartbeat {lock.path}" in names
    finally:
        lock.release()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_each_heartbeat_counts_and_stamps_the_record(tmp_path):
    lock = FolderLock(tmp_path, "pool", stale_s=1.0).acquire()  # a beat every 0.25 s
    try:
        first = json.loads((tmp_path / LOCK_NAME).read_text())
        deadline = time.monotonic() + 10
        while (rec := json.loads((tmp_path / LOCK_NAME).read_text()))["beat"] < 2:
            assert time.monotonic() < deadline, "no two heartbeats in 10 s"
            time.sleep(0.05)
        assert set(rec) == set(first)  # the same fields, rewritten
        assert rec["heartbeat_at"] > first["heartbeat_at"] and rec["started_at"] == first["started_at"]
    finally:
        lock.release()


def test_a_refusal_by_an_empty_lock_file_says_how_long_it_was_watched(tmp_path):
    """The refusal counts the seconds the file read the same (the writer's own watch), never a clock of the file."""
    lock = FolderLock(tmp_path, "pool", stale_s=30)
    fingerprint = (b"", 1, 0, 0)
    lock._watch(fingerprint)
    time.sleep(0.6)
    message = str(lock._refusal({}, fingerprint, None))
    assert re.search(r"empty, unchanged for [1-9]\d* s of the 30 s after which it counts as abandoned\): rerun in "
                     r"a moment", message), message
    assert "unchanged for 0 s" in str(lock._refusal({}, (b"", 2, 0, 0), None))  # another file: not watched yet


def test_a_holder_is_described_by_host_boot_and_namespace():
    me = machine_identity()
    lock = FolderLock("/nonexistent/pool", "pool")
    assert lock.describe({}) == "a writer that is creating the lock right now"
    unchecked = {**me, "pid": "12"}  # this host, boot and namespace, but a pid this process cannot check
    assert lock.describe(unchecked).startswith(f"host {me['host']} (its pid cannot be checked from this process), "
                                               "pid 12, started ?")
    other_boot = {**me, "boot_id": "another-boot", "pid": 12}
    assert lock.describe(other_boot).startswith(f"host {me['host']} (another boot or PID namespace of this host), "
                                                "pid 12")
    assert lock.describe({"pid": 7}).startswith("host ?, pid 7, started ?, last heartbeat ? by its clock")
    assert lock.describe({"host": "node-9", "pid": 7}).startswith("host node-9, pid 7, started ?")

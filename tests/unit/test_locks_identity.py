"""Who holds a lock, and when it is stale: a holder is host + boot id + PID namespace + pid + process start time.

* A holder alive on this machine and namespace is never taken over, however old its heartbeat (a paused
  process resumes with its lock); a dead pid, a reused pid (another start time) or a zombie is gone at once.
* A record of the same host name with another boot id or PID namespace (a container, a cloned VM) is another
  machine: its pid means nothing here, so it is judged by observation only.
* Observation, never clocks: a lock of another machine is stale only once the writer watched it unchanged for
  ``stale_s`` on its own monotonic clock, whatever time its heartbeat (or the file's mtime) claims.
* An empty lock file (a writer half-way through creating it) is respected until watched unchanged for
  ``stale_s``.
* ``SER_LOCK_STALE_S`` below the minimum, zero, negative or not a number is a ConfigError.

The holders are real processes (``python -c``) or lock files crafted as another machine would write them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ser_models.exceptions import ConfigError, LockHeldError
from ser_models.locks import (
    LOCK_NAME,
    MIN_STALE_S,
    STALE_ENV,
    TAKE_OVER_ENV,
    WAIT_ENV,
    FolderLock,
    machine_identity,
)
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

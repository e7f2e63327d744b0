"""Taking a lock over: only the holder the user names (``SER_LOCK_TAKE_OVER=<host>:<pid>``, printed by the
refusal), never a holder that changed since, never a live process on this host; and a stale lock that several
processes take over at the same moment (a dead pid at once; an empty file or a lock of another machine once
watched unchanged for ``stale_s``) has exactly one new holder.

The racers are real processes (``multiprocessing``) on real files.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ser_models.exceptions import ConfigError, LockHeldError
from ser_models.locks import LOCK_NAME, TAKE_OVER_ENV, FolderLock, machine_identity
from ser_models.testing import beating_lock

ROOT = Path(__file__).resolve().parents[2]


def _foreign_lock(folder: Path, host: str = "another-host", pid: int = 4242, heartbeat_age: float = 1.0) -> dict:
    """A lock file of a writer on another host (its pid cannot be checked), last beating ``heartbeat_age`` s ago."""
    folder.mkdir(parents=True, exist_ok=True)
    beat = time.time() - heartbeat_age
    rec = {"host": host, "pid": pid, "token": f"{host}-{pid}".ljust(32, "t"), "started_at": beat - 60,
           "heartbeat_at": beat}
    path = folder / LOCK_NAME
    path.write_text(json.dumps(rec))
    os.utime(path, (beat, beat))
    return rec


def _pasted_key(message: str) -> str:
    """The ``SER_LOCK_TAKE_OVER=...`` value a refusal tells the user to paste."""
    found = re.findall(rf"{TAKE_OVER_ENV}=(\S+?)(?=[\s;,)]|$)", message)
    assert found, message
    return found[-1]


def test_the_refusal_prints_the_holder_to_paste_and_that_value_takes_only_it_over(tmp_path, monkeypatch):
    monkeypatch.delenv(TAKE_OVER_ENV, raising=False)
    _foreign_lock(tmp_path / "f")
    with beating_lock(tmp_path / "f" / LOCK_NAME), pytest.raises(LockHeldError) as err:
        FolderLock(tmp_path / "f", "pool").acquire()  # alive elsewhere: it beat while this writer watched
    value = _pasted_key(str(err.value))
    assert value == "another-host:4242"
    monkeypatch.setenv(TAKE_OVER_ENV, value)
    lines = []
    with FolderLock(tmp_path / "f", "pool", log=lines.append):
        assert json.loads((tmp_path / "f" / LOCK_NAME).read_text())["host"] == socket.gethostname()
    assert len(lines) == 1 and f"{TAKE_OVER_ENV}={value}" in lines[0] and "another-host" in lines[0]


def test_a_take_over_key_naming_another_holder_takes_nothing_and_says_the_holder_changed(tmp_path, monkeypatch):
    rec = _foreign_lock(tmp_path / "f", pid=4243)  # the writer named below is gone; another one holds it now
    monkeypatch.setenv(TAKE_OVER_ENV, "another-host:4242")
    with beating_lock(tmp_path / "f" / LOCK_NAME), pytest.raises(LockHeldError) as err:
        FolderLock(tmp_path / "f", "pool").acquire()
    message = str(err.value)
    assert "holder changed" in message and "another-host:4242" in message
    assert _pasted_key(message) == "another-host:4243"
    assert json.loads((tmp_path / "f" / LOCK_NAME).read_text())["token"] == rec["token"]  # nothing taken over


@pytest.mark.parametrize("value", ["1", "true", "yes", "node-7"])
def test_the_old_take_everything_value_is_an_error_that_explains_the_new_form(tmp_path, monkeypatch, value):
    _foreign_lock(tmp_path / "f")
    monkeypatch.setenv(TAKE_OVER_ENV, value)
    with pytest.raises(ConfigError, match=rf"{TAKE_OVER_ENV}=<host>:<pid>") as err:
        FolderLock(tmp_path / "f", "pool").acquire()
    assert f"{TAKE_OVER_ENV}={value}" in str(err.value)
    assert json.loads((tmp_path / "f" / LOCK_NAME).read_text())["host"] == "another-host"
    with pytest.raises(ConfigError, match="<host>:<pid>"):
        FolderLock(tmp_path / "g", "pool", take_over=True)


HOLD = ("import sys, time; sys.path.insert(0, {root!r}); from ser_models.locks import FolderLock; "
        "lock = FolderLock({folder!r}, 'pool').acquire(); print('held', flush=True); time.sleep(120)")


def test_a_named_holder_that_is_alive_on_this_host_is_not_taken_over(tmp_path, monkeypatch):
    monkeypatch.delenv(TAKE_OVER_ENV, raising=False)
    folder = tmp_path / "pool"
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(root=str(ROOT), folder=str(folder))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        monkeypatch.setenv(TAKE_OVER_ENV, f"{socket.gethostname()}:{proc.pid}")
        with pytest.raises(LockHeldError, match=f"process {proc.pid} is alive on this host"):
            FolderLock(folder, "pool").acquire()
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()


# -- several processes taking one stale lock over at the same moment ------------------------------------------

def _racer(folder: str, start, hold, results, index: int, wait_s: float) -> None:
    """Take ``folder``'s lock when every racer is ready (waiting up to ``wait_s``); report the token won (None:
    refused); hold it until every racer has reported."""
    from ser_models.locks import FolderLock

    start.wait()
    try:
        lock = FolderLock(folder, "pool", wait_s=wait_s, log=lambda line: None).acquire()
    except LockHeldError:
        results.put((index, None))
        hold.wait()
        return
    results.put((index, lock.token))
    hold.wait()
    lock.release()


def _stale_lock(folder: Path, kind: str, dead_pid: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    if kind == "empty":  # a writer that died between creating its lock file and writing it
        path.write_bytes(b"")
        old = time.time() - 600
        os.utime(path, (old, old))
    elif kind == "dead pid":  # a process of this machine and PID namespace that is gone
        path.write_text(json.dumps({**machine_identity(), "pid": dead_pid, "token": "d" * 32,
                                    "started_at": time.time(), "heartbeat_at": time.time()}))
    else:
        _foreign_lock(folder, heartbeat_age=600)


@pytest.mark.parametrize("kind", ["empty", "dead pid", "old heartbeat"])
def test_racing_take_overs_of_one_stale_lock_leave_exactly_one_holder(tmp_path, monkeypatch, kind):
    """A dead pid of this machine is stale at once; an empty file and a lock of another machine only once every
    racer has watched it unchanged for ``stale_s`` (1 s here), so the racers wait a little longer than that."""
    monkeypatch.delenv(TAKE_OVER_ENV, raising=False)
    monkeypatch.setenv("SER_LOCK_STALE_S", "1")
    ctx = multiprocessing.get_context("fork")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    racers, rounds, wait_s = (4, 12, 0.0) if kind == "dead pid" else (4, 3, 1.6)
    for r in range(rounds):
        folder = tmp_path / f"pool{r}"
        _stale_lock(folder, kind, dead.pid)
        start, hold, results = ctx.Barrier(racers), ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_racer, args=(str(folder), start, hold, results, i, wait_s))
                 for i in range(racers)]
        for p in procs:
            p.start()
        try:
            won = [t for _, t in (results.get(timeout=120) for _ in procs) if t is not None]
            on_disk = json.loads((folder / LOCK_NAME).read_text()).get("token")
        finally:
            hold.set()
            for p in procs:
                p.join(120)
        assert len(won) == 1 and on_disk == won[0], f"round {r}: {len(won)} racers believe they hold the lock"
        assert all(p.exitcode == 0 for p in procs)
        assert not (folder / LOCK_NAME).exists()  # the one holder released it
        assert sorted(os.listdir(folder)) == []  # no set-aside copies left behind

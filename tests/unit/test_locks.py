"""One writer at a time on local folders: a second writer is refused naming the holder, stale locks are taken
over (dead pid, old heartbeat, the take-over key naming the holder), and a writer whose lock was taken over stops before committing.

The holders are real processes (``python -c``) that take the lock through the library and wait.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ser_models.exceptions import LockHeldError, LockLostError
from ser_models.locks import LOCK_NAME, TAKE_OVER_ENV, FolderLock, assert_held_for, held_lock_for

ROOT = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time; sys.path.insert(0, {root!r}); from ser_models.locks import FolderLock; "
        "lock = FolderLock({folder!r}, 'pool').acquire(); print('held', flush=True); time.sleep(120)")


def _holder(folder: Path) -> subprocess.Popen:
    """A process that holds ``folder``'s lock until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(root=str(ROOT), folder=str(folder))],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_naming_the_holder_and_takes_over_once_it_died(tmp_path):
    folder = tmp_path / "pool"
    proc = _holder(folder)
    try:
        with pytest.raises(LockHeldError) as err:
            FolderLock(folder, "pool").acquire()
        message = str(err.value)
        assert f"pid {proc.pid}" in message and f"host {socket.gethostname()}" in message and "started " in message
        assert f"{TAKE_OVER_ENV}={socket.gethostname()}:{proc.pid}" in message and str(folder) in message
    finally:
        proc.kill()
        proc.wait()
    lines = []
    with FolderLock(folder, "pool", log=lines.append) as lock:  # its pid is gone: taken over with a line
        lock.assert_held()
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert len(lines) == 1 and f"pid {proc.pid}" in lines[0] and "is gone" in lines[0]
    assert not (folder / LOCK_NAME).exists()  # released


def _foreign_lock(folder: Path, heartbeat_age: float) -> dict:
    """A lock file of a writer on another host (its pid cannot be checked), last beating ``heartbeat_age`` s ago."""
    folder.mkdir(parents=True, exist_ok=True)
    beat = time.time() - heartbeat_age
    rec = {"host": "another-host", "pid": 4242, "token": "t" * 32, "started_at": beat - 60, "heartbeat_at": beat}
    path = folder / LOCK_NAME
    path.write_text(json.dumps(rec))
    os.utime(path, (beat, beat))
    return rec


def test_a_lock_with_an_old_heartbeat_is_taken_over_and_a_fresh_one_is_not(tmp_path):
    _foreign_lock(tmp_path / "fresh", heartbeat_age=5)
    with pytest.raises(LockHeldError, match="host another-host, pid 4242"):
        FolderLock(tmp_path / "fresh", "run folder", stale_s=120).acquire()
    _foreign_lock(tmp_path / "old", heartbeat_age=600)
    lines = []
    with FolderLock(tmp_path / "old", "run folder", stale_s=120, log=lines.append):
        pass
    assert len(lines) == 1 and "heartbeat is 600 s old" in lines[0] and "another-host" in lines[0]


def test_the_take_over_key_naming_the_holder_takes_its_live_looking_lock(tmp_path, monkeypatch):
    _foreign_lock(tmp_path / "f", heartbeat_age=1)
    monkeypatch.setenv(TAKE_OVER_ENV, "another-host:4242")
    lines = []
    with FolderLock(tmp_path / "f", "pool", log=lines.append):
        assert json.loads((tmp_path / "f" / LOCK_NAME).read_text())["host"] == socket.gethostname()
    assert len(lines) == 1 and TAKE_OVER_ENV in lines[0]


def test_a_writer_whose_lock_was_taken_over_stops_before_its_commit(tmp_path):
    lock = FolderLock(tmp_path, "feature cache").acquire()
    try:
        assert held_lock_for(tmp_path / "sub" / "meta.json") is lock
        assert_held_for(tmp_path / "meta.json")
        (tmp_path / LOCK_NAME).write_text(json.dumps({"host": "h2", "pid": 1, "token": "other", "started_at": 0}))
        with pytest.raises(LockLostError, match="taken over"):
            assert_held_for(tmp_path / "meta.json")
    finally:
        lock.release()
    assert (tmp_path / LOCK_NAME).exists()  # the new holder's file is never removed by the old holder


def test_a_process_may_take_a_lock_it_holds_again(tmp_path):
    with FolderLock(tmp_path, "pool") as outer:
        with FolderLock(tmp_path, "pool") as inner:
            assert inner.token == outer.token
        assert (tmp_path / LOCK_NAME).exists()  # the outer hold goes on
        outer.assert_held()
    assert not (tmp_path / LOCK_NAME).exists()

"""One writer at a time on local folders: a second writer is refused naming the holder, stale locks are taken
over (dead pid, a lock of another host watched unchanged for ``stale_s``, the take-over key naming the holder),
and a writer whose lock was taken over stops before committing.

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
from ser_models.testing import beating_lock

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


def test_a_lock_of_another_host_is_taken_over_only_once_watched_unchanged_for_stale_s(tmp_path):
    """Its heartbeat time (600 s ago by its own clock) is no reason: only what this writer watched counts. A
    writer that may not wait still watches such a lock, up to stale_s, and takes it over when it stays still."""
    _foreign_lock(tmp_path / "f", heartbeat_age=600)
    lines = []
    t0 = time.monotonic()
    with FolderLock(tmp_path / "f", "run folder", stale_s=1, log=lines.append):
        waited = time.monotonic() - t0
        assert json.loads((tmp_path / "f" / LOCK_NAME).read_text())["host"] == socket.gethostname()
    assert 1.0 <= waited < 5
    assert len(lines) == 2 and "watching it for up to 1 s" in lines[0] and "another-host" in lines[0]
    assert "has not changed for" in lines[1] and "another-host" in lines[1]


def test_a_lock_of_another_host_that_beats_while_watched_is_refused_as_alive(tmp_path):
    _foreign_lock(tmp_path / "f", heartbeat_age=600)  # its clock 600 s behind ours: no reason either way
    with beating_lock(tmp_path / "f" / LOCK_NAME):
        t0 = time.monotonic()
        with pytest.raises(LockHeldError, match="host another-host, pid 4242") as err:
            FolderLock(tmp_path / "f", "run folder", stale_s=30).acquire()
        assert time.monotonic() - t0 < 10  # refused at its first beat, not after stale_s
    assert "it is alive" in str(err.value) and f"{TAKE_OVER_ENV}=another-host:4242" in str(err.value)
    assert json.loads((tmp_path / "f" / LOCK_NAME).read_text())["host"] == "another-host"


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


def test_a_holder_that_beats_slowly_is_watched_for_four_of_its_own_heartbeats(tmp_path):
    """A holder started with the default stale time beats every 30 s; a taker whose own stale time is 1 s must
    not take it over between two of its beats."""
    rec = _foreign_lock(tmp_path / "f", heartbeat_age=0)
    (tmp_path / "f" / LOCK_NAME).write_text(json.dumps({**rec, "heartbeat_s": 0.5}))  # beats every 0.5 s
    lines = []
    t0 = time.monotonic()
    with FolderLock(tmp_path / "f", "run folder", stale_s=1, log=lines.append):  # frozen: taken after 4 x 0.5 s
        waited = time.monotonic() - t0
    assert waited >= 2.0 and "watching it for up to 2 s" in lines[0] and "no heartbeat for 2 s" in lines[1]


def test_a_lease_on_an_object_store_is_written_read_back_refused_to_a_second_writer_and_removed(s3_bucket):
    from ser_models import io

    folder = f"{s3_bucket}/pool"
    with FolderLock(folder, "pool") as lock:
        rec = json.loads(io.read_bytes(f"{folder}/{LOCK_NAME}"))
        assert rec["token"] == lock.token and rec["folder"] == folder and rec["what"] == "pool"
        assert lock._read()[0] == rec
        assert_held_for(f"{folder}/summary.json")
        with pytest.raises(LockHeldError, match=f"pid {os.getpid()}.*Another thread of this process holds it"):
            _in_thread(lambda: FolderLock(folder, "pool", wait_s=0).acquire())
    assert not io.exists(f"{folder}/{LOCK_NAME}")
    assert FolderLock(folder, "pool")._read() == (None, None)


def _in_thread(fn):
    """Run ``fn`` in another thread (another writer of this process) and raise what it raised."""
    import threading

    box = []
    thread = threading.Thread(target=lambda: box.append(_call(fn)))
    thread.start()
    thread.join(60)
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def _call(fn):
    try:
        return fn()
    except BaseException as exc:  # noqa: BLE001 - handed back to the test's thread
        return exc


def test_a_lock_file_that_vanishes_between_every_create_and_read_is_given_up_on(tmp_path, monkeypatch):
    """A lock file that exists when this writer creates its own and is gone when it reads (a writer creating and
    releasing in a tight loop) is retried without a pause, and given up on after 1,000 tries, naming the file."""
    tries = []
    monkeypatch.setattr(FolderLock, "_create", lambda self: tries.append(1) and False)
    monkeypatch.setattr(FolderLock, "_read", lambda self: (None, None))
    with pytest.raises(LockHeldError, match=rf"the pool {tmp_path}: could not take the lock {tmp_path}/\.ser-lock"):
        FolderLock(tmp_path, "pool", wait_s=0).acquire()
    assert len(tries) == 1001


HOLDER = ("import sys, time; sys.path.insert(0, {root!r}); from ser_models.locks import FolderLock; "
          "FolderLock({folder!r}, 'pool').acquire(); print('held', flush=True); time.sleep(60)")


def test_a_live_holder_on_this_host_is_refused_in_full_words(tmp_path):
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=root, folder=str(tmp_path))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LockHeldError, match=rf"Its process {proc.pid} is alive on this host, so its lock is never "
                                                r"taken over while it runs, even when paused and even with "
                                                rf"{TAKE_OVER_ENV}=.*: stop it, and the next writer takes its lock "
                                                r"over by itself$"):
            FolderLock(tmp_path, "pool", wait_s=0).acquire()
    finally:
        proc.kill()
        proc.wait()


def test_a_second_thread_is_refused_in_full_words(tmp_path):
    with FolderLock(tmp_path, "pool"):
        with pytest.raises(LockHeldError, match=r"Another thread of this process holds it: two threads are two "
                                                r"writers$"):
            _in_thread(lambda: FolderLock(tmp_path, "pool", wait_s=0).acquire())


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_lock_whose_folder_guard_stays_held_is_not_taken_over(tmp_path, monkeypatch):
    """A taker waits for the folder's guard (a commit in progress) only so long, then stops and takes nothing."""
    from ser_models.locks import folder_lock as locks
    from ser_models.locks import machine_identity

    monkeypatch.setattr(locks, "GUARD_WAIT_S", 0.5)
    lease = {**machine_identity(), "pid": _dead_pid(), "token": "d" * 32}
    (tmp_path / LOCK_NAME).write_text(json.dumps(lease))
    guard = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
                              "os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); "
                              "time.sleep(60)", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert guard.stdout.readline().strip() == "held"
        with pytest.raises(LockHeldError, match=r"may be taken over \(its process \d+ on this host .* is gone\), but "
                                                r"the folder's guard stayed held by another process"):
            FolderLock(tmp_path, "pool", wait_s=0).acquire()
        assert json.loads((tmp_path / LOCK_NAME).read_text()) == lease
    finally:
        guard.kill()
        guard.wait()


def test_a_stale_lease_on_an_object_store_is_taken_over_once_read_unchanged(s3_bucket):
    from ser_models import io
    from ser_models.locks import machine_identity

    folder = f"{s3_bucket}/pool"
    io.write_bytes_atomic(f"{folder}/{LOCK_NAME}", json.dumps(
        {**machine_identity(), "pid": _dead_pid(), "token": "d" * 32}).encode())
    lines = []
    with FolderLock(folder, "pool", wait_s=5, log=lines.append) as lock:
        assert json.loads(io.read_bytes(f"{folder}/{LOCK_NAME}"))["token"] == lock.token
    assert len(lines) == 1 and "taking over the stale lock" in lines[0] and "is gone" in lines[0]


def test_a_lock_of_another_machine_is_watched_for_the_whole_stale_time_before_it_is_taken(tmp_path):
    """Watching starts at zero: a frozen lock of another machine is taken only after stale_s of watching."""
    (tmp_path / LOCK_NAME).write_text(json.dumps({"host": "node-9", "pid": 41, "token": "t" * 32}))
    lines, start = [], time.monotonic()
    with FolderLock(tmp_path, "pool", stale_s=1.0, wait_s=0, log=lines.append):
        waited = time.monotonic() - start
    assert waited >= 0.95, waited
    assert any("has not changed for" in line for line in lines)

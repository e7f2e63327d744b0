"""Locks on an object store (the moto S3 server): a lease object, read back before it counts, refreshed by a
heartbeat, checked before every commit; a second writer is refused naming the holder, and a stale lease (dead
pid on this host, or a lease of another machine watched unchanged for stale_s) is taken over with a log line; a
paused holder on this host is never taken over. Ledger appends from two processes on S3 keep every row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ser_models import io
from ser_models.data.ledger import LabelLedger
from ser_models.exceptions import LockHeldError
from ser_models.locks import LOCK_NAME, FolderLock, assert_held_for

ROOT = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time; sys.path.insert(0, {root!r}); from ser_models.locks import FolderLock; "
        "lock = FolderLock({folder!r}, 'pool').acquire(); print('held', flush=True); time.sleep(120)")


def test_a_lease_refuses_a_second_writer_and_is_taken_over_once_its_process_died(s3_bucket):
    folder = f"{s3_bucket}/pool"
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(root=str(ROOT), folder=folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert proc.stdout.readline().strip() == "held", proc.stderr.read()
        with pytest.raises(LockHeldError, match=f"pid {proc.pid}, started "):
            FolderLock(folder, "pool").acquire()
    finally:
        proc.kill()
        proc.wait()
    lines = []
    with FolderLock(folder, "pool", log=lines.append) as lock:
        assert io.read_json(f"{folder}/{LOCK_NAME}")["token"] == lock.token
        assert_held_for(f"{folder}/summary.json")
    assert len(lines) == 1 and f"its process {proc.pid}" in lines[0]
    assert not io.exists(f"{folder}/{LOCK_NAME}")  # released


# Holds a lease, then (once ``check`` exists) commits under fenced_for, as a pool publish does.
HANG = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from ser_models.exceptions import LockLostError
from ser_models.io import write_json_atomic
from ser_models.locks import FolderLock, fenced_for
lock = FolderLock({folder!r}, "feature cache", stale_s=1.0).acquire()
print("held", os.readlink("/proc/self"), flush=True)
while not Path({check!r}).exists():
    time.sleep(0.05)
try:
    with fenced_for({folder!r} + "/meta.json"):
        write_json_atomic({folder!r} + "/meta.json", {{"token": lock.token}})
    print("committed", lock.token, flush=True)
except LockLostError as exc:
    print("stopped:", exc, flush=True)
"""
NAMESPACE = ["unshare", "--pid", "--fork", "--user", "--map-root-user", "--kill-child"]


def _hang(folder: str, check, namespace: bool) -> tuple[subprocess.Popen, int]:
    code = HANG.format(root=str(ROOT), folder=folder, check=str(check))
    proc = subprocess.Popen([*(NAMESPACE if namespace else []), sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    first = proc.stdout.readline().split()
    if namespace and not first:
        proc.wait()
        pytest.skip(f"the kernel refused a user + PID namespace: {proc.stderr.read()[-300:]}")
    assert first and first[0] == "held", proc.stderr.read()
    return proc, int(first[1])


def test_a_paused_lease_holder_on_this_host_is_never_taken_over_and_commits_after_it_resumes(s3_bucket, tmp_path):
    import signal

    folder, check = f"{s3_bucket}/cache", tmp_path / "check"
    proc, pid = _hang(folder, check, namespace=False)
    try:
        proc.send_signal(signal.SIGSTOP)  # alive on this host, its heartbeat stops
        with pytest.raises(LockHeldError, match=f"process {pid} is alive on this host"):
            FolderLock(folder, "feature cache", stale_s=1.0, wait_s=2.5).acquire()
        proc.send_signal(signal.SIGCONT)
        check.touch()
        out, err = proc.communicate(timeout=60)
        assert out.startswith("committed"), (out, err)
        assert io.read_json(f"{folder}/meta.json") == {"token": out.split()[-1]}
    finally:
        proc.kill()
        proc.wait()


def test_a_lease_read_while_its_holder_rewrites_it_reads_whole(s3_bucket):
    """A read that meets a heartbeat's overwrite (moto answers some with torn bytes) is retried, never read as an
    empty lease: a holder's fenced commit would stop on its own live lease, and a waiter would count it empty."""
    lock = FolderLock(f"{s3_bucket}/pool", "pool", stale_s=1.0).acquire()
    stop, torn = threading.Event(), []
    rec = lock._read()[0]
    lock._stop.set()  # the rewrites below play the heartbeat: the real one (whose writes are conditional on
    lock._thread.join()  # the lease it read) would find the lease changed under it, and its lock lost

    def rewrite():
        n = 0
        while not stop.is_set():
            n += 1
            lock._write_record({**rec, "beat": n})

    thread = threading.Thread(target=rewrite, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            got, _ = lock._read()
            if not got or got.get("token") != lock.token:
                torn.append(got)
        lock.assert_held()
    finally:
        stop.set()
        thread.join()
        lock.release()
    assert torn == []


def test_a_lease_that_cannot_be_read_stops_the_waiter_and_is_kept(s3_bucket, monkeypatch):
    """A lease whose reads keep failing raises the store's error after the retries; it is not read as an empty
    lease (which is taken over once it stays empty for stale_s)."""
    folder = f"{s3_bucket}/pool"
    lease = json.dumps({"host": "node-7", "pid": 99, "token": "x" * 32, "heartbeat_s": 0.25}).encode()
    io.write_bytes_atomic(f"{folder}/{LOCK_NAME}", lease)
    calls = []

    def failing(uri):
        calls.append(uri)
        raise OSError("AWS Error SLOW_DOWN (HTTP status 503)")

    monkeypatch.setattr(io, "read_bytes", failing)
    with pytest.raises(OSError, match=r"lock file .*\.ser-lock\.json exists but could not be read \(5 tries\): "
                                      r"AWS Error SLOW_DOWN"):
        FolderLock(folder, "pool", stale_s=1.0, wait_s=0).acquire()
    assert len(calls) == 5
    monkeypatch.undo()
    assert io.read_bytes(f"{folder}/{LOCK_NAME}") == lease


def test_a_paused_lease_holder_of_another_pid_namespace_is_taken_over_after_watching_and_commits_nothing(
        s3_bucket, tmp_path):
    """To this process a holder in another PID namespace is another machine: its lease, unchanged for stale_s
    while watched, is taken over, and the old holder, resumed, stops at its fenced commit."""
    import signal

    folder, check = f"{s3_bucket}/cache", tmp_path / "check"
    proc, pid = _hang(folder, check, namespace=True)
    try:
        os.kill(pid, signal.SIGSTOP)
        lines = []
        with FolderLock(folder, "feature cache", stale_s=1.0, wait_s=10, log=lines.append) as new:
            assert len(lines) == 1 and "has not changed for" in lines[0]
            with new.fenced():
                io.write_json_atomic(f"{folder}/meta.json", {"token": new.token})
            check.touch()
            os.kill(pid, signal.SIGCONT)
            out, err = proc.communicate(timeout=60)
            assert out.startswith("stopped:") and "taken over" in out, (out, err)
            assert io.read_json(f"{folder}/meta.json") == {"token": new.token}
            new.assert_held()  # the old holder's release left the new lease alone
    finally:
        proc.kill()
        proc.wait()


def test_a_fresh_lease_of_another_host_is_refused_until_the_take_over_key(s3_bucket):
    folder = f"{s3_bucket}/run"
    io.write_bytes_atomic(f"{folder}/{LOCK_NAME}", json.dumps(
        {"host": "node-7", "pid": 99, "token": "x" * 32, "started_at": time.time(), "heartbeat_at": time.time()}
    ).encode())
    stop = threading.Event()

    def beat():  # node-7 is alive: it rewrites its lease with a new beat every 0.3 s
        n = 0
        while not stop.wait(0.3):
            n += 1
            rec = json.loads(io.read_bytes(f"{folder}/{LOCK_NAME}"))
            if rec.get("host") != "node-7":
                return
            io.write_bytes_atomic(f"{folder}/{LOCK_NAME}", json.dumps({**rec, "beat": n}).encode())

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        with pytest.raises(LockHeldError, match="host node-7, pid 99.*it is alive"):
            FolderLock(folder, "run folder", stale_s=10).acquire()
    finally:
        stop.set()
        thread.join()
    lines = []
    with FolderLock(folder, "run folder", take_over="node-7:99", log=lines.append):
        pass
    assert len(lines) == 1 and "node-7" in lines[0]


APPENDER = """
import sys
sys.path.insert(0, {root!r})
from ser_models.data.ledger import LabelLedger
ledger = LabelLedger({path!r})
for k in range({n}):
    ledger.append(0, ["{name}%d" % k], ["happy"], oracle="{name}")
"""


def test_ledger_appends_from_two_processes_on_s3_keep_every_row(s3_bucket):
    path = f"{s3_bucket}/run/labels/ledger.parquet"
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER.format(root=str(ROOT), path=path, name=n, n=4)],
                              stderr=subprocess.PIPE, text=True, env=dict(os.environ)) for n in ("x", "y")]
    for proc in procs:
        assert proc.wait(180) == 0, proc.stderr.read()
    assert LabelLedger(path).ids() == {f"{n}{k}" for n in "xy" for k in range(4)}

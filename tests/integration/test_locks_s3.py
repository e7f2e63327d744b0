"""Locks on an object store (the moto S3 server): a lease object, read back before it counts, refreshed by a
heartbeat, checked before every commit; a second writer is refused naming the holder, and a stale lease (dead
pid on this host, or an old heartbeat) is taken over with a log line. Ledger appends from two processes on S3
keep every row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


# Holds a lease, then (once woken after a SIGSTOP) checks it before its commit, as a pool publish does.
HANG = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from ser_models.exceptions import LockLostError
from ser_models.locks import FolderLock
lock = FolderLock({folder!r}, "feature cache", stale_s=1.0).acquire()
print("held", flush=True)
while not Path({check!r}).exists():
    time.sleep(0.05)
try:
    lock.assert_held()
    print("committed", flush=True)
except LockLostError as exc:
    print("stopped:", exc, flush=True)
"""


def test_a_lease_whose_heartbeat_stopped_is_taken_over_and_its_old_holder_stops_before_committing(s3_bucket,
                                                                                                  tmp_path):
    import signal

    folder, check = f"{s3_bucket}/cache", tmp_path / "check"
    proc = subprocess.Popen([sys.executable, "-c", HANG.format(root=str(ROOT), folder=folder, check=str(check))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert proc.stdout.readline().strip() == "held", proc.stderr.read()
        proc.send_signal(signal.SIGSTOP)  # a hung writer: alive on this host, its heartbeat stops
        time.sleep(1.5)
        lines = []
        with FolderLock(folder, "feature cache", stale_s=1.0, log=lines.append) as new:
            assert len(lines) == 1 and "heartbeat is" in lines[0] and f"pid {proc.pid}" in lines[0]
            check.touch()
            proc.send_signal(signal.SIGCONT)
            out, err = proc.communicate(timeout=60)
            assert out.startswith("stopped:") and "taken over" in out, (out, err)
            new.assert_held()  # the old holder's release left the new lease alone
    finally:
        proc.kill()
        proc.wait()


def test_a_fresh_lease_of_another_host_is_refused_until_the_take_over_key(s3_bucket):
    folder = f"{s3_bucket}/run"
    io.write_bytes_atomic(f"{folder}/{LOCK_NAME}", json.dumps(
        {"host": "node-7", "pid": 99, "token": "x" * 32, "started_at": time.time(), "heartbeat_at": time.time()}
    ).encode())
    with pytest.raises(LockHeldError, match="host node-7, pid 99"):
        FolderLock(folder, "run folder").acquire()
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

"""Fencing: a commit runs inside ``fenced_for(path)`` (or ``lock.fenced()``), which checks that every lock this
process holds above ``path`` still names this writer and keeps take-overs out until the commit is done.

* A writer whose lock was taken over while it was paused before its commit commits nothing (LockLostError), and
  the file holds the new holder's commit.
* A take-over that comes while a fenced commit is in progress waits for it: the commit lands before the
  take-over, never after.
* ``fenced_for`` is a no-op without a covering lock, re-entrant, and never starves the holder's own heartbeat.

A live holder on this machine is never taken over, so the writers that lose their locks here run in a PID
namespace of their own (``unshare --pid --fork --user --map-root-user``): to this process they are another
machine. Where the kernel refuses user namespaces, those tests are skipped with the reason.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ser_models.exceptions import LockLostError
from ser_models.io import write_json_atomic
from ser_models.locks import LOCK_NAME, STALE_ENV, TAKE_OVER_ENV, WAIT_ENV, FolderLock, fenced_for
from ser_models.testing import PID_NAMESPACE, pid_namespace_refused

ROOT = Path(__file__).resolve().parents[2]




def _needs_namespace() -> None:
    why = pid_namespace_refused()
    if why:
        pytest.skip(why)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for name in (TAKE_OVER_ENV, STALE_ENV, WAIT_ENV):
        monkeypatch.delenv(name, raising=False)


# A writer (in its own PID namespace) that holds the lock, says so with its pid as this machine sees it, then
# commits ``summary.json`` under fenced_for each time a line arrives on stdin ("sleep" first: a slow commit).
WRITER = """
import os, sys, time
sys.path.insert(0, {root!r})
from ser_models.exceptions import LockLostError
from ser_models.io import write_json_atomic
from ser_models.locks import FolderLock, fenced_for
folder = {folder!r}
lock = FolderLock(folder, "pool", stale_s=1.0).acquire()
print("held", os.readlink("/proc/self"), os.getpid(), flush=True)
for n, line in enumerate(sys.stdin):
    try:
        with fenced_for(folder + "/summary.json"):
            if line.strip() == "sleep":
                print("committing", flush=True)
                time.sleep(2.5)
            write_json_atomic(folder + "/summary.json", {{"token": lock.token, "n": n}})
        print("committed", lock.token, flush=True)
    except LockLostError as exc:
        print("stopped:", exc, flush=True)
"""


def _pause_outside_its_guard(pid: int, folder: Path) -> None:
    """SIGSTOP ``pid`` at a moment it does not hold ``folder``'s guard (a pause inside the guard, mid-heartbeat,
    would only make a taker wait for it to resume)."""
    while True:
        os.kill(pid, signal.SIGSTOP)
        fd = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)
        finally:
            os.close(fd)


class _Writer:
    def __init__(self, folder: Path):
        code = WRITER.format(root=str(ROOT), folder=str(folder))
        self.proc = subprocess.Popen([*PID_NAMESPACE, sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline().split()
        assert first and first[0] == "held", self.proc.stderr.read()
        self.pid, self.ns_pid = int(first[1]), int(first[2])  # as this machine sees it; inside its namespace

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read(self) -> str:
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def test_a_writer_whose_lock_was_taken_over_while_paused_before_its_commit_commits_nothing(tmp_path):
    _needs_namespace()
    folder = tmp_path / "pool"
    writer = _Writer(folder)
    try:
        writer.send("commit")
        assert writer.read().startswith("committed")
        _pause_outside_its_guard(writer.pid, folder)  # paused before its next commit: a laptop lid, a VM migration
        lines = []
        with FolderLock(folder, "pool", stale_s=1.0, wait_s=10, log=lines.append) as new:
            assert len(lines) == 1 and "has not changed for" in lines[0]  # watched unchanged for stale_s
            with new.fenced():
                write_json_atomic(folder / "summary.json", {"token": new.token})
            os.kill(writer.pid, signal.SIGCONT)
            writer.send("commit")  # the old writer resumes and tries its commit
            answer = writer.read()
            assert answer.startswith("stopped:") and "nothing was committed" in answer, answer
            assert json.loads((folder / "summary.json").read_text()) == {"token": new.token}
            new.assert_held()
    finally:
        writer.close()


def test_a_take_over_waits_for_a_fenced_commit_in_progress(tmp_path):
    _needs_namespace()
    folder = tmp_path / "pool"
    writer = _Writer(folder)
    try:
        writer.send("sleep")  # a commit that takes 2.5 s inside its fence
        assert writer.read() == "committing"
        lines = []
        holder = f"{socket.gethostname()}:{writer.ns_pid}"
        with FolderLock(folder, "pool", stale_s=1.0, take_over=holder, log=lines.append) as new:
            # The take-over waited for the guard: the old writer's commit is in, and it came first.
            assert json.loads((folder / "summary.json").read_text())["n"] == 0
            assert writer.read().startswith("committed")
            assert len(lines) == 1 and f"{TAKE_OVER_ENV}={holder}" in lines[0]
            writer.send("commit")
            assert writer.read().startswith("stopped:")
            assert json.loads((folder / "summary.json").read_text())["n"] == 0
            with new.fenced():
                write_json_atomic(folder / "summary.json", {"token": new.token})
    finally:
        writer.close()


def test_a_lost_lock_fails_its_fenced_commit_and_runs_nothing(tmp_path):
    calls = []
    with FolderLock(tmp_path, "run folder") as lock:
        with fenced_for(tmp_path / "labels" / "ledger.parquet"):
            calls.append("ok")
        (tmp_path / LOCK_NAME).write_text(json.dumps({"host": "h2", "pid": 1, "token": "other"}))
        with pytest.raises(LockLostError, match="taken over .*nothing was committed"):
            with fenced_for(tmp_path / "summary.json"):
                calls.append("committed")  # never runs
        with pytest.raises(LockLostError):
            with lock.fenced():
                calls.append("committed")
    assert calls == ["ok"]
    assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == "other"


def test_fenced_for_without_a_covering_lock_is_a_no_op(tmp_path):
    with FolderLock(tmp_path / "a", "pool"):
        with fenced_for(tmp_path / "b" / "summary.json"):
            pass  # b is not under a
    with fenced_for(tmp_path / "summary.json"):
        pass


def test_fenced_for_is_reentrant_and_never_starves_the_holders_heartbeat(tmp_path):
    """Nested fences over two locks (a run folder's and its ledger's), a release inside a fence, and a fence held
    for several heartbeats: no deadlock, and the heartbeat goes on meanwhile."""
    run = tmp_path / "run"
    with FolderLock(run, "run folder", stale_s=1.0) as outer:
        ledger_lock = FolderLock(run / "labels", "label ledger", name=".ledger.parquet.lock").acquire()
        with fenced_for(run / "labels" / "ledger.parquet"):
            with fenced_for(run / "summary.json"):
                with outer.fenced():
                    before = json.loads((run / LOCK_NAME).read_text())["beat"]
                    time.sleep(4 * outer.heartbeat_s)  # a slow commit
                    assert json.loads((run / LOCK_NAME).read_text())["beat"] >= before + 2
            ledger_lock.release()  # a release inside a fence (of the same folder's guard) does not wait for itself
        assert not (run / "labels" / ".ledger.parquet.lock").exists()
        done = threading.Event()

        def other_thread():
            with fenced_for(run / "x"):
                done.set()

        with outer.fenced():  # another thread of this process fences the same folder meanwhile: it shares it
            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join(30)
            assert done.is_set()

"""How a lock reads its holder from ``/proc`` and from its own record: the stat line of a process whose name holds
``)``, a start tick compared with the one ``/proc`` shows, a pid checked without a signal that reaches it, a
holder whose ``/proc`` entry cannot be read, a dead (``X``) or zombie state; which lock covers a path however
the folder is spelled; what a writer that lost its lock, or let it go, is told; a forked child's guards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ser_models import lock_guard, lock_identity
from ser_models.exceptions import LockLostError
from ser_models.lock_identity import pid_alive, proc_start, proc_stat
from ser_models.locks import LOCK_NAME, FolderLock, held_lock_for

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
        with pytest.raises(LockLostError, match="was taken over"):
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

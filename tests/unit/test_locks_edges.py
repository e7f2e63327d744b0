"""Edges of the lock code that a random sample of mutants showed no test reached: the take-over key's shape and
its refusal, the record's process start (what tells a reused pid from its holder), holds released out of order,
a lease that keeps failing to read, and the fds of the folder guard on a filesystem whose ``flock`` refuses
directories (NFS)."""

from __future__ import annotations

import errno
import fcntl
import json
import os

import pyarrow.fs as pafs
import pytest

from ser_models.exceptions import ConfigError
from ser_models.locks import LOCK_NAME, FolderLock, lock_file
from ser_models.locks import guard as lock_guard
from ser_models.locks.identity import identity, take_over_holder


def _fds_on(path) -> set[int]:
    """This process's fds open on ``path`` (other threads' fds, e.g. Ray's, never point into a test's folder)."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == str(path):
                fds.add(int(name))
        except OSError:  # closed meanwhile
            pass
    return fds


@pytest.mark.parametrize("value", ["node-7:", ":42", "node-7", "node-7:4x"])
def test_a_take_over_key_needs_a_host_and_a_pid(value):
    with pytest.raises(ConfigError, match=f"={value} is not accepted: it names no holder"):
        take_over_holder(value)


def test_the_old_take_over_all_value_is_refused_saying_why_and_a_key_is_normalised():
    with pytest.raises(ConfigError, match="=1 is not accepted: it no longer takes over every lock the job meets"):
        take_over_holder("1")
    assert take_over_holder(" node-7:0042 ") == "node-7:42"


def test_a_lock_record_names_its_holders_process_start(tmp_path):
    """The start time is what tells the holder from a later process that reuses its pid."""
    with FolderLock(tmp_path, "pool"):
        rec = json.loads((tmp_path / LOCK_NAME).read_text())
    me = identity()
    assert me["proc_start"] is not None
    assert (rec["pid"], rec["proc_start"]) == (os.getpid(), me["proc_start"])


def test_holds_released_out_of_order_keep_the_file_until_the_last_one(tmp_path):
    outer = FolderLock(tmp_path, "run folder").acquire()
    middle = FolderLock(tmp_path, "run folder").acquire()
    inner = FolderLock(tmp_path, "run folder").acquire()
    inner.release()
    outer.release()  # the outer handle first: one hold (the middle one) is left
    assert (tmp_path / LOCK_NAME).exists() and middle.held
    middle.assert_held()
    middle.release()
    assert not (tmp_path / LOCK_NAME).exists() and not middle.held


def test_a_lease_that_keeps_failing_to_read_raises_naming_it_and_the_stores_error(monkeypatch):
    class Info:
        type = pafs.FileType.File

    class Store:
        def get_file_info(self, path):
            return Info()

    def throttled(path):
        raise OSError("SlowDown: please reduce your request rate")

    monkeypatch.setattr(lock_file.io, "filesystem", lambda path: (Store(), "bucket/run/.ser-lock.json"))
    monkeypatch.setattr(lock_file.io, "read_bytes", throttled)
    monkeypatch.setattr(lock_file.time, "sleep", lambda s: None)
    with pytest.raises(OSError, match=r"^the lock file s3://bucket/run/\.ser-lock\.json exists but could not be read "
                                      r"\(5 tries\): SlowDown: please reduce your request rate$"):
        lock_file.read_lease("s3://bucket/run/.ser-lock.json")


@pytest.fixture
def nfs_flock(monkeypatch):
    """``flock`` that refuses directories, as NFS does on a directory opened read-only."""
    real = fcntl.flock

    def flock(fd, flags):
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOLCK, "No locks available")
        return real(fd, flags)

    monkeypatch.setattr(lock_guard.fcntl, "flock", flock)


def test_a_directory_flock_refused_falls_back_to_the_guard_file_and_leaks_no_fd(tmp_path, nfs_flock):
    fd = lock_guard._guard_fd(tmp_path, True)
    try:
        assert _fds_on(tmp_path / lock_guard.GUARD_NAME) == {fd}
        assert _fds_on(tmp_path) == set()  # the directory's fd was closed
    finally:
        os.close(fd)


def test_a_guard_held_elsewhere_is_reported_busy_and_leaks_no_fd(tmp_path, nfs_flock):
    holder = os.open(tmp_path / lock_guard.GUARD_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another open file description holds the guard file
        assert lock_guard._guard_fd(tmp_path, False) is None
        assert _fds_on(tmp_path / lock_guard.GUARD_NAME) == {holder} and _fds_on(tmp_path) == set()
    finally:
        os.close(holder)


def test_a_directory_flock_held_elsewhere_is_reported_busy_and_leaks_no_fd(tmp_path):
    holder = os.open(tmp_path, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        assert lock_guard._guard_fd(tmp_path, False) is None
        assert _fds_on(tmp_path) == {holder}
    finally:
        os.close(holder)


def test_forgetting_guards_closes_the_fds_a_forked_child_inherited(tmp_path, monkeypatch):
    guard = lock_guard._FolderGuard()
    guard.fd = os.open(tmp_path, os.O_RDONLY)
    # Only this test's guard: the process's own guards (held by other tests' threads) stay untouched.
    guards = {("test", str(tmp_path)): guard}
    monkeypatch.setattr(lock_guard, "_FOLDER_GUARDS", guards)
    monkeypatch.setattr(lock_guard, "_FOLDER_GUARDS_LOCK", lock_guard._FOLDER_GUARDS_LOCK)
    lock_guard.forget_guards()
    assert guards == {} and _fds_on(tmp_path) == set()

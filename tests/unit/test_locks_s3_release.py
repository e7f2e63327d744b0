"""On an object store (the moto S3 server) a release is final: a heartbeat that was about to rewrite the lease
when the lock was released never brings the lease back. A heartbeat or a release paused between its read of the
lease and its write or delete, while another writer took the lock over, leaves the new holder's lease alone."""

from __future__ import annotations

import threading

from ser_models import io
from ser_models.locks import LOCK_NAME, FolderLock


def test_a_release_while_a_heartbeat_is_in_flight_leaves_no_lease(s3_bucket):
    folder = f"{s3_bucket}/cache"
    lock = FolderLock(folder, "feature cache", stale_s=1.0).acquire()  # a beat every 0.25 s (the shortest)
    beat = lock._thread
    in_flight, released = threading.Event(), threading.Event()
    read = lock._read_lease

    def read_then_stall():
        # The heartbeat's read of its lease, then a store that takes long to accept its write: the beat stays
        # between its check and its write until the release is over (or 6 s, longer than the 5 s that a
        # release once waited for the heartbeat before removing the lease regardless).
        out = read()
        if threading.current_thread() is beat and not in_flight.is_set():
            in_flight.set()
            released.wait(timeout=6)
        return out

    lock._read_lease = read_then_stall
    assert in_flight.wait(timeout=60)
    releaser = threading.Thread(target=lambda: (lock.release(), released.set()))
    releaser.start()
    releaser.join()
    beat.join()
    assert not beat.is_alive()
    assert not io.exists(f"{folder}/{LOCK_NAME}"), "the heartbeat rewrote the lease after its release"


def test_a_stale_lease_removed_by_a_racing_taker_first_is_no_error(s3_bucket, monkeypatch):
    """Two processes take one stale S3 lease over at once: both judge it stale and read it again unchanged, and
    the other one deletes it first. This one's delete (conditional on the lease it read) then finds no lease: it
    looks again and takes the lock, instead of failing with the store's error."""
    import json
    import time

    from ser_models.locks import folder_lock

    folder = f"{s3_bucket}/pool"
    beat = time.time() - 600  # a writer of another machine whose heartbeat stopped ten minutes ago
    io.write_bytes_atomic(f"{folder}/{LOCK_NAME}", json.dumps({
        "host": "another-host", "pid": 4242, "token": "another-host-4242".ljust(32, "t"),
        "started_at": beat - 60, "heartbeat_at": beat}).encode())
    monkeypatch.setenv("SER_LOCK_STALE_S", "1")
    delete, raced = folder_lock.lease.delete, []

    def racing_taker_deletes_first(uri, if_match):
        if str(uri).endswith(LOCK_NAME) and not raced:
            raced.append(uri)
            io.fs_delete(uri)  # the other taker's delete lands between this taker's last read and its delete
        delete(uri, if_match=if_match)

    monkeypatch.setattr(folder_lock.lease, "delete", racing_taker_deletes_first)
    lock = FolderLock(folder, "pool", stale_s=1.0, wait_s=30).acquire()
    try:
        assert raced, "the take-over never deleted the stale lease"
        assert json.loads(io.read_bytes(f"{folder}/{LOCK_NAME}"))["token"] == lock.token
    finally:
        lock.release()


def _take_over_by_another_machine(path: str) -> str:
    """What a writer of another machine does to a lease it judged stale: delete it, create its own. Returns the
    new holder's token."""
    import json

    token = "another-host-4242".ljust(32, "t")
    io.fs_delete(path)
    io.write_bytes_atomic(path, json.dumps({"host": "another-host", "pid": 4242, "token": token, "beat": 0,
                                            "started_at": 0.0, "heartbeat_at": 0.0}).encode())
    return token


def _stall_reads(lock, thread_of, stalled: threading.Event, go: threading.Event) -> None:
    """Make the first read of the lease by the thread ``thread_of()`` stop right after the read until ``go``."""
    for name in ("_read", "_read_lease"):  # whichever the heartbeat and the release read the lease with
        read = getattr(lock, name, None)
        if read is None:
            continue

        def read_then_stall(read=read):
            out = read()
            if threading.current_thread() is thread_of() and not stalled.is_set():
                stalled.set()
                go.wait(timeout=30)
            return out

        setattr(lock, name, read_then_stall)


def test_a_heartbeat_paused_between_its_read_and_its_write_keeps_off_a_new_holders_lease(s3_bucket):
    """The heartbeat reads its lease and is paused; another machine's writer takes the lock over; the heartbeat
    resumes. Its write is conditional on the lease it read, so it fails: the new holder keeps the lock, and this
    writer's next commit stops with LockLostError (before, it wrote its old lease back over the new one and held
    the lock again)."""
    import json

    import pytest

    from ser_models.exceptions import LockLostError

    folder = f"{s3_bucket}/pool"
    path = f"{folder}/{LOCK_NAME}"
    lock = FolderLock(folder, "pool", stale_s=1.0).acquire()  # a beat every 0.25 s
    stalled, go = threading.Event(), threading.Event()
    _stall_reads(lock, lambda: lock._thread, stalled, go)
    try:
        assert stalled.wait(timeout=60), "the heartbeat never read its lease"
        theirs = _take_over_by_another_machine(path)
        go.set()
        lock._thread.join(timeout=30)
        assert json.loads(io.read_bytes(path))["token"] == theirs, "the paused heartbeat overwrote the new lease"
        assert not lock._thread.is_alive(), "the heartbeat did not see its lock lost"
        with pytest.raises(LockLostError, match="taken over"):
            lock.assert_held()
    finally:
        go.set()
        lock.release()
    assert json.loads(io.read_bytes(path))["token"] == theirs, "the release removed the new holder's lease"


def test_a_release_paused_between_its_read_and_its_delete_keeps_off_a_new_holders_lease(s3_bucket):
    """The release reads the lease (still its own) and is paused; another machine's writer takes the lock over;
    the release resumes. Its delete is conditional on the lease it read, so the new holder's lease stays (before,
    the release deleted it, and a third writer could start beside the new holder)."""
    import json

    folder = f"{s3_bucket}/run"
    path = f"{folder}/{LOCK_NAME}"
    lock = FolderLock(folder, "run folder", stale_s=1.0).acquire()
    stalled, go = threading.Event(), threading.Event()
    releaser = threading.Thread(target=lock.release)
    _stall_reads(lock, lambda: releaser, stalled, go)
    releaser.start()
    try:
        assert stalled.wait(timeout=60), "the release never read its lease"
        theirs = _take_over_by_another_machine(path)
    finally:
        go.set()
        releaser.join(timeout=60)
    assert io.exists(path), "the paused release deleted the new holder's lease"
    assert json.loads(io.read_bytes(path))["token"] == theirs


def test_the_s3_store_honours_conditional_writes_and_a_second_creator_finds_the_lease(s3_bucket):
    """moto, like S3, refuses a write whose condition fails: a lock created there is exclusive at once (no
    settle-and-read-back), and a second writer finds it held."""
    from ser_models.exceptions import LockHeldError
    from ser_models.locks import lease

    folder = f"{s3_bucket}/cache"
    with FolderLock(folder, "feature cache", stale_s=1.0) as lock:
        assert lease.honours_conditions(lock.path, io.read_bytes(lock.path))
        refused = []

        def second_writer():  # another thread is another writer
            try:
                FolderLock(folder, "feature cache", stale_s=60.0).acquire()
            except LockHeldError as exc:
                refused.append(str(exc))

        other = threading.Thread(target=second_writer)
        other.start()
        other.join(timeout=60)
        assert refused and "being written by another process" in refused[0], "a second writer took a held lease"


def test_a_store_that_ignores_conditions_falls_back_to_the_read_back_and_says_so(s3_bucket, monkeypatch):
    """An S3-compatible store that ignores If-Match / If-None-Match (modelled by the probe's answer; moto honours
    them) gets the write-then-read-back protocol, with one line saying what that leaves open."""
    from ser_models.locks import folder_lock, lease

    monkeypatch.setattr(lease, "honours_conditions", lambda uri, data: False)
    monkeypatch.setattr(folder_lock.FolderLock, "_said_unconditional", False, raising=False)
    said = []
    with FolderLock(f"{s3_bucket}/pool", "pool", stale_s=1.0, log=said.append) as lock:
        lock.assert_held()
    assert len(said) == 1 and "ignores conditional writes" in said[0]

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
    """moto, like S3, refuses each conditional request whose condition fails: the probe on a scratch object says
    so and removes the object, a lock created there is exclusive at once (no settle-and-read-back), and a
    second writer finds it held."""
    from ser_models.exceptions import LockHeldError
    from ser_models.locks import lease

    folder = f"{s3_bucket}/cache"
    with FolderLock(folder, "feature cache", stale_s=1.0):
        assert lease.honours_conditions(f"{folder}/{io.TEMP_PREFIX}probe.tmp")
        assert io.list_dir(folder) == [LOCK_NAME], "the probe left its scratch object"
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


def test_a_store_that_ignores_if_match_on_deletes_gets_the_read_back_protocol_and_is_told(s3_bucket, monkeypatch):
    """A store that honours conditional writes but deletes unconditionally (modelled by dropping If-Match from
    delete requests; moto honours it) is found by the probe before the lease is touched: the lock then writes
    and reads back, and says once what that leaves open."""
    from ser_models.locks import folder_lock, lease

    call = lease._call

    def delete_ignores_if_match(what, uri, method, **kwargs):
        if method == "delete_object":
            kwargs.pop("IfMatch", None)
        return call(what, uri, method, **kwargs)

    monkeypatch.setattr(lease, "_call", delete_ignores_if_match)
    monkeypatch.setattr(lease, "_HONOURS", {})
    monkeypatch.setattr(folder_lock.FolderLock, "_said_unconditional", False, raising=False)
    said = []
    folder = f"{s3_bucket}/pool"
    with FolderLock(folder, "pool", stale_s=1.0, log=said.append) as lock:
        assert not lock._conditional()
        lock.assert_held()
    assert len(said) == 1 and "does not honour conditional requests" in said[0]
    assert not io.exists(f"{folder}/{LOCK_NAME}") and io.list_dir(folder) == []


def test_a_retried_conditional_request_whose_first_try_landed_is_not_a_lost_lock(s3_bucket, monkeypatch):
    """A conditional create or heartbeat that reached the store but lost its answer is retried by the client,
    and the retry is refused (the condition no longer holds). The lock reads the lease again: it names this
    writer, so the create succeeded and the heartbeat goes on, instead of a lock refused or lost."""
    from ser_models.locks import folder_lock, lease

    put = lease.put

    def answer_lost(uri, data, **kwargs):
        put(uri, data, **kwargs)  # the request lands ...
        if str(uri).endswith(LOCK_NAME):
            raise lease.LeaseConflict("a retry of a request that landed")  # ... and its retry is refused

    monkeypatch.setattr(folder_lock.lease, "put", answer_lost)
    lock = FolderLock(f"{s3_bucket}/run", "run folder", stale_s=1.0).acquire()  # a beat every 0.25 s
    try:
        beats = lock._beats
        for _ in range(200):
            if lock._beats >= beats + 2:
                break
            threading.Event().wait(0.05)
        assert lock._beats >= beats + 2 and lock._lost is None and lock._thread.is_alive()
        lock.assert_held()
    finally:
        lock.release()


def test_a_lease_key_is_read_as_pyarrow_reads_it():
    """The lease's requests name the object pyarrow reads: the key percent-decoded, a ``user:secret@`` part taken
    as credentials, never as part of the bucket."""
    from ser_models.locks.lease import _where

    assert _where("s3://bucket/run%201/.ser-lock.json") == ((None, None), "bucket", "run 1/.ser-lock.json")
    assert _where("s3://AKIA:s%2Fcret@bucket/a/b") == (("AKIA", "s/cret"), "bucket", "a/b")


def test_a_lock_in_a_bucket_that_does_not_exist_fails_at_once_naming_it(s3_server):
    """No spinning on a missing bucket: the first request's error names the lease and the store's answer."""
    import pytest

    with pytest.raises(OSError, match="NoSuchBucket"):
        FolderLock("s3://no-such-bucket-for-this-lock/pool", "pool", stale_s=1.0).acquire()

"""On an object store (the moto S3 server) a release is final: a heartbeat that was about to rewrite the lease
when the lock was released never brings the lease back."""

from __future__ import annotations

import threading

from ser_models import io
from ser_models.locks import LOCK_NAME, FolderLock


def test_a_release_while_a_heartbeat_is_in_flight_leaves_no_lease(s3_bucket):
    folder = f"{s3_bucket}/cache"
    lock = FolderLock(folder, "feature cache", stale_s=1.0).acquire()  # a beat every 0.25 s (the shortest)
    beat = lock._thread
    in_flight, released = threading.Event(), threading.Event()
    read = lock._read

    def read_then_stall():
        # The heartbeat's read of its lease, then a store that takes long to accept its write: the beat stays
        # between its check and its write until the release is over (or 6 s, longer than the 5 s that a
        # release once waited for the heartbeat before removing the lease regardless).
        out = read()
        if threading.current_thread() is beat and not in_flight.is_set():
            in_flight.set()
            released.wait(timeout=6)
        return out

    lock._read = read_then_stall
    assert in_flight.wait(timeout=60)
    releaser = threading.Thread(target=lambda: (lock.release(), released.set()))
    releaser.start()
    releaser.join()
    beat.join()
    assert not beat.is_alive()
    assert not io.exists(f"{folder}/{LOCK_NAME}"), "the heartbeat rewrote the lease after its release"


def test_a_stale_lease_removed_by_a_racing_taker_first_is_no_error(s3_bucket, monkeypatch):
    """Two processes take one stale S3 lease over at once: both judge it stale and read it again unchanged, and
    the other one deletes it first. This one's delete then finds no lease: it looks again and takes the lock,
    instead of failing with the store's FileNotFoundError."""
    import json
    import time

    from ser_models.locks import folder_lock

    folder = f"{s3_bucket}/pool"
    beat = time.time() - 600  # a writer of another machine whose heartbeat stopped ten minutes ago
    io.write_bytes_atomic(f"{folder}/{LOCK_NAME}", json.dumps({
        "host": "another-host", "pid": 4242, "token": "another-host-4242".ljust(32, "t"),
        "started_at": beat - 60, "heartbeat_at": beat}).encode())
    monkeypatch.setenv("SER_LOCK_STALE_S", "1")
    delete, raced = io.fs_delete, []

    def racing_taker_deletes_first(uri):
        if str(uri).endswith(LOCK_NAME) and not raced:
            raced.append(uri)
            delete(uri)  # the other taker's delete lands between this taker's last read and its delete
        delete(uri)

    monkeypatch.setattr(folder_lock.io, "fs_delete", racing_taker_deletes_first)
    lock = FolderLock(folder, "pool", stale_s=1.0, wait_s=30).acquire()
    try:
        assert raced, "the take-over never deleted the stale lease"
        assert json.loads(io.read_bytes(f"{folder}/{LOCK_NAME}"))["token"] == lock.token
    finally:
        lock.release()

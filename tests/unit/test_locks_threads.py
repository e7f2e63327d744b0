"""A lock belongs to the thread that took it: two threads of one process are two writers (the second is refused,
or waits when asked to), while nested stages on one thread share one hold."""

from __future__ import annotations

import threading

import pytest

from ser_models.exceptions import LockHeldError
from ser_models.locks import LOCK_NAME, FolderLock, held_lock_for


def _hold_in_thread(folder, **kwargs):
    """Take ``folder``'s lock on a new thread and keep it until the returned event is set."""
    held, done, errors = threading.Event(), threading.Event(), []

    def run():
        try:
            with FolderLock(folder, "pool", **kwargs):
                held.set()
                done.wait()
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            errors.append(exc)
            held.set()

    thread = threading.Thread(target=run, name="first-writer")
    thread.start()
    held.wait()
    assert not errors, errors
    return thread, done


def test_a_second_thread_is_a_second_writer_and_is_refused(tmp_path):
    thread, done = _hold_in_thread(tmp_path)
    try:
        with pytest.raises(LockHeldError, match="another thread of this process") as err:
            FolderLock(tmp_path, "pool").acquire()
        assert "first-writer" in str(err.value)
        assert (tmp_path / LOCK_NAME).exists()  # the refusal left the first thread's lock alone
    finally:
        done.set()
        thread.join()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_second_thread_that_may_wait_gets_the_lock_once_the_first_releases_it(tmp_path):
    thread, done = _hold_in_thread(tmp_path)
    got, errors = [], []

    def second():
        try:
            with FolderLock(tmp_path, "pool", wait_s=600) as lock:
                got.append(lock.token)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    waiter = threading.Thread(target=second)
    waiter.start()
    done.set()
    thread.join()
    waiter.join()
    assert not errors and len(got) == 1


def test_nested_stages_on_one_thread_share_one_hold(tmp_path):
    with FolderLock(tmp_path, "run folder") as outer:
        with FolderLock(tmp_path, "run folder") as inner:
            assert inner.token == outer.token and held_lock_for(tmp_path / "x") is outer
        outer.assert_held()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_whose_thread_ended_without_releasing_it_is_taken_over(tmp_path):
    started = threading.Event()
    thread = threading.Thread(target=lambda: (FolderLock(tmp_path, "pool").acquire(), started.set()),
                              name="forgetful")
    thread.start()
    thread.join()
    assert started.is_set() and (tmp_path / LOCK_NAME).exists()
    lines = []
    with FolderLock(tmp_path, "pool", log=lines.append) as lock:
        lock.assert_held()
    assert len(lines) == 1 and "forgetful" in lines[0] and "ended" in lines[0]

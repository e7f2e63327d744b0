"""Pause points (the hook node-loss tests use to kill a node while work runs on it) and the CLI's
head-loss message."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ser_models import cli
from ser_models.exceptions import ConfigError
from ser_models.failpoints import PAUSEPOINT_DIR_ENV, pausepoint


def test_a_pausepoint_is_a_no_op_unless_armed(tmp_path, monkeypatch):
    monkeypatch.delenv(PAUSEPOINT_DIR_ENV, raising=False)
    pausepoint("anything")  # no folder: returns at once
    monkeypatch.setenv(PAUSEPOINT_DIR_ENV, str(tmp_path))
    pausepoint("anything")  # folder, but not armed
    assert list(tmp_path.iterdir()) == []


def test_an_armed_pausepoint_waits_for_its_release_then_passes_freely(tmp_path, monkeypatch):
    monkeypatch.setenv(PAUSEPOINT_DIR_ENV, str(tmp_path))
    (tmp_path / "stage.armed").write_text("{}")
    done = threading.Event()
    worker = threading.Thread(target=lambda: (pausepoint("stage"), done.set()))
    worker.start()
    deadline = time.monotonic() + 10
    while not list(tmp_path.glob("stage.*.paused")) and time.monotonic() < deadline:
        time.sleep(0.02)
    paused = list(tmp_path.glob("stage.*.paused"))
    # stage.<Ray node id, or no-ray where this process has no Ray>.<pid>.paused: the node to lose
    assert len(paused) == 1 and paused[0].name.endswith(f".{os.getpid()}.paused"), paused
    assert not done.wait(0.3), "it passed before the release"
    (tmp_path / "stage.released").touch()
    assert done.wait(5)
    worker.join()
    pausepoint("stage")  # released: later arrivals (Ray's retries) go straight on
    assert len(list(tmp_path.glob("stage.*.paused"))) == 1


def test_run_job_prints_a_typed_error_whole_and_exits_2_when_the_cluster_is_alive(capsys):
    def main():
        raise ConfigError("train.lr must be > 0\nfix it in the config")

    with pytest.raises(SystemExit) as stop:
        cli.run_job(main)
    assert stop.value.code == cli.USER_ERROR_EXIT
    assert capsys.readouterr().err == "error: ConfigError: train.lr must be > 0\nfix it in the config\n"


def test_run_job_names_a_lost_head_node_whatever_error_surfaced(capsys, monkeypatch):
    import ser_models.runtime as runtime

    monkeypatch.setattr(runtime, "lost_head_message", lambda: "the Ray cluster's head node is gone (...)")
    exits = []

    def exit_now(code):  # the real one ends the process at once (os._exit), which would end pytest
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(runtime, "_exit_now", exit_now)

    def main():
        raise RuntimeError("The actor is temporarily unavailable: RpcError\nmore detail")

    with pytest.raises(SystemExit) as stop:
        cli.run_job(main)
    assert stop.value.code == cli.HEAD_LOST_EXIT and exits == [cli.HEAD_LOST_EXIT]
    err = capsys.readouterr().err
    assert err.startswith("error: HeadNodeLost: the Ray cluster's head node is gone")
    assert "RuntimeError: The actor is temporarily unavailable: RpcError" in err and "more detail" not in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full (every write: ENOSPC)")
def test_run_job_says_a_full_disk_in_one_line_and_exits_2(capsys, monkeypatch, tmp_path):
    """A write that finds no space left (a real ENOSPC from /dev/full, also when a Ray task's error wraps it
    as its cause) is one ``StorageFullError`` line naming the file, not a traceback."""
    monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)

    def write():
        from ser_models import io

        def fill(fh):
            with open("/dev/full", "wb") as full:  # a real ENOSPC, raised inside the platform's atomic write
                full.write(b"x" * 4096)
                full.flush()

        io._write_atomic(tmp_path / "scores" / "part-0.parquet", fill)

    class TaskError(Exception):  # the shape of Ray's RayTaskError: the task's own error as ``cause``
        def __init__(self, cause):
            super().__init__("task failed")
            self.cause = cause

    def in_a_task():
        try:
            write()
        except OSError as exc:
            raise TaskError(exc) from None

    for main in (write, in_a_task):
        with pytest.raises(SystemExit) as stop:
            cli.run_job(main)
        assert stop.value.code == cli.USER_ERROR_EXIT
        err = capsys.readouterr().err
        assert err.startswith(f"error: StorageFullError: No space left on device writing "
                              f"{tmp_path / 'scores' / 'part-0.parquet'}. Free space"), err
        assert len(err.strip().splitlines()) == 1
        assert not list((tmp_path / "scores").iterdir())  # the temporary file went with the failed write


def test_run_job_keeps_the_traceback_of_a_bug_while_the_cluster_is_alive(monkeypatch):
    monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)
    with pytest.raises(ZeroDivisionError):
        cli.run_job(lambda: 1 / 0)


def test_head_watch_ends_the_job_once_the_gcs_stays_silent_for_half_of_rays_limit(monkeypatch):
    """The watch polls a real socket: while it answers nothing happens; once it is closed the job ends after
    the grace period, with the address in the message."""
    import socket
    import threading
    import time

    import ray

    import ser_models.runtime as runtime

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    monkeypatch.setenv(runtime.GCS_RECONNECT_TIMEOUT_ENV, "3")
    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # a Ray connection is not what this is about
    monkeypatch.setattr(runtime, "_gcs_address", lambda: address)
    ended = threading.Event()
    reasons = []

    def end(reason):
        reasons.append(reason)
        ended.set()  # the real one ends the process (os._exit)

    monkeypatch.setattr(runtime, "end_with_head_lost", end)
    assert runtime.head_watch_grace_s() == 1.5
    thread = runtime.watch_head_node(poll_s=0.1)
    time.sleep(0.5)
    assert not ended.is_set()  # the GCS answers
    server.close()
    silent_at = time.monotonic()
    assert ended.wait(timeout=10)
    assert time.monotonic() - silent_at >= 1.5
    assert reasons[0].startswith(f"the Ray cluster's head node is gone (its GCS at {address} does not answer)")
    assert reasons[0].endswith("Nothing answered for 1.5 s")
    thread.join(timeout=5)
    assert not thread.is_alive()

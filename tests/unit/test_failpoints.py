"""Pause points (the hook node-loss tests use to kill a node while work runs on it) and the CLI's
head-loss message."""

from __future__ import annotations

import os
import threading
import time

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

    def main():
        raise RuntimeError("The actor is temporarily unavailable: RpcError\nmore detail")

    with pytest.raises(SystemExit) as stop:
        cli.run_job(main)
    assert stop.value.code == cli.HEAD_LOST_EXIT
    err = capsys.readouterr().err
    assert err.startswith("error: HeadNodeLost: the Ray cluster's head node is gone")
    assert "RuntimeError: The actor is temporarily unavailable: RpcError" in err and "more detail" not in err


def test_run_job_keeps_the_traceback_of_a_bug_while_the_cluster_is_alive(monkeypatch):
    monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)
    with pytest.raises(ZeroDivisionError):
        cli.run_job(lambda: 1 / 0)

"""``python -m jobs.sweep``: a 4-trial ASHA sweep of tiny models on local Ray, its outputs, ``best.yaml``
run as is, a sweep killed mid-way and resumed, and errors before any trial starts (more: test_sweep_variants)."""

from __future__ import annotations

import json
import os
import re
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CONFIG = "jobs/configs/sweep_smoke.yaml"
REPO = Path(__file__).parents[2]
SWEPT = ["model.adapter.kind", "model.adapter.r", "train.lr_head"]


def run_module(monkeypatch, module: str, *args: str):
    monkeypatch.setattr(sys, "argv", [module, *args])
    return runpy.run_module(module, run_name="__main__")


def configs(frame: pd.DataFrame) -> set[tuple]:
    """The trials' swept values (trial ids differ between sweeps; the seeded configs do not)."""
    return {(row["model.adapter.kind"], None if pd.isna(row["model.adapter.r"]) else int(row["model.adapter.r"]),
             round(float(row["train.lr_head"]), 12)) for _, row in frame.iterrows()}


@pytest.fixture(scope="module")
def sweep(ray_local, demo_pool, tmp_path_factory):
    """The uninterrupted smoke sweep, run in this process on the session's Ray."""
    out = tmp_path_factory.mktemp("sweep") / "run"
    mp = pytest.MonkeyPatch()
    try:
        run_module(mp, "jobs.sweep", CONFIG, f"config.pool_dir={demo_pool.pool_dir}", f"output_dir={out}")
    finally:
        mp.undo()
    return out


@pytest.mark.slow_e2e
def test_asha_sweep_writes_results_leaderboard_report_and_tracking(sweep):
    frame = pd.read_parquet(sweep / "results.parquet")
    assert len(frame) == 4 and frame["trial_id"].is_unique
    assert set(SWEPT) <= set(frame.columns)
    assert (frame["status"] != "error").all()
    # r is only set (and recorded) where the adapter is LoRA
    assert frame.loc[frame["model.adapter.kind"] == "frozen", "model.adapter.r"].isna().all()
    assert frame.loc[frame["model.adapter.kind"] == "lora", "model.adapter.r"].isin([2, 4]).all()
    # a trial's status says how far it ran: finished ones all 3 epochs, stopped ones (ASHA's cut) fewer. On the
    # smoke pool the trials may tie and none be cut, so this checks the labels, not that ASHA cut one.
    assert frame["status"].isin(["finished", "stopped"]).all()
    assert ((frame["status"] == "stopped") == (frame["epoch"] < 3)).all() and frame["epoch"].between(1, 3).all()
    assert frame["metric"].is_monotonic_decreasing  # best first
    assert frame["metric"].between(0, 1).all()
    frozen = frame.loc[frame["model.adapter.kind"] == "frozen", "trainable_params"]
    lora = frame.loc[frame["model.adapter.kind"] == "lora", "trainable_params"]
    # the seeded search (seed 0) draws both kinds: 2 frozen, 2 LoRA
    assert len(frozen) and len(lora), frame[SWEPT]
    assert lora.min() > frozen.max()  # adapters add trainable weights to the same head
    for name in ("metric_by_key.png", "curves.png", "params_vs_metric.png"):
        assert (sweep / "report" / name).stat().st_size > 10_000, name
    events = list((sweep / "tune" / "smoke").rglob("events.out.tfevents*"))
    assert len({p.parent for p in events}) == 4  # TensorBoard: one event folder per trial
    import sqlite3

    with sqlite3.connect(sweep / "mlflow.db") as db:  # MLflow: one run per trial in the local SQLite store
        assert db.execute("select count(*) from runs").fetchone()[0] == 4
        assert db.execute("select count(distinct run_uuid) from metrics where key = 'dev_ua'").fetchone()[0] == 4
    for _, row in frame.iterrows():  # each trial's own job folder
        assert (sweep / "trials" / row["trial_id"] / "run.json").is_file()


@pytest.mark.slow_e2e
def test_best_yaml_runs_as_is_and_reproduces_the_best_trial(sweep, monkeypatch, capsys):
    from ser_models.config import load_config
    from ser_models.runs.finetune import FinetuneJobConfig

    frame = pd.read_parquet(sweep / "results.parquet")
    best = frame.iloc[0]
    cfg = load_config(FinetuneJobConfig, sweep / "best.yaml")
    assert cfg.model.adapter.kind == best["model.adapter.kind"]
    assert cfg.train.lr_head == pytest.approx(best["train.lr_head"])
    assert cfg.output_dir == str(sweep / "best")
    run_module(monkeypatch, "jobs.finetune", str(sweep / "best.yaml"))
    history = json.loads((sweep / "best" / "metrics.json").read_text())["history"]
    # same config, seed and thread count in one process: the winner's epochs come back exactly. A trial ASHA
    # stopped ran the same 3-epoch schedule up to its stop, so its best dev UA is that of the rerun's first
    # epochs (all of them when it finished)
    ran = int(best["epoch"])
    assert len(history) == 3 and 1 <= ran <= 3
    assert max(h["dev_ua"] for h in history[:ran]) == pytest.approx(best["metric"], abs=1e-9)


def _start(args, log):
    import ray

    # the driver joins the session's Ray cluster (a cold local start costs ~10 s on 2 cores)
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    return subprocess.Popen([sys.executable, "-m", "jobs.sweep", *args], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, env=env)


@pytest.mark.failure_model
def test_killed_sweep_resumes_and_ends_with_the_uninterrupted_configs(sweep, demo_pool, tmp_path):
    out = tmp_path / "killed"
    args = [CONFIG, f"config.pool_dir={demo_pool.pool_dir}", f"output_dir={out}", "tracking.mlflow=false"]
    with open(tmp_path / "first.log", "w") as log:
        proc = _start(args, log)
        deadline = time.monotonic() + 300
        # SIGKILL the driver once a trial has finished and before the sweep has
        while len(list((out / "trials").glob("*/metrics.json"))) < 1:
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "results.parquet").exists()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in (out / "trials").glob("*/metrics.json")}

    with open(tmp_path / "second.log", "w") as log:
        proc = _start(args, log)
        assert proc.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()[-3000:]
    printed = (tmp_path / "second.log").read_text()
    assert "resuming the sweep" in printed
    resumed = pd.read_parquet(out / "results.parquet")
    assert configs(resumed) == configs(pd.read_parquet(sweep / "results.parquet"))
    for trial, mtime in finished.items():  # nothing finished ran again
        assert (out / "trials" / trial / "metrics.json").stat().st_mtime_ns == mtime
    assert re.search(r"leaderboard \(dev_ua, max; 4 trials", printed)


@pytest.mark.parametrize("override, match", [
    ("search.model.adapter.rank={choice: [4]}", r"search.model.adapter.rank: 'model.adapter.rank' is not a key"),
    ("search.train.lr_head={choice:[4]}", r"cannot parse overrides"),
    ("metric=dev_loss", "metric 'dev_loss' is not reported by base finetune"),
    ("metric=test_ua", "metric 'test_ua' reads the test split"),
    ("config.train.epochz=3", r"config \(the finetune job's config\).*epochz"),
    ("search_alg=hyperopt", "search_alg must be one of"),
    ("config.pool_dir=/nonexistent/pool", r"PoolError: .*/nonexistent/pool"),
])
def test_bad_sweeps_fail_before_ray_starts(tmp_path, monkeypatch, capsys, override, match):
    import ray

    def no_ray(*args, **kwargs):
        raise AssertionError("ray.init was called before the sweep was validated")

    monkeypatch.setattr(ray, "init", no_ray)
    with pytest.raises(SystemExit) as exit_info:
        run_module(monkeypatch, "jobs.sweep", CONFIG, f"output_dir={tmp_path / 'sw'}", override)
    assert exit_info.value.code == 2
    assert re.search(match, capsys.readouterr().err), match
    assert not (tmp_path / "sw").exists()

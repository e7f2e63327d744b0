"""``python -m jobs.sweep``: a 4-trial ASHA sweep of tiny models on local Ray, its outputs, ``best.yaml``
run as is, a sweep killed mid-way and resumed, Ray Train trials, and errors before any trial starts."""

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


def test_asha_sweep_writes_results_leaderboard_report_and_tracking(sweep):
    frame = pd.read_parquet(sweep / "results.parquet")
    assert len(frame) == 4 and frame["trial_id"].is_unique
    assert set(SWEPT) <= set(frame.columns)
    assert (frame["status"] != "error").all()
    # r is only set (and recorded) where the adapter is LoRA
    assert frame.loc[frame["model.adapter.kind"] == "frozen", "model.adapter.r"].isna().all()
    assert frame.loc[frame["model.adapter.kind"] == "lora", "model.adapter.r"].isin([2, 4]).all()
    # ASHA's cut is visible: a stopped trial ran fewer epochs than train.epochs, a finished one all 3
    assert (frame.loc[frame["status"] == "finished", "epoch"] == 3).all()
    assert (frame.loc[frame["status"] == "stopped", "epoch"] < 3).all()
    assert frame["metric"].is_monotonic_decreasing  # best first
    assert frame["metric"].between(0, 1).all()
    frozen = frame.loc[frame["model.adapter.kind"] == "frozen", "trainable_params"]
    lora = frame.loc[frame["model.adapter.kind"] == "lora", "trainable_params"]
    if len(frozen) and len(lora):
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


def test_best_yaml_runs_as_is_and_reproduces_the_best_trial(sweep, monkeypatch, capsys):
    from jobs.finetune import FinetuneJobConfig
    from ser_models.config import load_config

    frame = pd.read_parquet(sweep / "results.parquet")
    best = frame.iloc[0]
    cfg = load_config(FinetuneJobConfig, sweep / "best.yaml")
    assert cfg.model.adapter.kind == best["model.adapter.kind"]
    assert cfg.train.lr_head == pytest.approx(best["train.lr_head"])
    assert cfg.output_dir == str(sweep / "best")
    if best["status"] == "finished":
        run_module(monkeypatch, "jobs.finetune", str(sweep / "best.yaml"))
        metrics = json.loads((sweep / "best" / "metrics.json").read_text())
        # same config, seed and thread count in one process: the winner's dev UA comes back exactly
        assert metrics["best_dev_ua"] == pytest.approx(best["metric"], abs=1e-9)


def _start(args, log):
    import ray

    # the driver joins the session's Ray cluster (a cold local start costs ~10 s on 2 cores)
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    return subprocess.Popen([sys.executable, "-m", "jobs.sweep", *args], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, env=env)


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


def test_ray_train_trials_report_every_epoch_through_the_driver_function(ray_local, demo_pool, tmp_path,
                                                                        monkeypatch):
    out = tmp_path / "rt"
    run_module(monkeypatch, "jobs.sweep", CONFIG, f"config.pool_dir={demo_pool.pool_dir}", f"output_dir={out}",
               "config.scaling.backend=ray_train", "num_samples=1", "scheduler.name=fifo",
               "config.train.epochs=2", "tracking.mlflow=false", "tracking.tensorboard=false")
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 1 and (frame["status"] == "finished").all() and (frame["epoch"] == 2).all()
    for tid in frame["trial_id"]:
        # Ray Train's run folder is named after the trial, so a restarted trial resumes its own checkpoints
        assert (out / "trials" / tid / "ray_train" / f"trial_{tid}").is_dir()
        history = json.loads((out / "trials" / tid / "metrics.json").read_text())["history"]
        assert [h["epoch"] for h in history] == [1, 2]


@pytest.mark.parametrize("override, match", [
    ("search.model.adapter.rank={choice: [4]}", r"search.model.adapter.rank: 'model.adapter.rank' is not a key"),
    ("search.train.lr_head={choice:[4]}", r"cannot parse overrides"),
    ("metric=test_loss", "metric 'test_loss' is not reported by base finetune"),
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


def test_after_sweep_runs_whole_loops_and_ranks_them_by_the_learning_curve(ray_local, demo_pool, tmp_path,
                                                                          monkeypatch):
    """``base: after``: each trial is a whole AL loop (frozen tiny encoder, cached features, in process)
    reporting once per round; the ranking metric is the mean test UA over the rounds."""
    import yaml

    out = tmp_path / "after"
    spec = {
        "base": "after", "output_dir": str(out), "name": "al", "num_samples": 2, "search_alg": "random",
        "scheduler": {"name": "fifo"}, "tracking": {"mlflow": False},
        "search": {"active.strategy.name": {"choice": ["entropy", "random"]},
                   "active.strategy.prefilter_factor": {"choice": [2, 4],
                                                        "when": {"active.strategy.name": "informative_diverse"}}},
        "config": {"pool_dir": str(demo_pool.pool_dir), "tapt_enabled": False,
                   "model": {"encoder": {"source": "tiny-wav2vec2", "normalize_waveform": False},
                             "adapter": {"kind": "frozen"}, "pooling": "mean", "head_hidden": 16},
                   "train": {"epochs": 2, "batch_size": 8, "early_stopping_patience": 0},
                   "scaling": {"backend": "in_process"},
                   "active": {"initial": "random", "budget_fractions": [0.25, 0.5],
                              "feature_cache_dir": str(tmp_path / "cache")}},
    }
    (tmp_path / "sweep_after.yaml").write_text(yaml.safe_dump(spec))
    run_module(monkeypatch, "jobs.sweep", str(tmp_path / "sweep_after.yaml"))
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 2 and (frame["status"] == "finished").all() and (frame["round"] == 2).all()
    assert frame["active.strategy.prefilter_factor"].isna().all()  # its condition never held
    for _, row in frame.iterrows():
        rounds = [json.loads(x) for x in (out / "trials" / row["trial_id"] / "metrics.jsonl").read_text().splitlines()]
        assert row["metric"] == pytest.approx(sum(r["test"]["ua"] for r in rounds) / len(rounds))
    assert "base: after" not in (out / "best.yaml").read_text() and "active:" in (out / "best.yaml").read_text()


def test_optuna_tpe_samples_the_same_space(ray_local, demo_pool, tmp_path, monkeypatch):
    out = tmp_path / "optuna"
    run_module(monkeypatch, "jobs.sweep", CONFIG, f"config.pool_dir={demo_pool.pool_dir}", f"output_dir={out}",
               "search_alg=optuna", "num_samples=2", "scheduler.name=fifo", "config.train.epochs=1",
               "tracking.mlflow=false", "tracking.tensorboard=false")
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 2 and (frame["status"] == "finished").all()
    assert frame["train.lr_head"].between(3e-3, 1e-1).all()
    assert set(frame["model.adapter.kind"]) <= {"lora", "frozen"}


def test_pbt_copies_a_strong_trials_fit_and_perturbs_its_rates(ray_local, demo_pool, tmp_path, monkeypatch):
    """Synchronous PBT over two in-process trials (one runs at a time on 2 CPUs: each reserves a CPU for its
    own Ray Data reads): at each epoch the weaker trial takes over the stronger one's fit state, which its
    history shows, and goes on with perturbed rates that stay inside the search range."""
    out = tmp_path / "pbt"
    run_module(monkeypatch, "jobs.sweep", CONFIG, f"config.pool_dir={demo_pool.pool_dir}", f"output_dir={out}",
               "num_samples=2", "config.train.epochs=3", "scheduler.name=pbt", "scheduler.synch=true",
               "scheduler.quantile_fraction=0.5", "scheduler.resample_probability=0",
               "tracking.mlflow=false", "tracking.tensorboard=false")
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 2 and (frame["status"] == "finished").all() and (frame["epoch"] == 3).all()
    assert frame["train.lr_head"].between(3e-3, 1e-1).all()
    # Tune's log of exploits: [target tag, donor tag, target iter, donor iter, donor config, new config]
    rows = [json.loads(line) for line in (out / "tune" / "smoke" / "pbt_global.txt").read_text().splitlines()]
    assert len(rows) >= 2  # synch: one exploit per perturbation (epochs 1 and 2)
    for *_, old, new in rows:
        assert old["model.adapter.kind"] == new["model.adapter.kind"]  # the architecture travels with the state
        ratio = new["train.lr_head"] / old["train.lr_head"]
        assert ratio == pytest.approx(0.8) or ratio == pytest.approx(1.2) or new["train.lr_head"] in (3e-3, 1e-1)
    # the exploiting trial's fit history starts with the donor's epochs, not its own
    histories = {tid: [h["train_loss"] for h in json.loads((out / "trials" / tid / "metrics.json").read_text())
                       ["history"]] for tid in frame["trial_id"]}
    a, b = histories.values()
    assert a[0] == pytest.approx(b[0])

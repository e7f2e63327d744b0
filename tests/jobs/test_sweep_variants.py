"""``python -m jobs.sweep`` beyond the ASHA smoke sweep: Ray Train trials, whole AL-loop trials, Optuna's
TPE and Population Based Training (a file of its own so that pytest-xdist can run it beside the other)."""

from __future__ import annotations

import json
import runpy
import sys

import pandas as pd
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.slow_e2e]  # `make test-e2e`

CONFIG = "jobs/configs/sweep_smoke.yaml"


def run_module(monkeypatch, module: str, *args: str):
    monkeypatch.setattr(sys, "argv", [module, *args])
    return runpy.run_module(module, run_name="__main__")


def test_ray_train_trials_report_every_epoch_through_the_driver_function(ray_local, demo_pool, tmp_path,
                                                                        monkeypatch):
    out = tmp_path / "rt"
    run_module(monkeypatch, "jobs.sweep", CONFIG, f"config.pool_dir={demo_pool.pool_dir}", f"output_dir={out}",
               "config.scaling.backend=ray_train", "num_samples=1", "scheduler.name=fifo",
               "config.train.optim.epochs=2", "tracking.mlflow=false", "tracking.tensorboard=false")
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 1 and (frame["status"] == "finished").all() and (frame["epoch"] == 2).all()
    for tid in frame["trial_id"]:
        # Ray Train's run folder is named after the trial, so a restarted trial resumes its own checkpoints
        assert (out / "trials" / tid / "ray_train" / f"trial_{tid}").is_dir()
        history = json.loads((out / "trials" / tid / "metrics.json").read_text())["history"]
        assert [h["epoch"] for h in history] == [1, 2]


def test_after_sweep_runs_whole_loops_and_ranks_them_by_the_learning_curve(ray_local, demo_pool, tmp_path,
                                                                          monkeypatch):
    """``base: after``: each trial is a whole AL loop (frozen tiny encoder, cached features, in process)
    reporting once per round; the ranking metric is the mean dev UA over the rounds (test is shown beside it)."""
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
                             "adapter": {"kind": "frozen"}, "pooling": "mean", "head_hidden": 16,
                             "feature_norm": "none", "head_input_norm": True, "head_dropout": 0.1},
                   "train": {"solver": "adamw", "optim": {"epochs": 2, "batch_size": 8}, "early_stopping_patience": 0},
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
        assert row["metric"] == pytest.approx(sum(r["dev"]["ua"] for r in rounds) / len(rounds))
        assert row["alc_test_ua"] == pytest.approx(sum(r["test"]["ua"] for r in rounds) / len(rounds))
    assert "base: after" not in (out / "best.yaml").read_text() and "active:" in (out / "best.yaml").read_text()


def test_optuna_tpe_samples_the_same_space_with_asha_stopping_on_dev_nll(ray_local, demo_pool, tmp_path,
                                                                         monkeypatch, capsys):
    """Optuna's TPE with ASHA stopping on its own metric: Tune then takes the metric from the scheduler and
    the searcher, and trials are still ranked by dev UA."""
    out = tmp_path / "optuna"
    run_module(monkeypatch, "jobs.sweep", CONFIG, f"config.pool_dir={demo_pool.pool_dir}", f"output_dir={out}",
               "search_alg=optuna", "num_samples=2", "scheduler.name=asha", "scheduler.metric=dev_nll",
               "scheduler.mode=min", "config.train.optim.epochs=2", "tracking.mlflow=false", "tracking.tensorboard=false")
    printed = capsys.readouterr().out
    assert "ASHA stops on dev_nll (min)" in printed and "leaderboard (dev_ua, max; 2 trials" in printed
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 2 and frame["status"].isin(["finished", "stopped"]).all()
    for tid in frame["trial_id"]:
        history = json.loads((out / "trials" / tid / "metrics.json").read_text())["history"]
        assert all(h["dev_nll"] > 0 for h in history)
    assert frame["train.lr_head"].between(3e-3, 1e-1).all()
    assert set(frame["model.adapter.kind"]) <= {"lora", "frozen"}


def test_pbt_copies_a_strong_trials_fit_and_perturbs_its_rates(ray_local, demo_pool, tmp_path, monkeypatch):
    """Synchronous PBT over two in-process trials (one runs at a time on 2 CPUs: each reserves a CPU for its
    own Ray Data reads): after epoch 1 the weaker trial takes over the stronger one's fit state, which its
    history shows, and goes on with perturbed rates that stay inside the search range."""
    out = tmp_path / "pbt"
    run_module(monkeypatch, "jobs.sweep", CONFIG, f"config.pool_dir={demo_pool.pool_dir}", f"output_dir={out}",
               "num_samples=2", "config.train.optim.epochs=2", "scheduler.name=pbt", "scheduler.synch=true",
               "scheduler.quantile_fraction=0.5", "scheduler.resample_probability=0",
               "tracking.mlflow=false", "tracking.tensorboard=false")
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 2 and (frame["status"] == "finished").all() and (frame["epoch"] == 2).all()
    assert frame["train.lr_head"].between(3e-3, 1e-1).all()
    # Tune's log of exploits: [target tag, donor tag, target iter, donor iter, donor config, new config]
    rows = [json.loads(line) for line in (out / "tune" / "smoke" / "pbt_global.txt").read_text().splitlines()]
    assert rows  # synch, 2 trials, quantile 0.5: the weaker one copies the other after epoch 1
    for *_, old, new in rows:
        assert old["model.adapter.kind"] == new["model.adapter.kind"]  # the architecture travels with the state
        ratio = new["train.lr_head"] / old["train.lr_head"]
        assert ratio == pytest.approx(0.8) or ratio == pytest.approx(1.2) or new["train.lr_head"] in (3e-3, 1e-1)
    # the exploiting trial's fit history starts with the donor's epochs, not its own
    histories = {tid: [h["train_loss"] for h in json.loads((out / "trials" / tid / "metrics.json").read_text())
                       ["history"]] for tid in frame["trial_id"]}
    a, b = histories.values()
    assert a[0] == pytest.approx(b[0])

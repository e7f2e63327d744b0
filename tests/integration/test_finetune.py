"""Fine-tuning with Ray Train on the session's demo pool: artifacts, reload, DDP, resume after a killed driver.

Every Ray Train start costs 20-60 s on the 2-core test machine, so the artifact, reload and reuse checks share
the resume case's run (one killed driver, then one resumed run on two DDP workers). A label
outside ``model.labels`` is not tested here: it costs a full Ray Train start to fail inside the worker (the
message check lives with ``collect_clips``).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ser_models.config import to_dict
from ser_models.data.clips import AUDIO_COLUMNS, collect_clips
from ser_models.models.model import EmotionModel
from ser_models.testing import kill_when, latest_ray_train_checkpoint, tiny_model_config
from ser_models.training import OptimConfig, ScalingConfig, TrainConfig, evaluate, train_model
from ser_models.training.fitting import FitState
from ser_models.training.loop import STATE_FILE
from ser_models.training.state_io import load_state

# The artifact checks ride on the resume case's run, so the whole module is a failure-model test.
pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.failure_model]

REPO = Path(__file__).resolve().parents[2]
LABELS = ["neutral", "happy", "angry", "sad"]
SCORES = ("wa", "ua", "macro_f1", "confusion", "n")


def model_config(labels=LABELS):
    # The smoke config's model (jobs/configs/finetune_smoke.yaml).
    return tiny_model_config(labels=labels, normalize_waveform=False, r=4, alpha=8, head_hidden=16)


def train_config(epochs: int) -> TrainConfig:
    return TrainConfig(optim=OptimConfig(epochs=epochs, batch_size=8, max_crop_seconds=1.5), early_stopping_patience=0)


def pool_inputs(demo_pool) -> tuple[dict, list[int]]:
    """Ray Datasets of the three splits and the per-class training counts (what jobs.finetune passes)."""
    pool = demo_pool.open()
    labels = pool.metadata(columns=["label"], split="train")["label"]
    counts = [int((labels == name).sum()) for name in LABELS]
    return {split: pool.dataset(split) for split in ("train", "dev", "test")}, counts


_KILLED_RUN = """
import json, sys
import ray
from ser_models.config import from_dict
from ser_models.data import Pool
from ser_models.models.model import ModelConfig
from ser_models.training import ScalingConfig, TrainConfig, train_model

spec = json.loads(sys.argv[1])
ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
pool = Pool.open(spec["pool_dir"])
datasets = {split: pool.dataset(split) for split in ("train", "dev", "test")}
train_model(from_dict(ModelConfig, spec["model"]), from_dict(TrainConfig, spec["train"]),
            ScalingConfig(max_failures=0), datasets, spec["output_dir"], class_counts=spec["counts"])
"""
EPOCHS = 2  # the killed driver checkpoints epoch 1; the resumed run on two workers trains epoch 2


def kill_after_first_checkpoint(demo_pool, out: Path, counts: list[int]) -> None:
    """Start ``train_model`` in a separate driver process and SIGKILL it once an epoch is checkpointed."""
    snapshot = out / "ray_train" / "finetune" / "checkpoint_manager_snapshot.json"
    spec = {"pool_dir": str(demo_pool.pool_dir), "output_dir": str(out), "counts": counts,
            "model": to_dict(model_config()), "train": to_dict(train_config(EPOCHS))}
    # The driver starts a Ray of its own in its own process group: the kill reaches it and nothing else, and what
    # a dead Ray Train driver leaves running (its controller) cannot hold the shared Ray's CPUs.
    kill_when([sys.executable, "-c", _KILLED_RUN, json.dumps(spec)], snapshot.exists, cwd=REPO)


@pytest.fixture(scope="module")
def resumed_run(ray_local, demo_pool, tmp_path_factory):
    """Fine-tuning for EPOCHS epochs whose first driver (one worker) was killed after its first checkpoint,
    then rerun to completion in this process on two DDP workers. Returns what the artifact and resume tests need."""
    datasets, counts = pool_inputs(demo_pool)
    out = tmp_path_factory.mktemp("ft_resumed")
    kill_after_first_checkpoint(demo_pool, out, counts)
    run_dir = out / "ray_train" / "finetune"
    killed_state, _ = load_state(latest_ray_train_checkpoint(run_dir) / STATE_FILE, FitState)
    metrics_after_kill = (out / "metrics.json").exists()

    logs = io.StringIO()
    # Worker prints reach this driver through Ray's log forwarding thread, which writes to sys.stdout.
    with contextlib.redirect_stdout(logs), contextlib.redirect_stderr(logs):
        # Resumed on two gloo DDP workers (the killed driver had one): the worker count is a speed-only
        # setting, and both ranks must agree on the number of steps (all_reduce_min) or one hangs.
        result = train_model(model_config(), train_config(EPOCHS),
                             ScalingConfig(num_workers=2, cpus_per_worker=1, max_failures=0), datasets, out,
                             class_counts=counts)
    return SimpleNamespace(result=result, out=out, run_dir=run_dir, killed_state=killed_state,
                           metrics_after_kill=metrics_after_kill, logs=logs.getvalue(), counts=counts)


def test_rerun_after_killed_driver_resumes_from_last_checkpoint(resumed_run):
    done = resumed_run.killed_state.epoch
    assert 1 <= done < EPOCHS, f"the killed run got to epoch {done} of {EPOCHS}: nothing left to resume"
    assert not resumed_run.metrics_after_kill
    history = resumed_run.result.metrics["history"]
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    # The finished epochs come from the checkpoint, wall-clock timings included: they were not rerun.
    assert history[:done] == resumed_run.killed_state.history[:done]
    assert history[0]["train_loss"] == resumed_run.killed_state.history[0]["train_loss"]
    # (The worker's "resuming after epoch N" line reaches this driver only through Ray's log forwarding, which is
    # not reliable under pytest-xdist: the history above is the proof.)
    # Rank 0 of the resumed run trained on half the clips the single killed worker saw.
    full = history[0]["train_clips"]
    assert all(h["train_clips"] == full for h in history[:done])
    assert all(abs(h["train_clips"] - full / 2) <= 8 for h in history[done:])


def test_finished_run_writes_every_artifact(resumed_run, demo_pool):
    result, out = resumed_run.result, resumed_run.out
    assert result.checkpoint_dir == str(out / "checkpoint")
    assert (out / "checkpoint" / "model.json").is_file() and (out / "checkpoint" / "model.safetensors").is_file()
    assert (out / "confusion.png").stat().st_size > 1000
    assert not (out / ".checkpoint.staging").exists()

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    assert len(metrics["history"]) == EPOCHS
    for h in metrics["history"]:
        assert math.isfinite(h["train_loss"]) and h["train_loss"] > 0 and 0 <= h["dev_ua"] <= 1
    best = metrics["history"][metrics["best_epoch"] - 1]["dev_ua"]
    assert metrics["best_dev_ua"] == pytest.approx(best) == max(h["dev_ua"] for h in metrics["history"])
    splits = demo_pool.summary.splits
    for split in ("dev", "test"):
        scores = metrics[split]
        assert set(SCORES) <= set(scores) and scores["n"] == splits[split]["clips"]
        confusion = np.asarray(scores["confusion"])
        assert confusion.shape == (4, 4) and confusion.sum() == scores["n"]
        assert scores["wa"] == pytest.approx(np.trace(confusion) / scores["n"])
    # The kept model is the best epoch's: its dev UA is the one the history recorded for that epoch.
    assert metrics["dev"]["ua"] == pytest.approx(best)


def test_checkpoint_holds_the_best_weights_and_reproduces_test_metrics(resumed_run, demo_pool):
    result = resumed_run.result
    model = EmotionModel.load_checkpoint(result.checkpoint_dir)
    assert model.cfg.labels == LABELS
    final, _ = load_state(latest_ray_train_checkpoint(resumed_run.run_dir) / STATE_FILE, FitState)
    assert final.best_epoch == result.metrics["best_epoch"]
    reloaded = model.trainable_state_dict()
    assert sorted(reloaded) == sorted(final.best_weights)
    for name, weight in final.best_weights.items():
        torch.testing.assert_close(reloaded[name], weight, rtol=0, atol=0)
    torch.manual_seed(train_config(EPOCHS).optim.seed)  # the worker's initialisation
    untrained = EmotionModel(model_config()).trainable_state_dict()
    assert any(not torch.equal(untrained[n], reloaded[n]) for n in reloaded), "checkpoint holds untrained weights"

    # Test clips read on the driver (pyarrow, no Ray Data job), in the worker's order.
    rows = demo_pool.open().metadata(columns=AUDIO_COLUMNS, split="test")
    batch = {c: rows[c].to_numpy() for c in AUDIO_COLUMNS}
    clips = collect_clips([batch], LABELS).sorted_by_id()
    scores = evaluate(model, clips, train_config(EPOCHS), torch.device("cpu"))
    assert scores["n"] == result.metrics["test"]["n"]
    assert scores["ua"] == result.metrics["test"]["ua"]
    assert scores["confusion"] == result.metrics["test"]["confusion"]


def test_second_call_reuses_the_finished_run(resumed_run, demo_pool, capsys):
    datasets, counts = pool_inputs(demo_pool)
    t0 = time.perf_counter()
    again = train_model(model_config(), train_config(EPOCHS), ScalingConfig(), datasets, resumed_run.out,
                        class_counts=counts)
    assert time.perf_counter() - t0 < 5  # no Ray Train start-up
    assert again.resumed and again.seconds == 0.0
    assert again.metrics == json.loads((resumed_run.out / "metrics.json").read_text())
    assert "already finished" in capsys.readouterr().out

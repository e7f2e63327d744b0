"""Per-layer probes on synthetic cached features: the layer that carries a task wins it."""

from __future__ import annotations

import numpy as np
import pytest

from ser_models.analysis.layer_report import probe_table
from ser_models.analysis.probes import (
    CATEGORICAL,
    WEIGHTED,
    SplitFeatures,
    probe_tasks,
    run_probe,
    task_clips,
)
from ser_models.exceptions import ConfigError
from ser_models.testing import tiny_model_config
from ser_models.training.config import OptimConfig, TrainConfig

LABELS = ["a", "b", "c"]


def _split(n: int, seed: int) -> SplitFeatures:
    """Layer 1 carries the class, layer 2 carries arousal; layer 0 is noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    arousal = rng.uniform(1, 5, n)
    feats = rng.normal(size=(n, 3, 8)).astype(np.float32)
    feats[:, 1, :3] += 3.0 * np.eye(3)[labels]
    feats[:, 2, 0] += 2.0 * (arousal - 3)
    targets = np.stack([arousal, np.full(n, np.nan)], 1).astype(np.float32)  # valence unknown everywhere
    return SplitFeatures([f"c{i}" for i in range(n)], feats, labels, targets)


@pytest.fixture(scope="module")
def setup():
    cfg = tiny_model_config("tiny-wav2vec2", "frozen", labels=LABELS, dimensions=["arousal", "valence"])
    train_cfg = TrainConfig(optim=OptimConfig(epochs=15, batch_size=16), lr_head=5e-3, early_stopping_patience=0)
    return cfg, train_cfg, {"train": _split(90, 0), "dev": _split(30, 1), "test": _split(30, 2)}


def test_probe_tasks():
    cfg = tiny_model_config("tiny-wav2vec2", "frozen", labels=LABELS, dimensions=["arousal"])
    assert probe_tasks(cfg) == [CATEGORICAL, "arousal"]
    assert probe_tasks(cfg, ["arousal"]) == ["arousal"]
    with pytest.raises(ConfigError, match="valence"):
        probe_tasks(cfg, ["valence"])


def test_task_clips_keep_rows_with_the_target(setup):
    cfg, _, splits = setup
    assert len(task_clips(splits["train"], cfg, "arousal")) == 90
    assert len(task_clips(splits["train"], cfg, "valence")) == 0
    cat = task_clips(splits["train"], cfg, CATEGORICAL)
    assert cat.targets.shape == (90, 0) and cat.features.shape == (90, 3, 8)


def test_the_informative_layer_wins_each_task(setup):
    cfg, train_cfg, splits = setup
    rows = [run_probe(splits, cfg, train_cfg, task, layer, seed=0)
            for task in (CATEGORICAL, "arousal") for layer in (0, 1, 2, WEIGHTED)]
    score = {(r["task"], r["layer"]): r["test"] for r in rows}
    assert score[(CATEGORICAL, 1)] > 0.8 > score[(CATEGORICAL, 0)] + 0.3
    assert score[("arousal", 2)] > 0.7 and score[("arousal", 2)] > score[("arousal", 0)] + 0.4
    weighted = [r for r in rows if r["layer"] == WEIGHTED]
    assert all(len(r["weights"]) == 3 and sum(r["weights"]) == pytest.approx(1.0) for r in weighted)
    import pandas as pd

    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "weights"} for r in rows])
    weights = pd.DataFrame([{"task": r["task"], "seed": 0, "layer": i, "weight": w}
                            for r in weighted for i, w in enumerate(r["weights"])])
    table = probe_table(frame, weights)
    assert "| **best layer** | 1 | 2 |" in table and "weighted sum" in table

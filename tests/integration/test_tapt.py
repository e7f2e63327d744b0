"""TAPT through Ray Train on the session's demo pool: one worker, two epochs, artifacts, reuse on rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ser_models.config import load_config
from ser_models.encoders import build_encoder
from ser_models.pretraining.tapt import run_tapt
from ser_models.pretraining.tapt_config import TaptJobConfig
from ser_models.testing import random_waveforms

pytestmark = [pytest.mark.slow_e2e]  # `make test-e2e` (TAPT end to end stays in make test: test_tapt_job)


@pytest.fixture(scope="module")
def tapt_run(ray_local, demo_pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("tapt")
    cfg = load_config(TaptJobConfig, None, [
        f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}", "encoder.source=tiny-wav2vec2",
        "encoder.normalize_waveform=false", "tapt.optim.epochs=2", "tapt.optim.batch_size=4", "tapt.optim.lr=0.002",
        "tapt.optim.warmup_ratio=0.0", "tapt.optim.hold_ratio=1.0", "tapt.optim.max_crop_seconds=1.0", "tapt.mask_time_prob=0.5",
        "tapt.mask_time_length=5", "tapt.num_negatives=20", "scaling.max_failures=0",
    ])
    return cfg, run_tapt(cfg)


def test_run_writes_the_adapted_encoder_and_its_metrics(tapt_run):
    cfg, result = tapt_run
    assert not result.reused
    history = result.metrics["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    # The demo pool's training clips, not a fixed batch: the epoch loss goes down.
    assert history[1]["loss"] < history[0]["loss"], history
    assert result.metrics["objective"] == "contrastive"
    info = json.loads((Path(result.output_dir) / "encoder" / "encoder.json").read_text())
    assert info["objective"] == "contrastive" and info["epochs"] == 2
    assert info["source_encoder"]["source"] == "tiny-wav2vec2"
    assert (Path(result.output_dir) / "tapt_loss.png").stat().st_size > 0
    adapted = build_encoder(result.encoder_config(cfg.encoder))
    fresh = build_encoder(cfg.encoder)
    wavs, lengths = random_waveforms(2, 0.5, seed=0)
    with torch.no_grad():
        assert not torch.allclose(adapted(wavs, lengths).hidden_states[-1], fresh(wavs, lengths).hidden_states[-1])


def test_rerun_reuses_the_finished_run(tapt_run, capsys):
    cfg, first = tapt_run
    again = run_tapt(cfg)
    assert again.reused and again.checkpoint == first.checkpoint
    assert again.metrics["history"] == first.metrics["history"]
    assert "already finished" in capsys.readouterr().out


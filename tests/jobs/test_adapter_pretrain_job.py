"""``jobs.adapter_pretrain`` end to end on its smoke config, and the stage inside ``jobs.after`` and
``jobs.finetune`` on the frame cache (tiny Whisper: the family whose encoder TAPT cannot adapt)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ser_models.config import load_config
from ser_models.models.model import EmotionModel
from ser_models.runs.adapter_pretrain import AdapterPretrainJobConfig

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).parents[2]
SMOKE = ROOT / "jobs/configs/adapter_pretrain_smoke.yaml"
WAP_SMALL = ["model.wap.enabled=true", "model.wap.depth=2", "model.wap.dim=32", "model.wap.heads=2",
             "model.wap.ff_dim=64"]


def test_config_header_names_its_commands():
    cfg = load_config(AdapterPretrainJobConfig, SMOKE)
    assert cfg.model.wap.enabled and cfg.model.adapter.kind == "frozen"
    header = SMOKE.read_text().splitlines()[:5]
    assert any("ser-models adapter-pretrain --config adapter_pretrain_smoke" in x for x in header)
    assert any("platform/submit.sh adapter-pretrain" in x for x in header)


def _run(module: str, argv: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [module, *argv])
    runpy.run_module(module, run_name="__main__")


@pytest.mark.slow_e2e
def test_smoke_run_writes_the_adapter_and_reuses_it(ray_local, demo_pool, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ap"
    argv = [str(SMOKE), f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}"]
    _run("jobs.adapter_pretrain", argv, monkeypatch)
    text = capsys.readouterr().out
    assert "adapter pre-training: 2 epochs" in text
    metrics = json.loads((out / "adapter_metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    first = metrics["history"][0]
    # Every loss and the collapse statistics are logged; the clusters were fitted (refresh_every=1).
    for key in ("recon", "frame", "utterance", "cluster", "cluster_perplexity", "spread", "ema_decay"):
        assert key in first, key
    assert first["kmeans"]["frames"] >= 4 and first["spread"] > 1e-3
    info = json.loads((out / "adapter" / "wap.json").read_text())
    assert info["architecture"]["dim"] == 32 and info["num_layers"] == 5
    from ser_models.data import Pool

    train_ids = set(Pool.open(demo_pool.pool_dir).metadata(columns=["utt_id"], split="train")["utt_id"])
    assert metrics["clips"] == len(train_ids)  # the training split only: never dev or test
    weights = load_file(out / "adapter" / "wap.safetensors")
    assert int(weights["standardizer.clips"]) == len(train_ids)  # pool statistics of the training frames
    assert (out / "adapter_loss.png").stat().st_size > 0
    _run("jobs.adapter_pretrain", argv, monkeypatch)
    assert "(reused)" in capsys.readouterr().out


@pytest.mark.slow_e2e
def test_after_runs_the_stage_then_trains_adapter_sap_and_head_from_the_frame_cache(ray_local, demo_pool, tmp_path,
                                                                                   monkeypatch, capsys):
    out = tmp_path / "after"
    argv = [str(ROOT / "jobs/configs/after_smoke.yaml"), f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}",
            "model.encoder.source=tiny-whisper", "model.adapter.kind=frozen", "model.pooling=attentive_stats",
            *WAP_SMALL, "tapt.objective=auto", "tapt.adapter.optim.epochs=1", "tapt.adapter.num_clusters=4",
            "tapt.adapter.optim.batch_size=8", "scaling.backend=in_process", "train.optim.epochs=2"]
    _run("jobs.after", argv, monkeypatch)
    text = capsys.readouterr().out
    assert "adapter pre-training: 1 epochs" in text and "feature cache: encoded" in text
    pretrained = out / "tapt" / "adapter" / "wap.safetensors"
    assert pretrained.exists()
    rounds = sorted((out / "rounds").glob("round=*"))
    assert len(rounds) == 2
    model = EmotionModel.load_checkpoint(str(rounds[-1] / "train" / "checkpoint"))
    assert model.cfg.wap.checkpoint == str(pretrained)
    # Fine-tuning moved the pre-trained adapter (it trains with SAP and the head), and the checkpoint holds it.
    start = load_file(pretrained)
    moved = max(float((model.wap.state_dict()[k] - v).abs().max()) for k, v in start.items()
                if k.startswith("blocks."))
    assert moved > 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(0 <= x["test"]["ua"] <= 1 for x in lines)


@pytest.mark.slow_e2e
def test_finetune_pretrains_then_fine_tunes_from_the_cache(ray_local, demo_pool, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ft"
    argv = [str(ROOT / "jobs/configs/finetune_smoke.yaml"), f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}",
            "model.encoder.source=tiny-whisper", "model.adapter.kind=frozen", "model.pooling=attentive_stats",
            *WAP_SMALL, f"feature_cache_dir={tmp_path / 'cache'}", "pretrain_adapter=true",
            "adapter_pretrain.optim.epochs=1", "adapter_pretrain.num_clusters=4", "adapter_pretrain.optim.batch_size=8",
            "scaling.backend=in_process"]
    _run("jobs.finetune", argv, monkeypatch)
    assert (out / "adapter_pretrain" / "adapter" / "wap.safetensors").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test"]["ua"] <= 1
    model = EmotionModel.load_checkpoint(str(out / "checkpoint"))
    assert model.wap is not None and not torch.isnan(model.wap.layer_weights()).any()


def test_whisper_tapt_without_the_adapter_names_the_fix(demo_pool, tmp_path):
    from ser_models.exceptions import ConfigError
    from ser_models.runs.after import AfterJobConfig, run_after

    cfg = load_config(AfterJobConfig, ROOT / "jobs/configs/after_smoke.yaml",
                      [f"pool_dir={demo_pool.pool_dir}", f"output_dir={tmp_path / 'x'}", "model.encoder.source=tiny-whisper",
                       "model.adapter.kind=frozen"])
    with pytest.raises(ConfigError, match="model.wap.enabled=true"):
        run_after(cfg)

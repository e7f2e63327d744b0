"""``python -m jobs.tapt`` end to end on its smoke config (masked prediction with k-means targets)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

from ser_models.config import load_config
from ser_models.pretraining.tapt_config import TaptJobConfig

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize("name", ["tapt_demo.yaml", "tapt_smoke.yaml"])
def test_configs_load(name):
    cfg = load_config(TaptJobConfig, ROOT / "jobs" / "configs" / name)
    assert cfg.split == "train"
    header = (ROOT / "jobs" / "configs" / name).read_text().splitlines()[:5]
    assert any(f"ser-models tapt --config {name.removesuffix('.yaml')}" in line for line in header)
    assert any(f"platform/submit.sh tapt jobs/configs/{name}" in line for line in header)


@pytest.mark.slow_e2e
def test_smoke_run(ray_local, demo_pool, tmp_path, monkeypatch, capsys):
    out = tmp_path / "tapt"
    argv = ["jobs.tapt", str(ROOT / "jobs/configs/tapt_smoke.yaml"), f"pool_dir={demo_pool.pool_dir}",
            f"output_dir={out}"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_module("jobs.tapt", run_name="__main__")
    text = capsys.readouterr().out
    assert "TAPT masked_prediction: 2 epochs" in text
    assert (out / "encoder" / "encoder.safetensors").stat().st_size > 0
    assert (out / "kmeans" / "clusters.npz").exists()
    kmeans = json.loads((out / "kmeans" / "clusters.json").read_text())
    assert kmeans["num_clusters"] == 8 and kmeans["frames"] >= 8
    metrics = json.loads((out / "tapt_metrics.json").read_text())
    assert len(metrics["history"]) == 2 and metrics["objective"] == "masked_prediction"
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_module("jobs.tapt", run_name="__main__")
    assert "(reused)" in capsys.readouterr().out

"""jobs.after end to end on its real path (rounds through Ray Train, scoring through Ray Data actors, the
pretrained encoder with the shared feature cache), then jobs.compare over two runs. TAPT through Ray Train
feeding the rounds runs in tests/integration/test_s3_storage.py, with every output in a bucket."""

from __future__ import annotations

import json
import runpy
import sys

import pytest

pytestmark = pytest.mark.usefixtures("ray_local")


def _run(module, args, monkeypatch):
    monkeypatch.setattr(sys, "argv", [module, *args])
    try:
        runpy.run_module(module, run_name="__main__")
    except SystemExit as exc:  # a job may exit 0 on purpose
        assert exc.code in (0, None), f"{module} exited with {exc.code}"


def test_starving_scorer_reservation_fails_before_tapt(demo_pool, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["jobs.after", "jobs/configs/after_smoke.yaml", f"pool_dir={demo_pool.pool_dir}",
                                      f"output_dir={out}", "active.scorer.num_cpus=2"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("jobs.after", run_name="__main__")
    assert exit_info.value.code == 2 and "active.scorer.threads" in capsys.readouterr().err
    assert not (out / "tapt").exists()  # refused up front, not after minutes of TAPT


@pytest.mark.slow_e2e  # a whole job run on the pretrained encoder, 29 s on 2 cores: make test-e2e
def test_demo_config_on_the_pretrained_encoder_shares_its_cache(demo_pool, smart_turn_dir, tmp_path, monkeypatch,
                                                                capsys):
    """The demo's own config (frozen Smart Turn Whisper-tiny, cache, Ray Train rounds), shortened; a second run
    (random baseline) over the same pool reuses the first run's cached features. The encoder folder is given
    relative to the cwd, as the Makefile does: Ray Train workers must still find it."""
    import os

    cache = tmp_path / "shared_cache"
    source = os.path.relpath(smart_turn_dir)
    common = ["jobs/configs/demo_after.yaml", f"pool_dir={demo_pool.pool_dir}", f"model.encoder.source={source}",
              f"active.feature_cache_dir={cache}", "active.budget_fractions=[0.25,0.5]", "train.optim.epochs=3"]
    _run("jobs.after", [*common, f"output_dir={tmp_path / 'after'}"], monkeypatch)
    first = capsys.readouterr().out
    assert "feature cache: encoded 48 clips once" in first
    _run("jobs.after", [*common, f"output_dir={tmp_path / 'random'}", "active.strategy.name=random",
                        "active.initial=random"], monkeypatch)
    second = capsys.readouterr().out
    assert "feature cache: encoded" not in second and "\nround 1 | 16 labels (" in second
    for run in ("after", "random"):
        rounds = [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        assert [r["round"] for r in rounds] == [0, 1] and all(0.0 <= r["test"]["ua"] <= 1.0 for r in rounds)
    meta = json.loads((tmp_path / "after" / "rounds" / "round=000" / "train" / "checkpoint" / "model.json"
                       ).read_text())
    assert "smart-turn" in json.dumps(meta)
    assert "\nround 0 | 8 labels (" in first and (tmp_path / "after" / "report" / "learning_curve.png").exists()

    # jobs.compare overlays the two runs and prints their table
    png = tmp_path / "cmp.png"
    _run("jobs.compare", [str(tmp_path / "after"), str(tmp_path / "random"), "--names", "after,random", "--out",
                          str(png)], monkeypatch)
    table = capsys.readouterr().out
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "after" in table and "random" in table and "test_ua" in table

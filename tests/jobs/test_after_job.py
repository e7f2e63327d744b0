"""jobs.after end to end on its real path: TAPT and every round through Ray Train, scoring through Ray Data
actors; then jobs.compare over the run."""

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


def test_after_job_smoke_then_compare(demo_pool, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _run("jobs.after", ["jobs/configs/after_smoke.yaml", f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}"],
         monkeypatch)
    printed = capsys.readouterr().out
    assert "round  0 | labelled" in printed and "round  1 | labelled" in printed
    assert (out / "tapt" / "encoder" / "encoder.safetensors").exists()
    rounds = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [0, 1]
    assert rounds[0]["labelled"] < rounds[1]["labelled"]
    model_json = json.loads((out / "rounds" / "round=000" / "train" / "checkpoint" / "model.json").read_text())
    assert "tapt" in json.dumps(model_json)  # the rounds trained on the TAPT encoder
    assert (out / "report" / "learning_curve.png").exists()
    assert (out / "config.yaml").exists()

    # a finetune-style full-data reference next to it (metrics.json only) and the overlay
    ref = tmp_path / "full"
    ref.mkdir()
    (ref / "metrics.json").write_text(json.dumps({"test": rounds[-1]["test"], "dev": rounds[-1]["dev"]}))
    png = tmp_path / "cmp.png"
    _run("jobs.compare", [str(out), str(ref), "--names", "after,full", "--out", str(png)], monkeypatch)
    table = capsys.readouterr().out
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "after" in table and "full" in table and "test_ua" in table


def test_starving_scorer_reservation_fails_before_tapt(demo_pool, tmp_path, monkeypatch):
    from ser_models.exceptions import ConfigError

    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="active.scorer.threads"):
        _run("jobs.after", ["jobs/configs/after_smoke.yaml", f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}",
                            "active.scorer.num_cpus=2"], monkeypatch)
    assert not (out / "tapt").exists()  # refused up front, not after minutes of TAPT

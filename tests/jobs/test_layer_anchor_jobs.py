"""``python -m jobs.layer_analysis`` (probes per layer, learned layer weights, CKA between languages) and
``python -m jobs.anchor`` (cross-lingual layer anchoring), end to end on the session's demo pool (two
languages) with the tiny random encoder."""

from __future__ import annotations

import json
import runpy
import sys

import numpy as np
import pandas as pd
import pytest

from ser_models.exceptions import ConfigError

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = ["model.encoder.source=tiny-wav2vec2", "model.encoder.normalize_waveform=false", "model.head_hidden=16"]


def run_module(monkeypatch, module: str, *args: str):
    monkeypatch.setattr(sys, "argv", [module, *args])
    return runpy.run_module(module, run_name="__main__")


@pytest.mark.slow_e2e
def test_layer_analysis_job(ray_local, demo_pool, tmp_path, monkeypatch):
    out = tmp_path / "layers"
    run_module(monkeypatch, "jobs.layer_analysis", "jobs/configs/layer_analysis_demo.yaml",
               f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}", f"feature_cache_dir={tmp_path / 'cache'}", *TINY,
               "model.dimensions=[arousal]", "seeds=[0]", "train.optim.epochs=2", "train.optim.batch_size=8",
               "similarity.repeats=2", "scorer.threads=1")
    probes = pd.read_parquet(out / "probes.parquet")
    # 2 tasks x (5 layers + the weighted sum) x 1 seed, each evaluated on dev and test
    assert len(probes) == 2 * 6 and set(probes["task"]) == {"categorical", "arousal"}
    assert probes[["dev", "test"]].notna().all().all()
    assert set(probes.loc[probes.task == "categorical", "metric"]) == {"ua"}
    weights = pd.read_parquet(out / "layer_weights.parquet")
    sums = weights.groupby(["task", "seed"])["weight"].sum()
    assert len(sums) == 2 and np.allclose(sums, 1.0)
    for name in ("metric_vs_layer.png", "layer_weights.png", "layers.md", "similarity.md"):
        assert (out / name).stat().st_size > 0, name
    assert "best layer" in (out / "layers.md").read_text()
    sim = json.loads((out / "similarity.json").read_text())
    assert [(s["column"], s["a"], s["b"]) for s in sim] == [("language", "en", "xx")]  # one corpus: skipped
    cka = np.asarray(sim[0]["cka"])
    assert cka.shape == (5, 5) and np.all((cka >= 0) & (cka <= 1 + 1e-9))
    assert len(sim[0]["most_similar"]) == 2 and set(sim[0]["within"]) == {"en", "xx"}
    assert (out / "cka_language_en_vs_xx.png").is_file()


ANCHOR = ["jobs/configs/anchor_demo.yaml", *TINY, "model.adapter.r=4", "scaling.backend=in_process",
          "scaling.cpus_per_worker=1", "train.optim.epochs=1", "train.optim.batch_size=8", "train.optim.max_crop_seconds=1.0"]


#: CORAL weight of the anchoring run: large enough that the CORAL term (about 3 nats here) stands out of the loss
WEIGHT = 1e5


def test_anchor_job_with_automatic_group_anchors_reports_both_languages_and_resumes(ray_local, demo_pool, tmp_path,
                                                                                   monkeypatch, capsys):
    out = tmp_path / "anchor"
    args = [*ANCHOR, f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}", "anchoring.auto=most_similar",
            "anchoring.top_k=1", "anchoring.group_size=2", "anchoring.similarity_clips_per_class=3",
            f"anchoring.weight={WEIGHT:g}"]
    metrics = run_module(monkeypatch, "jobs.anchor", *args)["main"]  # the module's main, unrun
    anchors = json.loads((out / "anchors.json").read_text())
    assert anchors["mode"] == "most_similar" and len(anchors["diagonal"]) == 5
    (group,) = anchors["groups"]
    assert len(group) == 2 and group[1] == group[0] + 1 and 1 <= group[0] <= 3  # layer 0 is never an anchor
    summary = json.loads((out / "cross_lingual.json").read_text())
    assert summary["test_target"]["n"] > 0 and summary["test_source"]["n"] > 0
    history = json.loads((out / "metrics.json").read_text())["history"]
    # train_loss = class loss + WEIGHT * CORAL (both means over the epoch's clips): take the reported CORAL
    # term out and a 4-class loss near chance (ln 4) must remain after the first epoch's two small steps
    coral = history[0]["train_coral"]
    assert WEIGHT * coral > 1.0, "the CORAL term is too small for the check below to tell it apart"
    assert history[0]["train_loss"] - WEIGHT * coral == pytest.approx(np.log(4), abs=0.2), history[0]
    assert "test xx (target)" in capsys.readouterr().out
    result = metrics(args)  # the same command again: finished, reused
    assert result["test_source"] == summary["test_source"]
    assert "already finished" in capsys.readouterr().out


def test_anchor_job_refuses_bad_configs_before_ray(demo_pool, tmp_path):
    from jobs.anchor import main

    base = [*ANCHOR, f"pool_dir={demo_pool.pool_dir}", f"output_dir={tmp_path / 'x'}"]
    with pytest.raises(ConfigError, match="trainable encoder weights"):
        main([*base, "model.adapter.kind=frozen"])
    with pytest.raises(ConfigError, match="target='fr'.*has no clip with language='fr'"):
        main([*base, "target=fr"])
    with pytest.raises(ConfigError, match="anchoring.layers holds 7"):
        main([*base, "anchoring.layers=[7]"])
    assert not (tmp_path / "x" / "anchors.json").exists()

"""``python -m jobs.adapt`` (two-stage source -> target adaptation) and ``python -m jobs.evaluate`` (the
cross-corpus matrix) end to end on two generated pools: the session's demo pool as the source and a small
pool of the ``natural`` style as the target."""

from __future__ import annotations

import json
import runpy
import sys

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = ["model.encoder.source=tiny-wav2vec2", "model.encoder.normalize_waveform=false", "model.adapter.kind=lora",
        "model.adapter.r=4", "model.head_hidden=16", "model.dimensions=[arousal,valence]",
        "scaling.backend=in_process", "train.optim.epochs=1", "train.optim.batch_size=8", "train.optim.max_crop_seconds=1.0",
        "target_train.optim.epochs=1", "target_train.optim.batch_size=8", "target_train.optim.max_crop_seconds=1.0"]


def run_module(monkeypatch, module: str, *args: str):
    monkeypatch.setattr(sys, "argv", [module, *args])
    return runpy.run_module(module, run_name="__main__")


@pytest.fixture(scope="module")
def natural_pool(ray_local, tmp_path_factory):
    from ser_models.data import PoolConfig, generate_corpus, prepare_pool
    from ser_models.testing import DEMO_LABELS

    root = tmp_path_factory.mktemp("natural")
    generate_corpus(root / "corpus", n=36, seed=7, corpus="natural", style="natural")
    prepare_pool(PoolConfig(manifest=str(root / "corpus" / "manifest.csv"), output_dir=str(root / "pool"),
                            labels=list(DEMO_LABELS), audio_format="flac", batch_size=8, num_workers=1))
    return root / "pool"


@pytest.fixture(scope="module")
def adapted(demo_pool, natural_pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapt")
    mp = pytest.MonkeyPatch()
    try:
        result = run_module(mp, "jobs.adapt", "jobs/configs/adapt_demo.yaml", f"source_pool_dir={demo_pool.pool_dir}",
                            f"target_pool_dir={natural_pool}", f"output_dir={out}", "target_train.freeze=[adapter]",
                            *TINY)
    finally:
        mp.undo()
    return out, result


def test_two_stages_run_and_stage_two_starts_from_stage_one(adapted):
    out, _ = adapted
    for stage in ("stage1_source", "stage2_target"):
        assert (out / stage / "checkpoint" / "model.safetensors").is_file()
        assert (out / stage / "metrics.json").is_file()
    one = load_file(out / "stage1_source" / "checkpoint" / "model.safetensors")
    two = load_file(out / "stage2_target" / "checkpoint" / "model.safetensors")
    assert one.keys() == two.keys()
    adapters = [k for k in one if k.startswith("encoder.")]
    assert adapters and all(torch.equal(one[k], two[k]) for k in adapters)  # target_train.freeze=[adapter]
    assert any(not torch.equal(one[k], two[k]) for k in one if k.startswith("head."))  # the head went on


def test_the_matrix_has_both_stages_on_both_pools(adapted):
    out, _ = adapted
    matrix = pd.read_csv(out / "cross_corpus" / "matrix.csv", index_col="trained_on")
    assert matrix.index.tolist() == ["acted (stage 1)", "acted->natural (stage 2)"]
    assert matrix.columns.tolist() == ["acted", "natural"]
    assert ((matrix >= 0) & (matrix <= 1)).all().all()  # UA
    evaluations = json.loads((out / "cross_corpus" / "evaluations.json").read_text())
    cell = evaluations["results"]["acted (stage 1)"]["natural"]
    assert cell["ua"] == pytest.approx(matrix.loc["acted (stage 1)", "natural"])
    assert {"ccc_arousal", "ccc_valence", "confusion"} <= set(cell) and cell["n"] > 0
    assert (out / "cross_corpus" / "matrix.png").stat().st_size > 1000


def test_rerun_reuses_both_finished_stages(adapted, demo_pool, natural_pool, monkeypatch, capsys):
    out, _ = adapted
    before = (out / "stage2_target" / "metrics.json").stat().st_mtime_ns
    run_module(monkeypatch, "jobs.adapt", "jobs/configs/adapt_demo.yaml", f"source_pool_dir={demo_pool.pool_dir}",
               f"target_pool_dir={natural_pool}", f"output_dir={out}", "target_train.freeze=[adapter]", *TINY,
               "evaluate_split=''")
    printed = capsys.readouterr().out
    assert printed.count("training already finished") == 2
    assert (out / "stage2_target" / "metrics.json").stat().st_mtime_ns == before


def test_evaluate_job_scores_a_checkpoint_on_a_pool_and_names_them(adapted, natural_pool, tmp_path, monkeypatch,
                                                                   capsys):
    out, _ = adapted
    ckpt = out / "stage2_target" / "checkpoint"
    run_module(monkeypatch, "jobs.evaluate", str(ckpt), str(natural_pool), "--metric", "ccc_valence",
               "--output-dir", str(tmp_path / "m"))  # on Ray Data actors
    printed = capsys.readouterr().out
    assert "ccc_valence (test split)" in printed and "stage2_target" in printed
    written = pd.read_csv(tmp_path / "m" / "matrix.csv", index_col="trained_on")
    assert written.index.tolist() == ["stage2_target"] and written.columns.tolist() == ["natural"]
    same = json.loads((out / "cross_corpus" / "evaluations.json").read_text())["results"]
    assert written.loc["stage2_target", "natural"] == pytest.approx(
        same["acted->natural (stage 2)"]["natural"]["ccc_valence"], abs=1e-5)  # scored the same way


def test_evaluate_job_refuses_a_path_that_is_neither(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        run_module(monkeypatch, "jobs.evaluate", str(tmp_path))
    assert "neither a model checkpoint" in capsys.readouterr().err

"""The anchoring sweep through ``jobs.sweep`` (``base: anchor``) and ``python -m jobs.distill`` followed by a
fine-tune of the student with the text branch, on the session's demo pool with tiny random encoders (a file of
its own so that pytest-xdist runs it beside test_layer_anchor_jobs.py)."""

from __future__ import annotations

import json
import runpy
import sys

import pandas as pd
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = ["model.encoder.source=tiny-wav2vec2", "model.encoder.normalize_waveform=false", "model.head_hidden=16"]
ANCHOR = ["jobs/configs/anchor_demo.yaml", *TINY, "model.adapter.r=4", "scaling.backend=in_process",
          "scaling.cpus_per_worker=1", "train.optim.epochs=1", "train.optim.batch_size=8", "train.optim.max_crop_seconds=1.0"]


def run_module(monkeypatch, module: str, *args: str):
    monkeypatch.setattr(sys, "argv", [module, *args])
    return runpy.run_module(module, run_name="__main__")


@pytest.mark.slow_e2e
def test_anchoring_sweep_runs_through_jobs_sweep(ray_local, demo_pool, tmp_path, monkeypatch):
    from ser_models.config import load_config
    from ser_models.runs.anchor import AnchorJobConfig

    out = tmp_path / "sweep"
    run_module(monkeypatch, "jobs.sweep", "jobs/configs/sweep_anchoring_demo.yaml", f"output_dir={out}",
               f"config.pool_dir={demo_pool.pool_dir}", *(f"config.{x}" for x in ANCHOR[1:]),
               "config.anchoring.similarity_clips_per_class=3", "num_samples=1", "scheduler.name=fifo",
               "tracking.mlflow=false", "tracking.tensorboard=false")
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 1 and (frame["status"] == "finished").all()
    assert {"anchoring.weight", "anchoring.group_size", "anchoring.auto"} <= set(frame.columns)
    for tid in frame["trial_id"]:
        assert json.loads((out / "trials" / tid / "cross_lingual.json").read_text())["test_source"]["n"] > 0
    best = load_config(AnchorJobConfig, out / "best.yaml")
    assert best.model.encoder.source == "tiny-wav2vec2" and best.anchoring.weight > 0


@pytest.mark.slow_e2e
def test_distill_job_then_finetune_the_student_with_the_text_branch(ray_local, demo_pool, tmp_path, monkeypatch,
                                                                      capsys):
    """``jobs.distill`` on Ray Train (tiny teacher, 1 epoch), then ``jobs.finetune`` over the student with the
    tiny text encoder reading the demo transcripts; the run says which inputs it used."""
    from jobs.finetune import main as finetune_main

    out = tmp_path / "distill"
    run_module(monkeypatch, "jobs.distill", "jobs/configs/distill_demo.yaml", f"pool_dir={demo_pool.pool_dir}",
               f"output_dir={out}", "teacher.source=tiny-wav2vec2", "teacher.normalize_waveform=false",
               "distill.optim.epochs=1", "distill.optim.batch_size=4", "distill.optim.max_crop_seconds=1.0")
    info = json.loads((out / "student" / "encoder.json").read_text())
    assert info["encoder"]["student_layers"] == 1 and info["encoder"]["checkpoint"].endswith("encoder.safetensors")
    assert info["student_params"] < 0.5 * info["teacher_params"]
    history = json.loads((out / "distill_metrics.json").read_text())["history"]
    assert len(history) == 1 and history[0]["loss"] > 0 and -1 <= history[0]["cos"] <= 1
    printed = capsys.readouterr().out
    assert "model.encoder.student_layers=1" in printed
    overrides = [line.strip() for line in printed.splitlines() if line.strip().startswith("model.encoder.source=")]
    result = finetune_main(["jobs/configs/finetune_smoke.yaml", f"pool_dir={demo_pool.pool_dir}",
                            f"output_dir={tmp_path / 'ft'}", *overrides[0].split(), "model.text.source=tiny-text",
                            "model.adapter.kind=frozen", "scaling.backend=in_process", "train.optim.epochs=1"])
    assert result["inputs"] == "audio+text" and "transcript" in result["note"]


@pytest.mark.slow_e2e  # a whole job run of 30 s or more on 2 cores: make test-e2e
def test_cross_lingual_active_learning_labels_only_the_target_and_anchors(ray_local, demo_pool, tmp_path,
                                                                          monkeypatch):
    """``jobs.after`` with ``cross_lingual``: the pool it labels and evaluates is the target language's, the
    source language's labelled clips join every round's training set, and CORAL anchors the two."""
    from ser_models.data import LabelLedger, Pool

    out = tmp_path / "xl"
    run_module(monkeypatch, "jobs.after", "jobs/configs/after_smoke.yaml", f"pool_dir={demo_pool.pool_dir}",
               f"output_dir={out}", "tapt_enabled=false", "scaling.backend=in_process", "train.optim.epochs=1",
               "cross_lingual.group_column=language", "cross_lingual.source=en", "cross_lingual.target=xx",
               "cross_lingual.anchoring.weight=1000", "cross_lingual.anchoring.layers=[2]")
    meta = Pool.open(demo_pool.pool_dir).metadata(columns=["utt_id", "language"], split="train")
    language = dict(zip(meta["utt_id"], meta["language"]))
    labelled = LabelLedger(out / "labels" / "ledger.parquet").labels()
    n_target = int((meta["language"] == "xx").sum())
    assert len(labelled) == round(0.5 * n_target) and {language[u] for u in labelled} == {"xx"}
    assert json.loads((out / "anchors.json").read_text())["groups"] == [[2]]
    for r in (0, 1):
        train = json.loads((out / "rounds" / f"round={r:03d}" / "train" / "metrics.json").read_text())
        assert train["history"][0]["train_coral"] >= 0
        n_source = int((meta["language"] == "en").sum())
        # the round trained on its ledger clips plus every labelled source clip
        assert train["history"][0]["train_clips"] == len(LabelLedger(out / "labels" / "ledger.parquet").as_of(r)) \
            + n_source
    from jobs.after import main
    from ser_models.exceptions import ConfigError

    with pytest.raises(ConfigError, match="cross_lingual.source='fr'.*no clip with language='fr'"):
        main(["jobs/configs/after_smoke.yaml", f"pool_dir={demo_pool.pool_dir}", f"output_dir={tmp_path / 'fr'}",
              "cross_lingual.group_column=language", "cross_lingual.source=fr", "cross_lingual.target=xx"])
    assert not (tmp_path / "fr").exists()  # refused before the run folder is claimed

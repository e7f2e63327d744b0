"""Smoke run of ``python -m jobs.finetune`` on its smoke config over the session's demo pool."""

from __future__ import annotations

import json
import re
import runpy
import sys

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CONFIG = "jobs/configs/finetune_smoke.yaml"


def run_job(monkeypatch, *args: str):
    monkeypatch.setattr(sys, "argv", ["jobs.finetune", *args])
    return runpy.run_module("jobs.finetune", run_name="__main__")


def test_finetune_smoke_config_end_to_end(ray_local, demo_pool, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ft"
    # The in-process backend: the Ray Train path of the same fit runs in tests/integration/test_finetune.py
    # and, through `ray job submit`, in tests/integration/test_cluster_submit.py.
    # Multi-task: the classes and the three dimensions of the demo pool (A/V/D drawn from each clip's prosody).
    run_job(monkeypatch, CONFIG, f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}", "scaling.backend=in_process",
            "model.dimensions=[arousal,valence,dominance]")
    printed = capsys.readouterr().out

    for name in ("checkpoint/model.json", "checkpoint/model.safetensors", "metrics.json", "confusion.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]  # train.optim.epochs in the smoke config
    splits = demo_pool.summary.splits
    assert metrics["dev"]["n"] == splits["dev"]["clips"] and metrics["test"]["n"] == splits["test"]["clips"]

    # The class counts line and the resolved config come first, the score table last.
    train_n = int(splits["train"]["clips"])
    assert re.search(rf"{train_n} training clips, per class neutral=\d+, happy=\d+, angry=\d+, sad=\d+; "
                     "dimensions arousal, valence, dominance", printed)
    assert f"output_dir: {out}" in printed and "epochs: 2" in printed
    header = re.search(r"split\s+WA\s+UA\s+F1\s+CCC\s+CCC arousal\s+CCC valence\s+CCC dominance\s+n\n", printed)
    assert header, printed
    for split in ("dev", "test"):
        s = metrics[split]
        assert {"pearson_arousal", "rmse_dominance", "ua_plus_ccc"} <= set(s)
        row = (rf"{split}\s+{s['wa']:.3f}\s+{s['ua']:.3f}\s+{s['macro_f1']:.3f}\s+{s['ccc']:.3f}\s+"
               rf"{s['ccc_arousal']:.3f}\s+{s['ccc_valence']:.3f}\s+{s['ccc_dominance']:.3f}\s+{s['n']}\n")
        assert re.search(row, printed[header.end():]), (split, printed)
    assert "dev_ccc_valence" in metrics["history"][-1]
    assert f"best epoch {metrics['best_epoch']}; checkpoint {out / 'checkpoint'}" in printed


def test_unknown_override_is_rejected_before_any_ray_work(tmp_path, monkeypatch, capsys):
    import ray

    def no_ray(*args, **kwargs):
        raise AssertionError("ray.init was called before the config was validated")

    monkeypatch.setattr(ray, "init", no_ray)
    with pytest.raises(SystemExit) as exit_info:
        run_job(monkeypatch, CONFIG, f"pool_dir={tmp_path}", f"output_dir={tmp_path / 'ft'}", "train.epochz=3")
    assert exit_info.value.code == 2
    assert re.search(r"^error: ConfigError: .*train\.epochz", capsys.readouterr().err, re.M)
    assert not (tmp_path / "ft").exists()


def test_dimension_values_outside_the_range_are_refused_before_ray(demo_pool, tmp_path, monkeypatch, capsys):
    import ray

    monkeypatch.setattr(ray, "init", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ray.init called")))
    with pytest.raises(SystemExit):
        run_job(monkeypatch, CONFIG, f"pool_dir={demo_pool.pool_dir}", f"output_dir={tmp_path / 'ft'}",
                "model.dimensions=[arousal]", "model.dimension_range=[2.0,4.0]")
    err = capsys.readouterr().err
    assert re.search(r"PoolError: .*\d+ clips have arousal outside model.dimension_range=\[2, 4\] \(e\.g\. '[^']+': "
                     r"[\d.]+\)", err), err


def test_finetune_with_given_speaker_statistics_trains_and_evaluates_each_clip_by_its_speaker(
        ray_local, demo_pool, tmp_path, monkeypatch):
    """``model.feature_norm=speaker`` with ``model.speaker_stats`` given (here: each demo speaker's statistics of
    the frozen tiny encoder's per-layer means): the checkpoint carries them, and the job's test NLL is the
    checkpoint's own over the test clips, each standardised by its speaker (it would differ without them)."""
    import numpy as np
    import torch

    from ser_models.data.clips import collect_clips
    from ser_models.encoders.speaker_norm import SpeakerMoments
    from ser_models.models.model import EmotionModel
    from ser_models.testing import tiny_model_config

    labels = ["neutral", "happy", "angry", "sad"]
    encoder_model = EmotionModel(tiny_model_config(adapter="frozen", labels=labels, normalize_waveform=False))
    clips = collect_clips(demo_pool.open().dataset(None).iter_batches(batch_size=64, batch_format="numpy"), labels)
    wavs = [torch.from_numpy(a.astype(np.float32) / 32768.0)[None] for a in clips.audio]
    with torch.no_grad():
        pooled = np.stack([encoder_model.encode_pooled(w, torch.tensor([w.shape[1]]))[0].numpy() for w in wavs])
    moments = SpeakerMoments()
    moments.add(pooled, clips.speakers)
    moments.result().save(tmp_path / "speakers.safetensors")

    out = tmp_path / "ft"
    run_job(monkeypatch, CONFIG, f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}", "scaling.backend=in_process",
            "model.adapter.kind=frozen", "model.feature_norm=speaker",
            f"model.speaker_stats={tmp_path / 'speakers.safetensors'}")
    metrics = json.loads((out / "metrics.json").read_text())
    model = EmotionModel.load_checkpoint(str(out / "checkpoint"))
    assert model.speaker_norm.stats.speakers == sorted(set(clips.speakers))
    test_ids = set(demo_pool.open().metadata(columns=["utt_id"], split="test")["utt_id"])
    index = [i for i, u in enumerate(clips.ids) if u in test_ids]
    with torch.no_grad():
        def nll(speakers):
            logp = [torch.log_softmax(model(wavs[i], torch.tensor([wavs[i].shape[1]]), speakers=s).logits, -1)[0]
                    for i, s in zip(index, speakers)]
            return float(-torch.stack([lp[clips.labels[i]] for lp, i in zip(logp, index)]).mean())

        own, pooled_only = nll([[clips.speakers[i]] for i in index]), nll([None] * len(index))
    assert metrics["test"]["nll"] == pytest.approx(own, rel=1e-4)
    assert metrics["test"]["nll"] != pytest.approx(pooled_only, rel=1e-3)

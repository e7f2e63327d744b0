"""``jobs.predict``: a checkpoint over a prepared pool, a raw manifest and an S3 bucket; resumable by shard."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from ser_models.config import load_config
from ser_models.data.clips import collect_clips
from ser_models.exceptions import CheckpointError
from ser_models.models.model import EmotionModel
from ser_models.runs.predict import PredictJobConfig, resolve_checkpoint, run_predict
from ser_models.testing import tiny_model_config

pytestmark = [pytest.mark.ray]
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real checkpoint folder of a tiny model with classes and arousal/valence (weights as initialised)."""
    torch.manual_seed(0)
    cfg = tiny_model_config(labels=["neutral", "happy", "angry", "sad"], normalize_waveform=False, head_hidden=16,
                            dimensions=["arousal", "valence"])
    model = EmotionModel(cfg)
    out = tmp_path_factory.mktemp("ckpt") / "ft"
    model.save_checkpoint(str(out / "checkpoint"))
    return out


def _config(checkpoint, out, **kw) -> PredictJobConfig:
    args = [f"checkpoint={checkpoint}", f"output_dir={out}", "shard_rows=16", "embedding=true",
            "scorer.num_actors=1", "scorer.num_cpus=1", "scorer.micro_batch_size=8",
            *[f"{k}={v}" for k, v in kw.items()]]
    return load_config(PredictJobConfig, ROOT / "jobs/configs/predict_demo.yaml", args)


def _read(out: Path):
    return pq.read_table(sorted((out / "predictions").glob("part-*.parquet"))).to_pandas()


def test_config_header_and_checkpoint_resolution(checkpoint, tmp_path):
    header = (ROOT / "jobs/configs/predict_demo.yaml").read_text().splitlines()[:5]
    assert any("ser-models predict --config predict_demo" in x for x in header)
    assert resolve_checkpoint(str(checkpoint)) == str(checkpoint / "checkpoint")
    run = tmp_path / "run" / "rounds"
    for r in ("round=000", "round=001"):
        EmotionModel.load_checkpoint(str(checkpoint / "checkpoint")).save_checkpoint(str(run / r / "train" / "checkpoint"))
    assert resolve_checkpoint(str(tmp_path / "run")).endswith("round=001/train/checkpoint")
    with pytest.raises(CheckpointError, match="no model.json in"):
        resolve_checkpoint(str(tmp_path / "nothing"))


@pytest.mark.failure_model
def test_predicts_every_clip_as_the_model_does_and_resumes_after_a_kill(ray_local, demo_pool, checkpoint, tmp_path):
    out = tmp_path / "pred"
    cfg = _config(checkpoint, out, pool_dir=demo_pool.pool_dir)
    # A driver killed (SIGKILL) right after its first shard: that shard stays, the rest is redone.
    # The killed driver starts a Ray of its own: nothing it leaves behind can hold the shared one's CPUs.
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "SER_FAILPOINT": "predict_after_shard",
           "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "jobs.predict", str(ROOT / "jobs/configs/predict_demo.yaml"),
            f"checkpoint={checkpoint}", f"output_dir={out}", f"pool_dir={demo_pool.pool_dir}", "shard_rows=16",
            "embedding=true", "scorer.num_actors=1", "scorer.num_cpus=1", "scorer.micro_batch_size=8"]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stdout + proc.stderr
    parts = sorted((out / "predictions").glob("part-*.parquet"))
    assert len(parts) == 1 and not (out / "summary.json").exists()
    first = parts[0].stat().st_mtime_ns
    plan = json.loads((out / "plan.json").read_text())
    assert len(plan["shards"]) >= 2

    summary = run_predict(cfg)
    assert parts[0].stat().st_mtime_ns == first  # the finished shard was skipped, not redone
    pred = _read(out)
    meta = demo_pool.open().metadata(columns=["utt_id"])
    assert sorted(pred.utt_id) == sorted(meta.utt_id) and pred.utt_id.is_unique
    assert summary["clips"] == len(meta) and sum(summary["per_class"].values()) == len(meta)
    assert set(pred.columns) >= {"predicted", "confidence", "probs", "arousal", "valence", "embedding"}
    _assert_the_models_own(pred, checkpoint, demo_pool)
    # A finished run is skipped whole on a rerun (every shard exists).
    again = run_predict(cfg)
    assert again["clips"] == summary["clips"] and parts[0].stat().st_mtime_ns == first


def _assert_the_models_own(pred, checkpoint, demo_pool, step: int = 7) -> None:
    """Every ``step``-th clip's probabilities, A/V values and class are the model's own, one clip at a time."""
    model = EmotionModel.load_checkpoint(str(checkpoint / "checkpoint"))
    clips = collect_clips(demo_pool.open().dataset(None).iter_batches(batch_size=64, batch_format="numpy"),
                          [], require_labels=False)
    by_id = pred.set_index("utt_id")
    with torch.no_grad():
        for i in range(0, len(clips), step):
            wav = torch.from_numpy(clips.audio[i].astype(np.float32) / 32768.0)[None]
            out_i = model(wav, torch.tensor([wav.shape[1]]))
            row = by_id.loc[clips.ids[i]]
            np.testing.assert_allclose(np.asarray(row.probs), torch.softmax(out_i.logits, -1)[0].numpy(), atol=1e-4)
            np.testing.assert_allclose([row.arousal, row.valence], out_i.dimensions[0].numpy(), atol=1e-4)
            assert row.predicted == model.labels[int(out_i.logits.argmax())]


def test_in_process_backend_predicts_what_the_model_does_without_ray(demo_pool, checkpoint, tmp_path, monkeypatch):
    import ser_models.runs.predict
    import ser_models.runtime

    def no_ray(*_, **__):
        raise AssertionError("backend=in_process connected to Ray")

    real = ser_models.runtime.connect_ray
    for module in list(sys.modules.values()):  # every module that imported it by name (runs.predict does)
        if getattr(module, "connect_ray", None) is real:
            monkeypatch.setattr(module, "connect_ray", no_ray)
    assert ser_models.runs.predict.connect_ray is no_ray
    out = tmp_path / "local"
    summary = run_predict(_config(checkpoint, out, pool_dir=demo_pool.pool_dir, backend="in_process"))
    pred = _read(out)
    assert sorted(pred.utt_id) == sorted(demo_pool.open().metadata(columns=["utt_id"]).utt_id)
    assert summary["clips"] == len(pred) and len(list((out / "predictions").glob("part-*.parquet"))) >= 2
    assert np.stack(pred.embedding).shape[0] == len(pred)
    _assert_the_models_own(pred, checkpoint, demo_pool, step=5)


def test_a_raw_manifest_is_prepared_on_the_fly(ray_local, demo_pool, checkpoint, tmp_path):
    out = tmp_path / "from_manifest"
    summary = run_predict(_config(checkpoint, out, pool_dir="''", manifest=demo_pool.manifest, split="test"))
    assert (out / "pool" / "summary.json").exists()
    test_ids = demo_pool.open().metadata(columns=["utt_id"], split="test").utt_id
    assert sorted(_read(out).utt_id) == sorted(test_ids) and summary["clips"] == len(test_ids)


@pytest.mark.slow
@pytest.mark.slow_e2e
def test_predicts_from_and_into_a_bucket(ray_local, demo_pool, checkpoint, s3_bucket, tmp_path, monkeypatch):
    from ser_models import io

    io.copy_dir(demo_pool.pool_dir, f"{s3_bucket}/pool")
    io.copy_dir(checkpoint / "checkpoint", f"{s3_bucket}/ckpt")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["jobs.predict", str(ROOT / "jobs/configs/predict_demo.yaml"),
                                      f"checkpoint={s3_bucket}/ckpt", f"pool_dir={s3_bucket}/pool",
                                      f"output_dir={s3_bucket}/pred", "shard_rows=16", "scorer.num_cpus=1"])
    runpy.run_module("jobs.predict", run_name="__main__")
    assert not list(cwd.iterdir())  # nothing written locally
    summary = json.loads(io.read_bytes(f"{s3_bucket}/pred/summary.json"))
    assert summary["clips"] == demo_pool.summary.kept
    assert "part-00000.parquet" in io.list_dir(f"{s3_bucket}/pred/predictions")


@pytest.fixture(scope="module")
def speaker_checkpoint(tmp_path_factory):
    """A tiny frozen-encoder model with ``model.feature_norm=speaker`` whose stored statistics are those of a
    'training pool' of two speakers the demo pool does not have."""
    import dataclasses

    from ser_models.encoders.speaker_norm import SpeakerMoments

    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_model_config(adapter="frozen", labels=["neutral", "happy", "angry", "sad"],
                                                normalize_waveform=False, head_hidden=0),
                              feature_norm="speaker", featurizer_layer=1)
    model = EmotionModel(cfg)
    rng = np.random.default_rng(0)
    moments = SpeakerMoments()
    moments.add(rng.normal(size=(20, model.encoder.num_layers, model.encoder.hidden_size)), ["tr_a", "tr_b"] * 10)
    model.speaker_norm.set_statistics(moments.result())
    out = tmp_path_factory.mktemp("spk_ckpt") / "ft"
    model.save_checkpoint(str(out / "checkpoint"))
    return out


def test_a_speaker_normalised_checkpoint_predicts_with_its_inputs_own_speaker_statistics(
        ray_local, demo_pool, speaker_checkpoint, tmp_path):
    """speaker_stats=input: each clip is standardised with its speaker's statistics over this input (computed
    by hand here from the model's own per-layer means); speaker_stats=checkpoint: the training pool's, which
    know none of these speakers, so every clip falls back to their pool part, and says so."""
    from ser_models.encoders.speaker_norm import SpeakerMoments

    out = tmp_path / "input"
    # In process (no actor start-ups): the Ray Data path of the same scoring is tested above.
    summary = run_predict(_config(speaker_checkpoint, out, pool_dir=demo_pool.pool_dir, embedding="false",
                                  backend="in_process"))
    meta = demo_pool.open().metadata(columns=["utt_id", "speaker"])
    assert summary["clips"] == len(meta)
    assert summary["speaker_norm"] == {"statistics": "input", "speakers": meta["speaker"].nunique(),
                                       "clips": len(meta), "fallback_clips": 0}
    model = EmotionModel.load_checkpoint(str(speaker_checkpoint / "checkpoint"))
    clips = collect_clips(demo_pool.open().dataset(None).iter_batches(batch_size=64, batch_format="numpy"),
                          [], require_labels=False)
    assert clips.speakers is not None
    with torch.no_grad():
        pooled = [model.encode_pooled(torch.from_numpy(a.astype(np.float32) / 32768.0)[None],
                                      torch.tensor([len(a)]))[0].numpy() for a in clips.audio]
    moments = SpeakerMoments()
    moments.add(np.stack(pooled), clips.speakers)
    model.speaker_norm.set_statistics(moments.result(model.cfg.speaker_shrinkage))
    pred = _read(out).set_index("utt_id")
    with torch.no_grad():
        for i in range(0, len(clips), 5):
            wav = torch.from_numpy(clips.audio[i].astype(np.float32) / 32768.0)[None]
            probs = torch.softmax(model(wav, torch.tensor([wav.shape[1]]), speakers=[clips.speakers[i]]).logits, -1)
            np.testing.assert_allclose(np.asarray(pred.loc[clips.ids[i], "probs"]), probs[0].numpy(), atol=1e-4)

    stored = run_predict(_config(speaker_checkpoint, tmp_path / "stored", pool_dir=demo_pool.pool_dir,
                                 embedding="false", speaker_stats="checkpoint", backend="in_process"))
    assert stored["speaker_norm"]["fallback_clips"] == len(meta) and stored["speaker_norm"]["speakers"] == 2
    assert not np.allclose(np.stack(_read(tmp_path / "stored").sort_values("utt_id")["probs"]),
                           np.stack(pred.sort_index()["probs"]))


@pytest.mark.slow_e2e  # a whole job run of 30 s or more on 2 cores: make test-e2e
def test_recordings_are_segmented_predicted_and_laid_out_as_timelines(ray_local, checkpoint, tmp_path, capsys):
    """``recordings=``: long files in, a timeline per recording out (each segment where it lies in its file,
    with the model's class, confidence, probabilities and dimensions), plus one recording's plot."""
    import pandas as pd

    from ser_models.data.synth import generate_archive

    info = generate_archive(tmp_path / "archive", seed=2, n_episodes=1, n_calls=1, episode_minutes=(0.4, 0.4),
                            call_minutes=(0.4, 0.4), music_share=0.0, m4a_share=0.5)
    out = tmp_path / "pred"
    cfg = _config(checkpoint, out, pool_dir="", recordings=info["recordings"], timeline_plot="call-0000")
    summary = run_predict(cfg)
    timeline = pd.read_parquet(out / "timeline.parquet")
    segments = pd.read_parquet(out / "segments" / "segments.parquet")
    assert summary["timeline"]["segments"] == len(timeline) == len(segments) == summary["clips"]
    assert set(timeline["recording"]) == {"episode-0000", "call-0000"}
    assert sorted(timeline.loc[timeline["recording"] == "call-0000", "channel"].unique()) == [0, 1]
    assert list(timeline.columns[:5]) == ["recording", "channel", "start", "end", "utt_id"]
    for col in ("predicted", "confidence", "probs", "arousal", "valence"):
        assert col in timeline.columns
    for _, g in timeline.groupby(["recording", "channel"]):
        assert (g["start"].diff().dropna() > 0).all() and (g["start"].iloc[1:].to_numpy() >= g["end"].iloc[:-1].to_numpy()).all()
    # every row's prediction is the one written for its segment
    preds = _read(out).set_index("utt_id")
    assert (preds.loc[timeline["utt_id"], "predicted"].to_numpy() == timeline["predicted"].to_numpy()).all()
    assert (out / "timeline_call-0000.png").stat().st_size > 10_000
    assert "timeline:" in capsys.readouterr().out

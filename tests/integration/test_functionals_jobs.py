"""``model.functionals`` through the jobs: jobs.after with the functionals and the standardisation chosen by CV,
its run and cache in an S3 bucket; jobs.predict on that run's checkpoint from audio (the scorer computes the
functionals, the speakers' statistics over its own input); jobs.finetune from a cache. Needs the optional
opensmile extra (``make test-opensmile``)."""

from __future__ import annotations

import json
import runpy
import sys

import numpy as np
import pytest

from ser_models import io
from ser_models.testing import TRAINED_HEAD_AFTER

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.opensmile, pytest.mark.slow]

AUTO = [*TRAINED_HEAD_AFTER, "tapt_enabled=false", "scaling.backend=in_process", "model.adapter.kind=frozen", "model.pooling=mean",
        "model.feature_norm=auto", "model.functionals=auto", "model.head_hidden=0", "model.head_input_norm=false",
        "model.featurizer_layer=1", "train.solver=lbfgs", "train.l2_c=auto", "train.cv_folds=2",
        "active.budget_fractions=[0.5,0.75]", "active.initial=random", "active.strategy.name=margin",
        "active.feature_cache=on"]


def _opensmile():
    return pytest.importorskip("opensmile", reason="the optional opensmile extra is not installed "
                                                   "(make test-opensmile installs it and runs these tests)")


def _job(module: str, argv: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [module, *argv])
    runpy.run_module(module, run_name="__main__")


def test_after_chooses_the_functionals_by_cv_on_s3_and_predict_reproduces_them_from_audio(
        demo_pool, s3_bucket, tmp_path, monkeypatch, capsys):
    _opensmile()
    import pyarrow.parquet as pq
    import torch

    from ser_models.data.clips import collect_clips
    from ser_models.encoders.functionals import EGEMAPS_DIM, EgemapsExtractor
    from ser_models.models.model import EmotionModel
    from ser_models.scoring.cache_rows import features_array
    from ser_models.scoring.feature_cache import FeatureCache

    run, cache_dir = f"{s3_bucket}/after", f"{s3_bucket}/cache"
    _job("jobs.after", ["jobs/configs/after_smoke.yaml", f"pool_dir={demo_pool.pool_dir}", f"output_dir={run}",
                        f"active.feature_cache_dir={cache_dir}", *AUTO], monkeypatch)
    out = capsys.readouterr().out
    rows = [json.loads(x) for x in io.read_bytes(f"{run}/metrics.jsonl").decode().splitlines()]
    assert len(rows) == 2
    for row in rows:  # logged per round: in metrics.jsonl and the round line
        chosen = row["features"]["chosen"]
        assert set(row["features"]["cv_scores"]) == {"pool", "speaker", "pool+egemaps", "speaker+egemaps"}
        assert row["features"]["functionals"] in ("none", "egemaps") and f"| features {chosen}" in out
    for name in ("feature_stats", "speaker_stats", "functionals_stats", "functionals_speaker_stats"):
        assert io.exists(f"{run}/{name}.safetensors"), name

    # The cache (in the bucket) holds each clip's functionals beside its hidden states: the extractor's values.
    [folder] = [n for n in io.list_dir(cache_dir) if n.endswith("-egemaps")]
    meta = json.loads(io.read_bytes(f"{cache_dir}/{folder}/meta.json"))
    assert meta["functionals"] == {"set": "egemaps", "dim": EGEMAPS_DIM}
    pool = demo_pool.open()
    clips = collect_clips(pool.dataset(None).iter_batches(batch_size=64, batch_format="numpy"), [],
                          require_labels=False)
    from ser_models.config import load_config
    from ser_models.encoders import build_encoder
    from ser_models.runs.after import AfterJobConfig
    from ser_models.scoring.cache_keys import feature_cache_key

    cfg = load_config(AfterJobConfig, "jobs/configs/after_smoke.yaml", [f"pool_dir={demo_pool.pool_dir}",
                                                                       f"output_dir={run}", *AUTO])
    cached = FeatureCache(cache_dir, feature_cache_key(pool, build_encoder(cfg.model.encoder), cfg.active.scorer),
                          functionals="egemaps")
    assert str(cached.dir).endswith(folder) and cached.ready
    table = cached.table()
    assert table.num_rows == len(clips)
    by_id = dict(zip(table.column("utt_id").to_pylist(), features_array(table.column("functionals"), (1, 88))))
    extractor = EgemapsExtractor()
    for i in range(0, len(clips), 11):
        np.testing.assert_allclose(by_id[clips.ids[i]], extractor.clip(clips.audio[i]), rtol=1e-5, atol=1e-6)

    # jobs.predict on the run's last checkpoint, from the audio: the functionals computed by the scorer and each
    # speaker's statistics over this input give the model's own outputs.
    pred = tmp_path / "pred"
    _job("jobs.predict", [f"checkpoint={run}", f"pool_dir={demo_pool.pool_dir}", f"output_dir={pred}",
                          "speaker_stats=checkpoint", "backend=in_process"], monkeypatch)
    table = pq.read_table(pred / "predictions" / "part-00000.parquet")
    ckpt = f"{run}/rounds/round=001/train/checkpoint"
    model = EmotionModel.load_checkpoint(ckpt)
    assert model.cfg.functionals_choice == rows[-1]["features"]["functionals"]
    order = [clips.ids.index(u) for u in table.column("utt_id").to_pylist()]
    wavs = [torch.from_numpy(clips.audio[i].astype(np.float32) / 32768.0)[None] for i in order]
    with torch.no_grad():
        probs = np.concatenate([torch.softmax(model(w, torch.tensor([w.shape[1]]), speakers=[clips.speakers[i]],
                                                    functionals=torch.from_numpy(extractor.clip(clips.audio[i])))
                                              .logits, -1).numpy() for w, i in zip(wavs, order)])
    np.testing.assert_allclose(np.asarray(table.column("probs").to_pylist()), probs, atol=1e-4)



def test_finetune_with_functionals_trains_from_a_cache_on_s3_and_predict_takes_the_inputs_speakers(
        demo_pool, s3_bucket, tmp_path, monkeypatch):
    _opensmile()
    import pyarrow.parquet as pq

    from ser_models.models.model import EmotionModel

    out = f"{s3_bucket}/ft"
    _job("jobs.finetune", ["jobs/configs/finetune_smoke.yaml", f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}",
                           f"feature_cache_dir={s3_bucket}/cache", "scaling.backend=in_process",
                           "model.adapter.kind=frozen", "model.functionals=egemaps", "model.feature_norm=speaker",
                           "train.optim.epochs=2"], monkeypatch)
    for name in ("speaker_stats", "functionals_stats", "functionals_speaker_stats"):  # computed from the cache
        assert io.exists(f"{out}/{name}.safetensors"), name
    model = EmotionModel.load_checkpoint(f"{out}/checkpoint")
    assert model.uses_functionals and model.functionals_norm.pool.fitted and model.functionals_norm.speaker.fitted
    assert "ua" in json.loads(io.read_bytes(f"{out}/metrics.json"))["test"]

    # jobs.predict, speaker_stats=input: each block's speaker statistics over this input (the whole pool, as the
    # training run's were), so the same predictions as with the checkpoint's own.
    probs = {}
    for source in ("input", "checkpoint"):
        pred = tmp_path / f"pred_{source}"
        _job("jobs.predict", [f"checkpoint={out}", f"pool_dir={demo_pool.pool_dir}", f"output_dir={pred}",
                              f"speaker_stats={source}", "backend=in_process"], monkeypatch)
        probs[source] = np.asarray(pq.read_table(pred / "predictions" / "part-00000.parquet").column("probs")
                                   .to_pylist())
    assert (tmp_path / "pred_input" / "speaker_stats.safetensors").exists()
    assert (tmp_path / "pred_input" / "functionals_speaker_stats.safetensors").exists()
    summary = json.loads((tmp_path / "pred_input" / "summary.json").read_text())
    assert summary["clips"] == 48 and summary["speaker_norm"]["fallback_clips"] == 0
    np.testing.assert_allclose(probs["input"], probs["checkpoint"], atol=1e-5)

"""``model.feature_norm=speaker`` inside the model: the head sees each clip standardised by its own speaker, on
every path (audio, cached means, frames, the L-BFGS fit), and checkpoints carry the statistics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ser_models.encoders.speaker_norm import SpeakerMoments
from ser_models.exceptions import ConfigError, TrainingError
from ser_models.model import SPEAKER_STATS_FILE, EmotionModel
from ser_models.testing import random_waveforms, tiny_model_config
from ser_models.training import TrainConfig
from ser_models.training.batching import ClipSet
from ser_models.training.fitting import fit, predict

LABELS = ["neutral", "happy", "angry", "sad"]


def _model(**kw) -> EmotionModel:
    cfg = dataclasses.replace(tiny_model_config("tiny-wav2vec2", "frozen", labels=LABELS, normalize_waveform=False),
                              **kw)
    torch.manual_seed(0)
    return EmotionModel(cfg)


def _stats_file(tmp_path, model, speakers=("a", "b"), n=24, seed=0, k=0.0):
    """Statistics of random per-layer means: speaker a centred at +5, b at -5 (known offsets)."""
    rng = np.random.default_rng(seed)
    shape = (model.encoder.num_layers, model.encoder.hidden_size)
    names = [speakers[i % len(speakers)] for i in range(n)]
    offset = np.asarray([5.0 if s == "a" else -5.0 for s in names])[:, None, None]
    x = (rng.normal(size=(n, *shape)) * 2 + offset).astype(np.float32)
    m = SpeakerMoments()
    m.add(x, names)
    stats = m.result(shrink_clips=k)
    stats.save(tmp_path / "speakers.safetensors")
    return str(tmp_path / "speakers.safetensors"), stats


def test_the_head_sees_each_clip_standardised_with_its_speakers_statistics(tmp_path):
    path, stats = _stats_file(tmp_path, _model())
    model = _model(feature_norm="speaker", speaker_stats=path, featurizer_layer=None).eval()
    plain = _model(featurizer_layer=None).eval()
    plain.load_state_dict(model.state_dict())
    wavs, lengths = random_waveforms(3, 0.5, seed=2)
    speakers = ["b", None, "a"]
    with torch.no_grad():
        pooled = model.encode_pooled(wavs, lengths)  # the cache keeps raw per-layer means
        z, fallbacks = stats.normalise(pooled.numpy(), speakers)
        assert fallbacks == 1
        expected = plain.forward_from_pooled(torch.from_numpy(z)).logits
        torch.testing.assert_close(model.forward_from_pooled(pooled, speakers=speakers).logits, expected)
        # standardising frames then mean-pooling == standardising the mean, per clip
        torch.testing.assert_close(model(wavs, lengths, speakers=speakers).logits, expected, atol=1e-4, rtol=1e-4)
        frames, frame_lengths = model.encode_frames(wavs, lengths)
        torch.testing.assert_close(model.forward_from_frames(frames, frame_lengths, speakers=speakers).logits,
                                   expected, atol=1e-4, rtol=1e-4)
        # a different speaker gives a different answer: the statistics are used, not ignored
        other = model.forward_from_pooled(pooled, speakers=["a", None, "b"]).logits
        assert not torch.allclose(other[0], expected[0])


def test_checkpoint_carries_the_speaker_statistics_beside_its_weights(tmp_path):
    path, stats = _stats_file(tmp_path, _model())
    model = _model(feature_norm="speaker", speaker_stats=path)
    model.save_checkpoint(str(tmp_path / "ckpt"))
    (tmp_path / "speakers.safetensors").unlink()
    back = EmotionModel.load_checkpoint(str(tmp_path / "ckpt"))
    assert back.speaker_norm.stats.speakers == ["a", "b"]
    np.testing.assert_array_equal(back.speaker_norm.stats.mean, stats.mean)
    assert back.cfg.speaker_stats == f"{tmp_path / 'ckpt'}/{SPEAKER_STATS_FILE}"
    pooled = torch.randn(2, model.encoder.num_layers, model.encoder.hidden_size)
    with torch.no_grad():
        torch.testing.assert_close(back.forward_from_pooled(pooled, speakers=["a", "b"]).logits,
                                   model.eval().forward_from_pooled(pooled, speakers=["a", "b"]).logits)


def test_statistics_of_the_first_states_serve_a_model_that_reads_one_of_them(tmp_path):
    model = _model()
    full, stats = _stats_file(tmp_path, model)
    first = dataclasses.replace(stats, mean=stats.mean[:, :2], std=stats.std[:, :2], pool_mean=stats.pool_mean[:2],
                                pool_std=stats.pool_std[:2])
    first.save(tmp_path / "first.safetensors")
    a = _model(feature_norm="speaker", speaker_stats=full, featurizer_layer=1).eval()
    b = _model(feature_norm="speaker", speaker_stats=str(tmp_path / "first.safetensors"), featurizer_layer=1).eval()
    pooled = torch.randn(2, model.encoder.num_layers, model.encoder.hidden_size)
    with torch.no_grad():
        torch.testing.assert_close(a.forward_from_pooled(pooled[:, :2], speakers=["a", "b"]).logits,
                                   b.forward_from_pooled(pooled[:, :2], speakers=["a", "b"]).logits)


def test_lbfgs_fit_and_predict_use_the_clip_speakers(tmp_path):
    """A class signal hidden under large speaker offsets: the speaker-normalised linear head finds it."""
    model = _model()
    shape = (model.encoder.num_layers, model.encoder.hidden_size)
    rng = np.random.default_rng(0)
    n = 160
    speakers = [f"s{i % 8}" for i in range(n)]
    y = rng.integers(0, 4, n)
    base = rng.normal(0, 30, size=(8, *shape))[[i % 8 for i in range(n)]]
    x = (base + rng.normal(size=(n, *shape)) + 2.0 * np.eye(4)[y][:, None, :].repeat(shape[1] // 4, -1)
         ).astype(np.float32)
    m = SpeakerMoments()
    m.add(x, speakers)
    m.result(shrink_clips=0).save(tmp_path / "s.safetensors")
    clips = ClipSet(ids=[f"c{i:03d}" for i in range(n)], labels=y.astype(np.int64), features=x, speakers=speakers)
    train, test = clips.subset(np.arange(0, 120)), clips.subset(np.arange(120, n))
    cfg = TrainConfig(solver="lbfgs", l2_c=1.0, epochs=1)
    spk = _model(feature_norm="speaker", speaker_stats=str(tmp_path / "s.safetensors"), featurizer_layer=0,
                 head_hidden=0, head_input_norm=False)
    fit(spk, train, None, cfg)
    probs = predict(spk, test, cfg, torch.device("cpu"))
    assert (probs.argmax(1) == y[120:]).mean() >= 0.9
    without = ClipSet(ids=test.ids, labels=test.labels, features=test.features)  # no speaker column
    probs_pool = predict(spk, without, cfg, torch.device("cpu"))
    assert not np.allclose(probs, probs_pool)


def test_speaker_norm_without_statistics_or_with_a_wrong_key_is_refused(tmp_path):
    model = _model(feature_norm="speaker")
    with pytest.raises(ConfigError, match="model.speaker_stats"):
        model.forward_from_pooled(torch.randn(1, model.encoder.num_layers, model.encoder.hidden_size))
    clips = ClipSet(ids=["x"], labels=np.zeros(1, np.int64),
                    features=np.zeros((1, model.encoder.num_layers, model.encoder.hidden_size), np.float32))
    with pytest.raises(TrainingError, match="model.speaker_stats"):
        fit(model, clips, None, TrainConfig(solver="lbfgs", l2_c=1.0, epochs=1))
    with pytest.raises(ConfigError, match="model.speaker_stats is set but model.feature_norm"):
        _model(speaker_stats=str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="model.speaker_shrinkage"):
        _model(feature_norm="speaker", speaker_shrinkage=-1)

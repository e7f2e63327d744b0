"""``model.feature_norm=speaker`` inside the model: the head sees each clip standardised by its own speaker, on
every path (audio, cached means, frames, the L-BFGS fit), and checkpoints carry the statistics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ser_models.data.clips import ClipSet
from ser_models.encoders.speaker_norm import SpeakerMoments
from ser_models.exceptions import ConfigError, TrainingError
from ser_models.models.model import SPEAKER_STATS_FILE, EmotionModel
from ser_models.testing import random_waveforms, tiny_model_config
from ser_models.training import OptimConfig, TrainConfig
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
    cfg = TrainConfig(optim=OptimConfig(epochs=1), solver="lbfgs", l2_c=1.0)
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
        fit(model, clips, None, TrainConfig(optim=OptimConfig(epochs=1), solver="lbfgs", l2_c=1.0))
    with pytest.raises(ConfigError, match="model.speaker_stats is set but model.feature_norm"):
        _model(speaker_stats=str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="model.speaker_shrinkage"):
        _model(feature_norm="speaker", speaker_shrinkage=-1)


def _auto_case(tmp_path, class_is_speaker: bool, n=160, seed=0):
    """Features of 8 speakers. ``class_is_speaker=False``: a small class shift under large speaker offsets
    (speaker standardisation reveals it). True: each speaker speaks one class, and the class lives in the
    speaker's offset alone (speaker standardisation erases it)."""
    model = _model()
    shape = (model.encoder.num_layers, model.encoder.hidden_size)
    rng = np.random.default_rng(seed)
    spk = np.arange(n) % 8
    if class_is_speaker:
        y = spk % 4
        centres = rng.normal(0, 3, size=(4, *shape))
        x = centres[y] + rng.normal(0, 1, size=(n, *shape))
    else:
        y = rng.integers(0, 4, n)
        x = rng.normal(0, 30, size=(8, *shape))[spk] + rng.normal(size=(n, *shape))
        x += 2.0 * np.eye(4)[y][:, None, :].repeat(shape[1] // 4, -1)
    names = [f"s{s}" for s in spk]
    m = SpeakerMoments()
    m.add(x.astype(np.float32), names)
    m.result(shrink_clips=0).save(tmp_path / "spk.safetensors")
    mean, std = x.mean(0), x.std(0)
    from ser_models.encoders.standardizer import save_statistics

    save_statistics(tmp_path / "pool.safetensors", mean, std, n)
    clips = ClipSet(ids=[f"c{i:03d}" for i in range(n)], labels=y.astype(np.int64), features=x.astype(np.float32),
                    speakers=names)
    auto = _model(feature_norm="auto", feature_stats=str(tmp_path / "pool.safetensors"),
                  speaker_stats=str(tmp_path / "spk.safetensors"), featurizer_layer=0, head_hidden=0,
                  head_input_norm=False)
    return auto, clips


@pytest.mark.parametrize("class_is_speaker, expected", [(False, "speaker"), (True, "pool")])
def test_auto_chooses_the_standardisation_that_cross_validates_better(tmp_path, class_is_speaker, expected):
    auto, clips = _auto_case(tmp_path, class_is_speaker)
    state = fit(auto, clips, None, TrainConfig(optim=OptimConfig(epochs=1), solver="lbfgs", l2_c="auto"))
    row = state.history[-1]
    assert row["feature_norm"] == expected and auto.norm == expected
    scores = row["feature_norm_cv"]["scores"]
    assert scores[expected] > scores["pool" if expected == "speaker" else "speaker"]
    assert row["l2_c_cv"]["scores"][row["l2_c_cv"]["grid"].index(row["l2_c"])] == pytest.approx(scores[expected])
    # The checkpoint keeps the choice: the reloaded model standardises the same way.
    auto.save_checkpoint(str(tmp_path / "ckpt"))
    back = EmotionModel.load_checkpoint(str(tmp_path / "ckpt"))
    assert back.cfg.feature_norm_choice == expected and back.norm == expected
    probs = predict(auto, clips, TrainConfig(), torch.device("cpu"))
    np.testing.assert_allclose(predict(back, clips, TrainConfig(), torch.device("cpu")), probs, atol=1e-5)


def test_auto_with_too_few_labels_to_cross_validate_keeps_pool_and_says_why(tmp_path):
    auto, clips = _auto_case(tmp_path, False)
    few = clips.subset([i for i in range(len(clips)) if clips.labels[i] != 0][:10] + [
        int(np.flatnonzero(clips.labels == 0)[0])])  # one clip of class 0: no fold can hold it out
    state = fit(auto, few, None, TrainConfig(optim=OptimConfig(epochs=1), solver="lbfgs", l2_c="auto"))
    assert state.history[-1]["feature_norm"] == "pool"
    assert "too few" in state.history[-1]["feature_norm_cv"]["reason"]


def test_auto_needs_the_lbfgs_solver_and_a_resumed_fit_keeps_its_choice(tmp_path):
    auto, clips = _auto_case(tmp_path, False)
    with pytest.raises(TrainingError, match="train.solver=lbfgs"):
        fit(auto, clips, None, TrainConfig(optim=OptimConfig(epochs=1), solver="adamw"))
    state = fit(auto, clips, None, TrainConfig(optim=OptimConfig(epochs=1), solver="lbfgs", l2_c=1.0))
    fresh, _ = _auto_case(tmp_path, False)
    fit(fresh, clips, None, TrainConfig(optim=OptimConfig(epochs=1), solver="lbfgs", l2_c=1.0), state=state)
    assert fresh.norm == auto.norm == "speaker"
    with pytest.raises(ConfigError, match="feature_norm_choice"):
        _model(feature_norm_choice="speaker")

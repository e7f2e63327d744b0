"""``model.functionals`` inside the model: the head reads the encoder's hidden state and the 88 functionals side by
side, each block standardised on its own (pool or speaker statistics); ``auto`` turns them on or off by CV; the
checkpoint carries their statistics. None of this needs openSMILE: the values here are constructed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ser_models.data.clips import ClipSet
from ser_models.encoders.functionals import EGEMAPS_DIM, FUNCTIONALS_SPEAKER_STATS_FILE
from ser_models.encoders.speaker_norm import SpeakerMoments
from ser_models.encoders.standardizer import save_statistics
from ser_models.exceptions import ConfigError, TrainingError
from ser_models.models.model import EmotionModel
from ser_models.testing import tiny_model_config
from ser_models.training import OptimConfig, TrainConfig
from ser_models.training.fitting import fit, predict

LABELS = ["neutral", "happy", "angry", "sad"]


def _model(**kw) -> EmotionModel:
    cfg = dataclasses.replace(tiny_model_config("tiny-wav2vec2", "frozen", labels=LABELS, normalize_waveform=False),
                              **kw)
    torch.manual_seed(0)
    return EmotionModel(cfg)


def _functionals_stats(tmp_path, rows: np.ndarray, speakers: list) -> tuple[str, str]:
    """The pool statistics and the speakers' (no shrinkage) of ``rows`` [N, 88]."""
    save_statistics(tmp_path / "f_pool.safetensors", rows.mean(0, keepdims=True), rows.std(0, keepdims=True),
                    len(rows))
    m = SpeakerMoments()
    m.add(rows[:, None, :], speakers)
    m.result(shrink_clips=0).save(tmp_path / "f_spk.safetensors")
    return str(tmp_path / "f_pool.safetensors"), str(tmp_path / "f_spk.safetensors")


def test_the_head_reads_the_hidden_state_and_the_standardised_functionals_side_by_side(tmp_path):
    rng = np.random.default_rng(0)
    rows = (rng.normal(size=(12, EGEMAPS_DIM)) * 7 + 100).astype(np.float32)
    speakers = ["a", "b", "c"] * 4
    pool_file, spk_file = _functionals_stats(tmp_path, rows, speakers)
    model = _model(functionals="egemaps", functionals_stats=pool_file, featurizer_layer=1).eval()
    hidden = model.encoder.hidden_size
    assert model.head.in_dim == hidden + EGEMAPS_DIM
    feats = torch.randn(12, model.encoder.num_layers, hidden)
    f = torch.from_numpy(rows)
    with torch.no_grad():
        x = model.head_input_from_pooled(feats, None, f)
    torch.testing.assert_close(x[:, :hidden], model.featurizer.forward_pooled(feats))
    expected = (rows - rows.mean(0)) / rows.std(0)
    np.testing.assert_allclose(x[:, hidden:].numpy(), expected, atol=1e-4)

    # per speaker: each clip by its own speaker's mean and std
    by_speaker = _model(functionals="egemaps", functionals_stats=pool_file, functionals_speaker_stats=spk_file,
                        feature_norm="speaker", speaker_stats=_encoder_speaker_stats(tmp_path, speakers),
                        featurizer_layer=1).eval()
    with torch.no_grad():
        z = by_speaker.head_input_from_pooled(feats, speakers, f)[:, hidden:].numpy()
    for s in "abc":
        own = rows[[i for i, x in enumerate(speakers) if x == s]]
        np.testing.assert_allclose(z[[i for i, x in enumerate(speakers) if x == s]],
                                   (own - own.mean(0)) / own.std(0), atol=1e-4)

    # the audio path reads them too, and refuses a batch without them
    with pytest.raises(ConfigError, match="needs each clip's eGeMAPS functionals"):
        model.forward_from_pooled(feats)


def _encoder_speaker_stats(tmp_path, speakers) -> str:
    model = _model()
    m = SpeakerMoments()
    m.add(np.random.default_rng(1).normal(size=(len(speakers), model.encoder.num_layers,
                                                model.encoder.hidden_size)).astype(np.float32), speakers)
    m.result(shrink_clips=0).save(tmp_path / "enc_spk.safetensors")
    return str(tmp_path / "enc_spk.safetensors")


def test_the_checkpoint_carries_the_functionals_statistics(tmp_path):
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(12, EGEMAPS_DIM)).astype(np.float32) * 3
    speakers = ["a", "b"] * 6
    pool_file, spk_file = _functionals_stats(tmp_path, rows, speakers)
    model = _model(functionals="egemaps", functionals_stats=pool_file, functionals_speaker_stats=spk_file,
                   feature_norm="speaker", speaker_stats=_encoder_speaker_stats(tmp_path, speakers)).eval()
    model.save_checkpoint(str(tmp_path / "ckpt"))
    (tmp_path / "f_pool.safetensors").unlink()  # the checkpoint must not need the files it started from
    (tmp_path / "f_spk.safetensors").unlink()
    assert (tmp_path / "ckpt" / FUNCTIONALS_SPEAKER_STATS_FILE).exists()
    back = EmotionModel.load_checkpoint(str(tmp_path / "ckpt"))
    feats = torch.randn(12, model.encoder.num_layers, model.encoder.hidden_size)
    with torch.no_grad():
        torch.testing.assert_close(back.forward_from_pooled(feats, None, speakers, torch.from_numpy(rows)).logits,
                                   model.forward_from_pooled(feats, None, speakers, torch.from_numpy(rows)).logits)


def test_bad_functionals_settings_are_refused_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="model.functionals must be one of"):
        _model(functionals="mfcc")
    with pytest.raises(ConfigError, match="model.adapter.kind=frozen"):
        _model(functionals="egemaps", adapter=dataclasses.replace(_model().cfg.adapter, kind="lora"))
    with pytest.raises(ConfigError, match="functionals_choice"):
        _model(functionals="egemaps", functionals_choice="none")
    with pytest.raises(ConfigError, match="model.functionals=none"):
        _model(functionals_stats=str(tmp_path / "x.safetensors"))
    model = _model(functionals="egemaps")
    clips = ClipSet(ids=["a", "b"], labels=np.array([0, 1]), features=np.zeros((2, 3, 32), np.float32),
                    functionals=np.zeros((2, EGEMAPS_DIM), np.float32))
    with pytest.raises(TrainingError, match="model.functionals_stats"):
        fit(model, clips, None, TrainConfig(optim=OptimConfig(epochs=1), solver="lbfgs", l2_c=1.0))


def _auto_case(tmp_path, signal_in: str, n=160, seed=0):
    """Classes carried by the functionals alone (``functionals``) or by the hidden state alone (``features``),
    the other block pure noise."""
    model = _model()
    shape = (model.encoder.num_layers, model.encoder.hidden_size)
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    x = rng.normal(size=(n, *shape))
    f = rng.normal(size=(n, EGEMAPS_DIM)) * 5 + 50
    if signal_in == "functionals":
        f[:, :4] += 15.0 * np.eye(4)[y]
    else:
        x[:, :, :4] += 1.5 * np.eye(4)[y][:, None, :]
    speakers = [f"s{i % 8}" for i in range(n)]
    pool_file, _ = _functionals_stats(tmp_path, f.astype(np.float32), speakers)
    save_statistics(tmp_path / "pool.safetensors", x.mean(0), x.std(0), n)
    clips = ClipSet(ids=[f"c{i:03d}" for i in range(n)], labels=y.astype(np.int64), features=x.astype(np.float32),
                    functionals=f.astype(np.float32), speakers=speakers)
    auto = _model(functionals="auto", functionals_stats=pool_file, feature_norm="pool",
                  feature_stats=str(tmp_path / "pool.safetensors"), featurizer_layer=0, head_hidden=0,
                  head_input_norm=False)
    return auto, clips


@pytest.mark.parametrize("signal_in, expected", [("functionals", "egemaps"), ("features", "none")])
def test_auto_turns_the_functionals_on_only_when_they_cross_validate_better(tmp_path, signal_in, expected):
    auto, clips = _auto_case(tmp_path, signal_in)
    state = fit(auto, clips, None, TrainConfig(optim=OptimConfig(epochs=1), solver="lbfgs", l2_c="auto"))
    row = state.history[-1]
    assert row["functionals"] == expected and auto.cfg.functionals_choice == expected
    assert "feature_norm" not in row  # fixed: not chosen
    scores = row["feature_norm_cv"]["scores"]
    assert set(scores) == {"no functionals", "egemaps"}
    other = "no functionals" if expected == "egemaps" else "egemaps"
    assert scores[row["feature_norm_cv"]["chosen"]] >= scores[other]
    if expected == "egemaps":
        assert scores["egemaps"] > scores["no functionals"] + 0.2
    # The checkpoint keeps the choice; off means the head reads zeros there: the same as no functionals at all.
    auto.save_checkpoint(str(tmp_path / "ckpt"))
    back = EmotionModel.load_checkpoint(str(tmp_path / "ckpt"))
    assert back.cfg.functionals_choice == expected and back.uses_functionals == (expected == "egemaps")
    probs = predict(auto, clips, TrainConfig(), torch.device("cpu"))
    np.testing.assert_allclose(predict(back, clips, TrainConfig(), torch.device("cpu")), probs, atol=1e-5)
    if expected == "none":
        weights = auto.head.out.weight.detach()
        assert float(weights[:, -EGEMAPS_DIM:].abs().max()) < 1e-4 * float(weights.abs().max())  # the penalty alone
        without = dataclasses.replace(clips, functionals=None)
        np.testing.assert_allclose(predict(auto, without, TrainConfig(), torch.device("cpu")), probs, atol=1e-6)


def test_auto_norm_and_functionals_are_chosen_jointly_and_logged(tmp_path):
    auto, clips = _auto_case(tmp_path, "functionals")
    spk = _encoder_speaker_stats(tmp_path, clips.speakers)
    m = SpeakerMoments()
    m.add(clips.functionals[:, None, :], clips.speakers)
    m.result(shrink_clips=10).save(tmp_path / "f_spk10.safetensors")
    both = _model(functionals="auto", functionals_stats=auto.cfg.functionals_stats,
                  functionals_speaker_stats=str(tmp_path / "f_spk10.safetensors"), feature_norm="auto",
                  feature_stats=auto.cfg.feature_stats, speaker_stats=spk, featurizer_layer=0, head_hidden=0,
                  head_input_norm=False)
    logged = []
    state = fit(both, clips, None, TrainConfig(optim=OptimConfig(epochs=1), solver="lbfgs", l2_c="auto"), log=logged.append)
    row = state.history[-1]
    assert set(row["feature_norm_cv"]["scores"]) == {"pool", "speaker", "pool+egemaps", "speaker+egemaps"}
    assert row["functionals"] == "egemaps" and row["feature_norm"] in ("pool", "speaker")
    assert any("feature_norm and functionals=auto" in line and row["feature_norm_cv"]["chosen"] in line
               for line in logged), logged

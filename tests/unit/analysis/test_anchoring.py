"""Layer anchoring: config, groups, the loss, and a fit that aligns an unlabelled target domain (tiny encoder)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ser_models.analysis import AnchoringConfig, anchor_groups
from ser_models.analysis.anchoring import sample_target_ids
from ser_models.data.clips import ClipSet
from ser_models.exceptions import ConfigError, TrainingError
from ser_models.models.model import EmotionModel
from ser_models.testing import tiny_model_config
from ser_models.training.anchoring import AnchorFeed, anchoring_loss, coral_loss, union_layers
from ser_models.training.batching import make_batch
from ser_models.training.config import OptimConfig, TrainConfig
from ser_models.training.fitting import fit


def test_config_validation():
    assert AnchoringConfig().layers == [2]
    for bad, match in (({"weight": -1.0}, "weight"), ({"auto": "closest"}, "auto"),
                       ({"layers": []}, "layers is empty"), ({"group_size": 0}, "group_size"),
                       ({"target_batch_size": 1}, "target_batch_size")):
        with pytest.raises(ConfigError, match=match):
            AnchoringConfig(**bad)
    AnchoringConfig(layers=[], auto="most_similar")  # auto chooses them


def test_anchor_groups():
    assert anchor_groups([2], 1, 5) == [[2]]
    assert anchor_groups([1, -1], 1, 5) == [[1], [4]]
    assert anchor_groups([2], 3, 5) == [[2, 3, 4]]  # LAM-GL: three consecutive layers
    assert union_layers([[1, 2], [2, 3]]) == [1, 2, 3]
    with pytest.raises(ConfigError, match="outside"):
        anchor_groups([5], 1, 5)
    with pytest.raises(ConfigError, match="runs past"):
        anchor_groups([3], 3, 5)


def test_target_clips_are_a_seeded_random_sample_not_the_first_ids():
    ids = [f"spk{s:02d}_{i:03d}" for s in range(10) for i in range(50)]  # sort order groups speakers
    assert sample_target_ids(ids[:8], 10, seed=0) == sorted(ids[:8])  # fewer than the cap: all of them
    picked = sample_target_ids(reversed(ids), 100, seed=0)
    assert len(picked) == 100 and picked == sorted(picked) and set(picked) <= set(ids)
    assert len({i[:5] for i in picked}) == 10  # every speaker, not the first two
    assert picked == sample_target_ids(ids, 100, seed=0) != sample_target_ids(ids, 100, seed=1)


def test_anchoring_loss_is_the_mean_coral_of_group_means():
    torch.manual_seed(0)
    layers = [1, 2, 3]
    source, target = torch.randn(8, 3, 4), torch.randn(6, 3, 4) * 2
    groups = [[1], [2, 3]]
    expected = (coral_loss(source[:, 0], target[:, 0]) + coral_loss(source[:, 1:].mean(1), target[:, 1:].mean(1))) / 2
    assert torch.allclose(anchoring_loss(source, target, groups, layers), expected)
    assert float(anchoring_loss(source, source + 1.0, groups, layers)) == pytest.approx(0.0, abs=1e-7)


def _clips(n: int, seed: int, domain: str) -> ClipSet:
    """Two classes (low/high pitch); the target domain is louder and noisier (a shift the classes survive)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    audio = []
    for y in labels:
        t = np.arange(int(16000 * 0.5)) / 16000
        amp, noise = (0.1, 0.01) if domain == "source" else (0.6, 0.2)
        wav = amp * np.sin(2 * np.pi * (150 if y == 0 else 600) * t) + noise * rng.standard_normal(len(t))
        audio.append((np.clip(wav, -1, 1) * 32767).astype(np.int16))
    return ClipSet(ids=[f"{domain}{i:03d}" for i in range(n)], labels=labels if domain == "source" else
                   np.full(n, -1), audio=audio)


CFG = TrainConfig(optim=OptimConfig(epochs=3, batch_size=4, lr=3e-3, max_crop_seconds=0.5, seed=0), lr_head=1e-2,
                  early_stopping_patience=0, eval_batch_size=8)


def _model():
    torch.manual_seed(0)
    return EmotionModel(tiny_model_config("tiny-wav2vec2", "lora", labels=["low", "high"], normalize_waveform=False))


def _anchor_gap(model, source: ClipSet, target: ClipSet, groups) -> float:
    layers = union_layers(groups)
    model.eval()
    with torch.no_grad():
        s = make_batch(source, np.arange(len(source)), None, None)
        t = make_batch(target, np.arange(len(target)), None, None)
        return float(anchoring_loss(model.layer_means(s.wavs, s.lengths, layers),
                                    model.layer_means(t.wavs, t.lengths, layers), groups, layers))


def test_fit_with_anchoring_aligns_the_target_and_weight_zero_is_plain_training():
    source, target = _clips(16, 0, "source"), _clips(16, 1, "target")
    groups = [[2]]
    plain = fit(_model(), source, None, CFG, log=lambda _: None)
    zero = fit(_model(), source, None, CFG, log=lambda _: None, anchor=AnchorFeed(target, groups, 0.0, 4))
    assert [h["train_loss"] for h in zero.history] == [h["train_loss"] for h in plain.history]
    assert "train_coral" not in zero.history[-1]

    cfg = copy.deepcopy(CFG)
    cfg.optim.epochs = 6
    base, anchored = _model(), _model()
    gap_before = _anchor_gap(base, source, target, groups)
    fit(base, source, None, cfg, log=lambda _: None)
    state = fit(anchored, source, None, cfg, log=lambda _: None, anchor=AnchorFeed(target, groups, 1e4, 4))
    assert all(h["train_coral"] >= 0 for h in state.history)
    # the CORAL gap at the anchor layer ends far below its start and below plain training's (measured 20x)
    assert _anchor_gap(anchored, source, target, groups) < 0.25 * min(_anchor_gap(base, source, target, groups),
                                                                       gap_before)


def test_fit_refuses_anchoring_from_cached_features():
    cfg = tiny_model_config("tiny-wav2vec2", "frozen", labels=["a", "b"])
    model = EmotionModel(cfg)
    feats = ClipSet(ids=["a", "b"], labels=np.array([0, 1]), features=np.zeros((2, model.encoder.num_layers,
                                                                                  model.encoder.hidden_size),
                                                                                 np.float32))
    with pytest.raises(TrainingError, match="needs audio"):
        fit(model, feats, None, copy.deepcopy(CFG), log=lambda _: None,
            anchor=AnchorFeed(_clips(4, 0, "target"), [[1]], 1.0, 2))

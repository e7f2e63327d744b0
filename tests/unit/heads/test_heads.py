from __future__ import annotations

import pytest
import torch

from ser_models.exceptions import ConfigError
from ser_models.heads import (
    AttentiveStatisticsPooling,
    EmotionHead,
    MeanPooling,
    build_pooling,
    class_weights,
    weighted_cross_entropy,
)


def _padded(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 6, 3, generator=g)
    lengths = torch.tensor([6, 2])
    garbage = x.clone()
    garbage[1, 2:] = 1e3
    return x, garbage, lengths


def test_mean_pooling_ignores_padding():
    x, garbage, lengths = _padded()
    out = MeanPooling(3)(garbage, lengths)
    torch.testing.assert_close(out[0], x[0].mean(0))
    torch.testing.assert_close(out[1], x[1, :2].mean(0))


def test_attentive_stats_pooling():
    x, garbage, lengths = _padded()
    pool = AttentiveStatisticsPooling(3, attention_hidden=8)
    out = pool(garbage, lengths)
    assert out.shape == (2, 6) and pool.output_dim == 6
    torch.testing.assert_close(out[1], pool(x[1:, :2], lengths[1:])[0])
    # zeroed scorer -> uniform weights: plain mean and (population) std over the valid frames
    torch.nn.init.zeros_(pool.attention[2].weight)
    torch.nn.init.zeros_(pool.attention[2].bias)
    out = pool(garbage, lengths)
    torch.testing.assert_close(out[1, :3], x[1, :2].mean(0))
    torch.testing.assert_close(out[0, 3:], x[0].std(0, unbiased=False).clamp(min=1e-3))
    out.sum().backward()  # finite gradient even where one frame gives zero variance
    assert all(torch.isfinite(p.grad).all() for p in pool.parameters() if p.grad is not None)


def test_single_frame_std_is_finite():
    pool = AttentiveStatisticsPooling(4)
    x = torch.randn(1, 3, 4, requires_grad=True)
    pool(x, torch.tensor([1])).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_build_pooling_rejects_unknown():
    assert isinstance(build_pooling("mean", 4), MeanPooling)
    with pytest.raises(ConfigError, match="model.pooling"):
        build_pooling("max", 4)


def test_head_returns_logits_and_embedding():
    head = EmotionHead(6, 4, hidden=5, dropout=0.5).eval()
    logits, dims, emb = head(torch.randn(3, 6))
    assert logits.shape == (3, 4) and emb.shape == (3, 5) and dims.shape == (3, 0) and bool((emb >= 0).all())
    torch.testing.assert_close(logits, head.out(emb))
    with pytest.raises(ConfigError, match="model.labels"):
        EmotionHead(6, 1)
    with pytest.raises(ConfigError, match="no output"):
        EmotionHead(6, 0)


def test_class_weights():
    w = class_weights([10, 30, 0, 20], 4)
    assert w[2] == 0 and w[0] > w[3] > w[1]
    torch.testing.assert_close(w[[0, 1, 3]].mean(), torch.tensor(1.0))
    torch.testing.assert_close(class_weights({0: 5, 1: 5}, 2), torch.ones(2))
    with pytest.raises(ValueError, match="3 entries"):
        class_weights([1, 2], 3)


def test_weighted_cross_entropy_upweights_rare_class():
    logits = torch.zeros(4, 2)
    targets = torch.tensor([0, 0, 0, 1])
    torch.testing.assert_close(weighted_cross_entropy(logits, targets), torch.log(torch.tensor(2.0)))
    logits = torch.tensor([[2.0, 0.0]] * 4)  # always predicts class 0
    w = class_weights([3, 1], 2)
    assert weighted_cross_entropy(logits, targets, w) > weighted_cross_entropy(logits, targets)

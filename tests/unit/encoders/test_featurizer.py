from __future__ import annotations

import pytest
import torch

from ser_models.encoders import LayerFeaturizer
from ser_models.exceptions import ConfigError, EncoderError
from ser_models.heads import masked_mean


def _states(L=4, B=2, F=6, D=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, F, D, generator=g) for _ in range(L))


def test_weighted_sum_starts_as_average_and_learns():
    hs = _states()
    f = LayerFeaturizer(4)
    torch.testing.assert_close(f(hs), torch.stack(hs).mean(0))
    f(hs).pow(2).sum().backward()
    assert f.layer_weights.grad is not None and f.layer_weights.grad.abs().sum() > 0
    with torch.no_grad():
        f.layer_weights.copy_(torch.tensor([0.0, 0.0, 50.0, 0.0]))
    torch.testing.assert_close(f(hs), hs[2], atol=1e-5, rtol=0)


@pytest.mark.parametrize("layer, expect", [(0, 0), (3, 3), (-1, 3), (-4, 0)])
def test_single_layer(layer, expect):
    hs = _states()
    f = LayerFeaturizer(4, layer)
    assert f.layer_weights is None and len(list(f.parameters())) == 0
    assert f(hs) is hs[expect]
    assert f.weights()[expect] == 1


@pytest.mark.parametrize("layer", [4, -5])
def test_out_of_range_layer_names_key(layer):
    with pytest.raises(ConfigError, match="model.featurizer_layer"):
        LayerFeaturizer(4, layer)


def test_pooled_path_commutes_with_mean():
    hs = _states(L=5, F=7)
    lengths = torch.tensor([7, 3])
    f = LayerFeaturizer(5)
    with torch.no_grad():
        f.layer_weights.copy_(torch.randn(5))
    pooled_layers = masked_mean(torch.stack(hs), lengths).transpose(0, 1)  # [B, L, D]
    torch.testing.assert_close(f.forward_pooled(pooled_layers), masked_mean(f(hs), lengths))


def test_wrong_layer_count_raises():
    with pytest.raises(EncoderError, match="layerdrop"):
        LayerFeaturizer(5)(_states(L=4))
    with pytest.raises(EncoderError, match=r"\[B, 5, D\]"):
        LayerFeaturizer(5).forward_pooled(torch.zeros(2, 4, 3))

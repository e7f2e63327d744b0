"""Dimensional (A/V/D) outputs: the scaled sigmoid head, CCC, the losses and the regression metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser_models.exceptions import ConfigError
from ser_models.heads import DimensionalOutput, EmotionHead, check_dimensions, concordance, dimensional_loss
from ser_models.metrics import metrics_table, regression_metrics


def test_dimensional_output_starts_mid_scale_and_stays_inside():
    out = DimensionalOutput(5, 3, (1.0, 5.0))
    assert out(torch.zeros(2, 5)).tolist() == [[3.0] * 3] * 2  # zero bias, zero input: the middle
    with torch.no_grad():
        out.linear.weight.fill_(100.0)
    y = out(torch.randn(64, 5) * 10).detach()
    assert y.shape == (64, 3) and float(y.min()) >= 1.0 and float(y.max()) <= 5.0
    with pytest.raises(ConfigError, match="dimension_range"):
        DimensionalOutput(5, 3, (2.0, 2.0))


def test_multitask_head_shares_the_embedding():
    head = EmotionHead(6, 4, hidden=5, dropout=0.0, num_dimensions=2).eval()
    logits, dims, emb = head(torch.randn(3, 6))
    assert logits.shape == (3, 4) and dims.shape == (3, 2) and emb.shape == (3, 5)
    torch.testing.assert_close(dims, head.dimensions(emb))
    alone = EmotionHead(6, 0, hidden=5, num_dimensions=3)
    logits, dims, _ = alone(torch.randn(2, 6))
    assert logits.shape == (2, 0) and dims.shape == (2, 3) and alone.out is None


def test_check_dimensions_orders_and_refuses():
    assert check_dimensions(["dominance", "arousal"]) == ["arousal", "dominance"]
    with pytest.raises(ConfigError, match="model.dimensions"):
        check_dimensions(["arousal", "joy"])
    with pytest.raises(ConfigError, match="model.dimensions"):
        check_dimensions(["arousal", "arousal"])


def test_concordance_matches_the_formula_and_skips_nan():
    rng = np.random.default_rng(0)
    t = rng.normal(3, 1, (50, 2))
    p = 0.5 * t + rng.normal(0.3, 0.4, (50, 2))
    want = [2 * np.cov(t[:, k], p[:, k], bias=True)[0, 1]
            / (t[:, k].var() + p[:, k].var() + (t[:, k].mean() - p[:, k].mean()) ** 2) for k in range(2)]
    got = concordance(torch.tensor(p), torch.tensor(t))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
    torch.testing.assert_close(concordance(torch.tensor(t), torch.tensor(t)), torch.ones(2))
    # NaN targets leave their rows out of that column only
    t_nan = t.copy()
    t_nan[:10, 0] = np.nan
    got = concordance(torch.tensor(p), torch.tensor(t_nan))
    np.testing.assert_allclose(got[0].item(), regression_metrics(t[10:, :1], p[10:, :1], ["a"])["ccc_a"], rtol=1e-5)
    np.testing.assert_allclose(got[1].item(), want[1], rtol=1e-5)
    one = torch.tensor([[1.0], [np.nan]])
    assert torch.isnan(concordance(one, one)).all()  # a single known value has no CCC


def test_losses_fall_to_zero_at_the_truth_and_give_gradients():
    t = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 1.5]])
    for kind in ("ccc", "mse"):
        assert float(dimensional_loss(t, t, kind)) == pytest.approx(0.0, abs=1e-6)
        pred = torch.full_like(t, 3.0, requires_grad=True)
        loss = dimensional_loss(pred + 0.01 * torch.arange(3.0)[:, None], t, kind)
        loss.backward()
        assert float(loss.detach()) > 0.1 and pred.grad is not None and bool(pred.grad.abs().sum() > 0)
    none = torch.full((2, 2), float("nan"))
    p = torch.zeros(2, 2, requires_grad=True)
    assert float(dimensional_loss(p, none)) == 0.0
    with pytest.raises(ConfigError, match="dimensional_loss"):
        dimensional_loss(t, t, "l1")


def test_regression_metrics_and_table():
    t = np.array([[1.0, 2.0], [2.0, np.nan], [3.0, 4.0], [4.0, 5.0]])
    p = np.array([[1.5, 2.0], [2.0, 9.0], [3.5, 4.0], [4.0, 5.0]])
    m = regression_metrics(t, p, ["arousal", "valence"])
    assert m["ccc_valence"] == pytest.approx(1.0) and m["rmse_valence"] == pytest.approx(0.0)
    assert m["pearson_arousal"] == pytest.approx(np.corrcoef(t[:, 0], p[:, 0])[0, 1])
    assert m["rmse_arousal"] == pytest.approx(np.sqrt(0.5 / 4))
    assert m["ccc"] == pytest.approx((m["ccc_arousal"] + 1.0) / 2)
    assert np.isnan(regression_metrics(t[:1], p[:1], ["arousal", "valence"])["ccc"])
    table = metrics_table({"dev": {**m, "n": 4}, "test": None})
    assert "CCC arousal" in table and "dev" in table and "test" not in table

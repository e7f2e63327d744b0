"""Dimensional emotion (arousal / valence / dominance): the regression output and its losses.

Values live on the corpus's rating scale (the demo pool and MSP-Podcast use [1, 5]; ``model.dimension_range``).
The output layer maps the shared head embedding to that interval through a sigmoid, so a prediction can
never leave the scale, and it starts at the middle of it.

Training minimises ``1 - CCC`` per dimension (the concordance correlation coefficient, Lin 1989): unlike MSE
it rewards getting the spread and the mean right as well as the ranking, which is what the SER literature
reports. CCC is computed over the batch, so batches need at least two clips with a value.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ser_models.exceptions import ConfigError

#: The dimensions a pool row may carry, in the order heads and metrics use.
DIMENSIONS: tuple[str, ...] = ("arousal", "valence", "dominance")
#: ``train.dimensional_loss`` choices.
DIMENSIONAL_LOSSES = ("ccc", "mse")


def check_dimensions(names: Sequence[str], key: str = "model.dimensions") -> list[str]:
    """The names in canonical order; raises :class:`ConfigError` naming ``key`` on unknown or repeated ones."""
    names = list(names)
    unknown = [n for n in names if n not in DIMENSIONS]
    if unknown or len(set(names)) != len(names):
        raise ConfigError(f"{key} must be distinct names from {list(DIMENSIONS)}, got {names!r}")
    return [d for d in DIMENSIONS if d in names]


class DimensionalOutput(nn.Module):
    """Linear -> sigmoid scaled to ``[low, high]``: embedding ``[B, E]`` to dimension values ``[B, K]``.

    Args:
        hidden: E, the head embedding width.
        num_dimensions: K.
        value_range: (low, high) of the rating scale.
    """

    def __init__(self, hidden: int, num_dimensions: int, value_range: tuple[float, float] = (1.0, 5.0)):
        super().__init__()
        low, high = (float(v) for v in value_range)
        if not high > low:
            raise ConfigError(f"model.dimension_range must be [low, high] with high > low, got {list(value_range)}")
        self.low, self.high = low, high
        self.linear = nn.Linear(hidden, num_dimensions)
        nn.init.zeros_(self.linear.bias)  # sigmoid(0): every prediction starts at the middle of the scale

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """Args: embedding ``[B, E]``. Returns ``[B, K]`` in ``[low, high]``."""
        return self.low + (self.high - self.low) * torch.sigmoid(self.linear(embedding))

    def extra_repr(self) -> str:
        return f"range=[{self.low:g}, {self.high:g}]"


def concordance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Concordance correlation coefficient per column, ignoring NaN targets.

    ``CCC = 2 cov(x, y) / (var x + var y + (mean x - mean y)^2)`` with population (1/n) moments.

    Args:
        pred: ``[B, K]`` predictions.
        target: ``[B, K]`` true values, NaN where unknown.

    Returns:
        ``[K]`` float32 in [-1, 1]; NaN for a column with fewer than 2 known values. A column whose values
        and predictions are all equal (zero denominator) gives 0.
    """
    pred, target = pred.float(), target.float()
    known = torch.isfinite(target)
    n = known.sum(0).float()
    w = known.float()
    t = torch.where(known, target, torch.zeros_like(target))
    denom_n = n.clamp(min=1.0)
    mp, mt = (pred * w).sum(0) / denom_n, (t * w).sum(0) / denom_n
    dp, dt = (pred - mp) * w, (t - mt) * w
    var_p, var_t, cov = (dp * dp).sum(0) / denom_n, (dt * dt).sum(0) / denom_n, (dp * dt).sum(0) / denom_n
    denom = var_p + var_t + (mp - mt) ** 2
    ccc = torch.where(denom > 0, 2 * cov / denom.clamp(min=1e-12), torch.zeros_like(denom))
    return torch.where(n >= 2, ccc, torch.full_like(ccc, float("nan")))


def dimensional_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "ccc") -> torch.Tensor:
    """Mean over dimensions of ``1 - CCC`` (``kind="ccc"``) or of the MSE (``"mse"``), NaN targets ignored.

    Args:
        pred: ``[B, K]``.
        target: ``[B, K]``, NaN where unknown.
        kind: ``ccc`` | ``mse``.

    Returns:
        Scalar; 0 (with a gradient path) when no column has enough known values.
    """
    if kind not in DIMENSIONAL_LOSSES:
        raise ConfigError(f"train.dimensional_loss must be one of {list(DIMENSIONAL_LOSSES)}, got {kind!r}")
    if kind == "ccc":
        per_dim = 1.0 - concordance(pred, target)
    else:
        known = torch.isfinite(target)
        err = torch.where(known, pred.float() - torch.nan_to_num(target.float()), torch.zeros_like(pred.float()))
        per_dim = (err ** 2).sum(0) / known.sum(0).clamp(min=1)
        per_dim = torch.where(known.any(0), per_dim, torch.full_like(per_dim, float("nan")))
    valid = torch.isfinite(per_dim)
    if not bool(valid.any()):
        return pred.sum() * 0.0
    return per_dim[valid].mean()

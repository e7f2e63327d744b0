"""Uncertainty scores: plain functions from class probabilities to one number per clip.

Every score follows one convention: **higher means more uncertain**, so a strategy can always take the
top-k. Inputs are probabilities (rows summing to 1), not logits. Zeros are safe: ``0 * log 0`` is taken as 0.
"""

from __future__ import annotations

import numpy as np

__all__ = ["REGRESSION_SCORES", "SCORES", "bald", "entropy", "least_confidence", "margin", "mc_variance"]

_TINY = np.finfo(np.float64).tiny


def _as_probs(probs: np.ndarray, ndim: int, name: str) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {p.shape}")
    if p.shape[-1] < 2:
        raise ValueError(f"{name} needs at least 2 classes in its last axis, got shape {p.shape}")
    return p


def _entropy_last_axis(p: np.ndarray) -> np.ndarray:
    # where() keeps 0*log(0) at 0 instead of nan; computing in float64 avoids -inf*0 on float32 underflow.
    return -np.sum(np.where(p > 0, p * np.log(np.maximum(p, _TINY)), 0.0), axis=-1)


def entropy(probs: np.ndarray) -> np.ndarray:
    """Predictive entropy in nats.

    Args:
        probs: [N, C] class probabilities.

    Returns:
        [N] float64, in [0, log C]; uniform rows score highest.
    """
    return _entropy_last_axis(_as_probs(probs, 2, "probs"))


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """``1 - max_c p_c``.

    Args:
        probs: [N, C] class probabilities.

    Returns:
        [N] float64 in [0, 1 - 1/C].
    """
    return 1.0 - _as_probs(probs, 2, "probs").max(axis=1)


def margin(probs: np.ndarray) -> np.ndarray:
    """Margin uncertainty ``1 - (p_top1 - p_top2)`` (small margin = uncertain, so it scores high).

    Args:
        probs: [N, C] class probabilities.

    Returns:
        [N] float64 in [0, 1].
    """
    p = _as_probs(probs, 2, "probs")
    top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def bald(mc_probs: np.ndarray) -> np.ndarray:
    """BALD mutual information ``H(mean_t p_t) - mean_t H(p_t)`` from MC-dropout samples, in nats.

    Args:
        mc_probs: [N, T, C] class probabilities of T stochastic forward passes.

    Returns:
        [N] float64 >= 0 (clipped: rounding can make it -1e-16); high when the samples disagree.

    References:
        Houlsby et al., 2011, "Bayesian Active Learning for Classification and Preference Learning".
        Gal, Islam and Ghahramani, 2017, "Deep Bayesian Active Learning with Image Data".
    """
    p = _as_probs(mc_probs, 3, "mc_probs")
    mi = _entropy_last_axis(p.mean(axis=1)) - _entropy_last_axis(p).mean(axis=1)
    return np.maximum(mi, 0.0)


def mc_variance(mc_predictions: np.ndarray) -> np.ndarray:
    """Spread of MC-dropout regression outputs: the variance over samples, summed over dimensions.

    Args:
        mc_predictions: [N, T, K] dimensional predictions of T stochastic forward passes.

    Returns:
        [N] float64 >= 0; high where the dropout samples disagree (the regression analogue of BALD).

    References:
        Gal and Ghahramani, 2016, "Dropout as a Bayesian Approximation" (predictive variance).
    """
    p = np.asarray(mc_predictions, dtype=np.float64)
    if p.ndim != 3 or p.shape[1] < 2 or p.shape[2] < 1:
        raise ValueError(f"mc_predictions must be [N, T >= 2, K >= 1], got shape {p.shape}")
    return p.var(axis=1).sum(axis=1)


#: name -> score over ``mc_predictions [N, T, K]`` (dimensional outputs).
REGRESSION_SCORES = {"mc_variance": mc_variance}

#: name -> score over ``probs [N, C]`` (``bald`` takes ``mc_probs [N, T, C]``).
SCORES = {
    "entropy": entropy,
    "least_confidence": least_confidence,
    "margin": margin,
    "bald": bald,
}

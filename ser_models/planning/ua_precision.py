"""How precise a test set makes the reported UA: the half-width of its interval at ``n`` clips, and the smallest
``n`` reaching a target half-width.

UA (unweighted accuracy) is the mean of the K per-class recalls. On a test set of ``n`` clips
with class shares ``p_k``, class ``k`` has ``n_k = n * p_k`` clips and its recall is a binomial proportion, so

    Var(UA) = deff * (1 / K^2) * sum_k r_k (1 - r_k) / n_k,    half-width = z * sqrt(Var(UA))

with ``r_k`` the expected recall of class ``k`` (the expected UA for every class unless per-class recalls are
given) and ``z`` the normal quantile of the confidence (1.96 for 95 %). ``deff`` is the design effect: clips
are not independent when several come from one recording or speaker (a model that fails on one voice fails on
most of its clips). With ``m`` test clips per recording on average (the clips' mean, ``sum m_r^2 / sum m_r``,
when recordings differ in size) and an intra-recording correlation ``ICC`` of being right,
``deff = 1 + (m - 1) * ICC`` (Kish): the test set is worth ``n / deff`` independent clips.

The smallest ``n`` reaching a target half-width ``h`` has a closed form,
``n = deff * z^2 * sum_k r_k (1 - r_k) / p_k / (K^2 h^2)``; a seeded simulation of random test sets (class
counts drawn at random, recordings as clusters with a Beta-distributed recall) checks the formula's normal
approximation at every size shown.

Pure numpy/scipy.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["kish_design_effect", "required_test_size", "simulate_ua", "simulated_half_width", "ua_half_width",
           "ua_variance", "z_value"]


def z_value(confidence: float) -> float:
    """Two-sided normal quantile of ``confidence`` (1.96 for 0.95)."""
    # Imported here: scipy.stats takes about 0.9 s to import, and every shard task imports this module.
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def kish_design_effect(cluster_size: float, icc: float) -> float:
    """Variance inflation ``1 + (m - 1) * ICC`` of clusters of ``m`` clips (clips' mean) with correlation ICC."""
    return 1.0 + (float(cluster_size) - 1.0) * float(icc)


def ua_variance(n: float, shares, recalls, design_effect: float = 1.0) -> float:
    """Variance of UA on a test set of ``n`` clips.

    Args:
        n: test clips.
        shares: ``[K]`` class shares (sum 1).
        recalls: ``[K]`` expected per-class recalls.
        design_effect: variance inflation of clustered clips (1 = independent).

    Returns:
        ``deff / K^2 * sum_k r_k (1 - r_k) / (n p_k)``, in UA^2.
    """
    p, r = np.asarray(shares, float), np.asarray(recalls, float)
    return float(design_effect * np.sum(r * (1 - r) / (n * p)) / len(p) ** 2)


def ua_half_width(n: float, shares, recalls, z: float = 1.96, design_effect: float = 1.0) -> float:
    """Half-width ``z * sqrt(Var(UA))`` of the UA interval on ``n`` test clips (see :func:`ua_variance`)."""
    return z * math.sqrt(ua_variance(n, shares, recalls, design_effect))


def required_test_size(half_width: float, shares, recalls, z: float = 1.96, design_effect: float = 1.0) -> int:
    """Smallest whole test size whose UA half-width is at most ``half_width`` (at least 1)."""
    p, r = np.asarray(shares, float), np.asarray(recalls, float)
    n = design_effect * z**2 * float(np.sum(r * (1 - r) / p)) / (len(p) ** 2 * half_width**2)
    return max(1, math.ceil(n - 1e-9))


def simulate_ua(n: int, shares, recalls, *, draws: int, seed: int, cluster_size: float = 1.0,
                icc: float = 0.0) -> np.ndarray:
    """UA of ``draws`` simulated test sets of ``n`` clips whose true per-class recalls are ``recalls``.

    Independent clips (``cluster_size`` 1 or ``icc`` 0): each set's class counts are multinomial (a random draw
    from a pool with these shares), each class's correct count binomial; a class absent from a set is left out
    of its mean, as UA does. Clustered clips: class counts fixed at ``round(n p_k)`` (at least 1), split into
    clusters of about ``cluster_size`` clips, each cluster's recall drawn from a Beta with mean ``r_k`` and
    intra-cluster correlation ``icc`` (a beta-binomial: its variance carries exactly the design effect).

    Returns:
        ``[draws]`` UA values.
    """
    rng = np.random.default_rng(seed)
    p, r = np.asarray(shares, float), np.asarray(recalls, float)
    if cluster_size <= 1 or icc <= 0:
        counts = rng.multinomial(n, p / p.sum(), size=draws)  # [draws, K]
        correct = rng.binomial(counts, r)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nanmean(np.where(counts > 0, correct / counts, np.nan), axis=1)
    recall = np.zeros((draws, len(p)))
    for k, (share, rk) in enumerate(zip(p, r)):
        nk = max(1, round(n * share))
        sizes = np.array([len(c) for c in np.array_split(np.arange(nk), max(1, round(nk / cluster_size)))])
        if 0 < rk < 1:
            ab = 1 / icc - 1  # Beta(a, b) with a + b = 1/ICC - 1 has intra-cluster correlation ICC
            q = rng.beta(rk * ab, (1 - rk) * ab, size=(draws, len(sizes))) if icc < 1 else \
                (rng.random((draws, len(sizes))) < rk).astype(float)
            recall[:, k] = rng.binomial(sizes, q).sum(axis=1) / nk
        else:
            recall[:, k] = rk
    return recall.mean(axis=1)


def simulated_half_width(n: int, shares, recalls, *, confidence: float = 0.95, draws: int = 10000, seed: int = 0,
                         cluster_size: float = 1.0, icc: float = 0.0) -> float:
    """Half the central ``confidence`` range of simulated UA values (:func:`simulate_ua`): the half-width the
    formula approximates, without its normal approximation."""
    ua = simulate_ua(n, shares, recalls, draws=draws, seed=seed, cluster_size=cluster_size, icc=icc)
    lo, hi = np.nanquantile(ua, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return float(hi - lo) / 2

"""Greedy sampling for regression targets (arousal / valence / dominance): GSx, GSy and iGS.

Each pick is the unlabelled clip farthest from everything labelled or already picked, measured

* ``input`` (GSx): in the model's embedding space (the head's penultimate layer), i.e. greedy k-center;
* ``output`` (GSy): between the clip's predicted dimensions and the known values of the labelled clips (the
  predictions, for clips picked earlier in the same batch: they have no label yet);
* ``both`` (iGS): the product of the two distances, taken per centre before the minimum, so a clip counts
  as covered only when some labelled clip is close to it in both spaces.

GSx runs on :func:`~ser_models.active.strategies.kcenter.greedy_kcenter` (FAISS cells, exact). GSy and iGS
keep each candidate's current minimum and update it with one pass per pick: O(U * (L + n) * E) in all for U
candidates, L labelled clips, n picks and E embedding dimensions, computed in chunks of rows.

References:
    Wu, Lin and Huang, 2019, "Active learning for regression using greedy sampling", Information Sciences
    474: 90-105.
"""

from __future__ import annotations

import numpy as np

from ser_models.active.index import as_float32
from ser_models.active.strategies.base import QueryStrategy, ShardPlan
from ser_models.active.strategies.diversity import _kcenter
from ser_models.active.strategies.kcenter import KCenterStats
from ser_models.exceptions import PoolError

__all__ = ["GREEDY_SPACES", "GreedySamplingStrategy", "greedy_sampling"]

#: ``space`` values: what the distance is measured in.
GREEDY_SPACES = ("input", "output", "both")
_CHUNK_ROWS = 4096


def _distances(a: np.ndarray, b: np.ndarray, a_sq: np.ndarray | None = None) -> np.ndarray:
    """[A, B] Euclidean distances between rows (float32, via the Gram trick, clipped at 0); ``a_sq`` [A] are
    the rows' squared norms when the caller has them (a per-pick update would recompute them every pick)."""
    a_sq = (a * a).sum(1) if a_sq is None else a_sq
    sq = a_sq[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))


def _central_row(x: np.ndarray) -> int:
    """The row closest to the rows' mean: Wu et al.'s first pick when nothing is labelled."""
    return int(np.argmin(_distances(x, x.mean(0, keepdims=True))[:, 0]))


def greedy_sampling(x: np.ndarray, y_pred: np.ndarray, n: int, space: str, x_known: np.ndarray | None = None,
                    y_known: np.ndarray | None = None) -> np.ndarray:
    """Greedy sampling picks among candidates for GSy (``space="output"``) or iGS (``"both"``).

    Args:
        x: [U, E] candidate embeddings.
        y_pred: [U, K] candidate dimensional predictions.
        n: picks, ``1 <= n <= U``.
        space: ``output`` or ``both``.
        x_known: [L, E] embeddings of the labelled clips (None / empty = nothing labelled).
        y_known: [L, K] their known dimensional values.

    Returns:
        [n] int64 candidate rows in pick order. With nothing labelled, the first pick is the candidate closest
        to the candidates' mean embedding (Wu et al.'s start).
    """
    if space not in ("output", "both"):
        raise ValueError(f"greedy_sampling space must be 'output' or 'both', got {space!r}")
    x, y_pred = as_float32(x, "x"), as_float32(y_pred, "y_pred")
    num = len(x)
    if not 1 <= n <= num:
        raise ValueError(f"n must be in [1, {num}], got {n}")
    best = np.full(num, np.inf, np.float32)
    picks: list[int] = []
    if x_known is not None and len(x_known):
        xk, yk = as_float32(x_known, "x_known"), as_float32(y_known, "y_known")
        for start in range(0, num, _CHUNK_ROWS):
            rows = slice(start, start + _CHUNK_ROWS)
            d = _distances(y_pred[rows], yk)
            if space == "both":
                d *= _distances(x[rows], xk)
            best[rows] = d.min(1)
    else:
        picks.append(_central_row(x))
    x_sq, y_sq = (x * x).sum(1), (y_pred * y_pred).sum(1)
    taken = np.zeros(num, bool)
    for p in picks:
        taken[p] = True
    while len(picks) < n:
        if picks:  # fold the latest pick in as a centre (its predicted values stand in for a label)
            c = picks[-1]
            d = _distances(y_pred, y_pred[c:c + 1], y_sq)[:, 0]
            if space == "both":
                d *= _distances(x, x[c:c + 1], x_sq)[:, 0]
            np.minimum(best, d, out=best)
        masked = np.where(taken, -np.inf, best)
        pick = int(np.argmax(masked))  # ties: the first row, so a seed fully fixes the result
        picks.append(pick)
        taken[pick] = True
    return np.asarray(picks, dtype=np.int64)


class GreedySamplingStrategy(QueryStrategy):
    """Greedy sampling for dimensional targets (Wu et al., 2019): ``gsx``, ``gsy`` or ``igs``.

    Args:
        space: ``input`` (GSx), ``output`` (GSy) or ``both`` (iGS).
        reduce_dim: GSx only: as for :class:`~ser_models.active.strategies.KCenterStrategy`.
    """

    name = "greedy_sampling"

    def __init__(self, space: str = "both", reduce_dim: int | None = None, num_threads: int | None = None):
        super().__init__(num_threads)
        if space not in GREEDY_SPACES:
            raise ValueError(f"space must be one of {list(GREEDY_SPACES)}, got {space!r}")
        self.space, self.reduce_dim = space, reduce_dim
        self.last_stats: KCenterStats | None = None

    def _select(self, scored, candidates, labelled, n, seed):
        x = scored.embeddings
        if self.space == "input":
            self.last_stats = KCenterStats()
            first = None
            if not len(labelled):
                first = _central_row(x[candidates])
            return _kcenter(scored, candidates, labelled, n, first, self.reduce_dim, seed, self.last_stats)
        if scored.predictions is None or scored.predictions.shape[1] == 0:
            raise PoolError(f"{self!r} measures distances between dimensional outputs, but the pool was scored "
                            "without them: set model.dimensions (arousal / valence / dominance)")
        known = labelled
        y_known = None
        if len(labelled):
            if scored.targets is None:
                raise PoolError(f"{self!r} needs the labelled clips' dimensional values (ScoredPool.targets)")
            y_known = scored.targets[labelled]
            finite = np.isfinite(y_known).all(1)
            known, y_known = labelled[finite], y_known[finite]  # clips labelled without values are no centres
        rows = greedy_sampling(x[candidates], scored.predictions[candidates], n,
                               "output" if self.space == "output" else "both",
                               x_known=x[known] if len(known) else None, y_known=y_known)
        return candidates[rows]

    def shard_plan(self, n):
        return ShardPlan(centres=True, local=True)

    def _params(self):
        return {"space": self.space, "reduce_dim": self.reduce_dim}

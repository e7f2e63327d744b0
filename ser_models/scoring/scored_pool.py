"""``ScoredPool``: what the pool scorer produced for the clips a query strategy may choose from.

It lives with the scorer, not with the strategies, because the scorer builds it (``Scores.scored_pool``) and
scoring sits below active learning: the strategies read it, nothing here reads a strategy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ser_models.exceptions import PoolError

__all__ = ["ScoredPool"]


@dataclass
class ScoredPool:
    """What the pool scorer produced for the clips a strategy may choose from.

    Attributes:
        ids: [N] clip ids (str), unique.
        probs: [N, C] class probabilities (float32).
        embeddings: [N, E] float32 clip embeddings (converted to float32 C-contiguous on construction).
        mc_probs: [N, T, C] probabilities of T MC-dropout passes, or None when the scorer ran none.
        grad_embedding_parts: optional ``(a [N, C], h [N, E'])`` whose outer product ``a_i h_i^T`` is BADGE's
            gradient embedding; None derives ``a = p - onehot(argmax p)`` and ``h = embeddings``.
        predictions: [N, K] dimensional predictions (arousal / valence / dominance), or None.
        mc_predictions: [N, T, K] dimensional predictions of T MC-dropout passes, or None.
        targets: [N, K] known dimensional values (the ledger's, for labelled clips), NaN elsewhere, or None:
            greedy sampling in output space measures distances to them.
        costs: [N] what labelling each clip costs (seconds of audio), or None: with it, uncertainty scores are
            divided by the cost (``active.strategy.cost_aware``), so a long clip must be more informative to win.
        labels: [N] int64 class index of each labelled clip (the ledger's), -1 elsewhere, or None: ``auto``
            simulates active learning on the labelled clips with them.
    """

    ids: np.ndarray
    probs: np.ndarray
    embeddings: np.ndarray
    mc_probs: np.ndarray | None = None
    grad_embedding_parts: tuple[np.ndarray, np.ndarray] | None = None
    predictions: np.ndarray | None = None
    mc_predictions: np.ndarray | None = None
    targets: np.ndarray | None = None
    costs: np.ndarray | None = None
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids).astype(str)
        n = len(self.ids)
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if self.labels.shape != (n,) or (self.labels >= self.probs.shape[-1]).any():
                raise PoolError(f"ScoredPool.labels must be [N={n}] class indices below C or -1, got shape "
                                f"{self.labels.shape}")
        self.probs = np.asarray(self.probs, dtype=np.float32)
        # FAISS reads raw memory: a strided or float64 view would give garbage neighbours.
        self.embeddings = np.ascontiguousarray(self.embeddings, dtype=np.float32)
        if self.probs.ndim != 2 or len(self.probs) != n:
            raise PoolError(f"ScoredPool.probs must be [N={n}, C], got shape {self.probs.shape}")
        if self.embeddings.ndim != 2 or len(self.embeddings) != n:
            raise PoolError(f"ScoredPool.embeddings must be [N={n}, E], got shape {self.embeddings.shape}")
        if self.mc_probs is not None:
            self.mc_probs = np.asarray(self.mc_probs, dtype=np.float32)
            if self.mc_probs.ndim != 3 or len(self.mc_probs) != n or self.mc_probs.shape[2] != self.probs.shape[1]:
                raise PoolError(
                    f"ScoredPool.mc_probs must be [N={n}, T, C={self.probs.shape[1]}], got {self.mc_probs.shape}")
        k = None
        for name in ("predictions", "mc_predictions", "targets"):
            values = getattr(self, name)
            if values is None:
                continue
            values = np.asarray(values, dtype=np.float32)
            want = 3 if name == "mc_predictions" else 2
            if values.ndim != want or len(values) != n or (k is not None and values.shape[-1] != k):
                raise PoolError(f"ScoredPool.{name} must be [N={n}, {'T, ' if want == 3 else ''}K] with one K "
                                f"throughout, got shape {values.shape}")
            k = values.shape[-1]
            setattr(self, name, values)
        # A NaN probability would rank as the most certain clip (entropy) or the first BADGE pick: refuse it.
        for name, values in (("probs", self.probs), ("embeddings", self.embeddings), ("mc_probs", self.mc_probs),
                             ("predictions", self.predictions), ("mc_predictions", self.mc_predictions)):
            if values is not None:
                bad = ~np.isfinite(values.reshape(n, -1)).all(axis=1)
                if bad.any():
                    shown = ", ".join(repr(str(i)) for i in self.ids[bad][:10]) + (" ..." if bad.sum() > 10 else "")
                    raise PoolError(f"ScoredPool.{name} holds non-finite values for {int(bad.sum())} of {n} clips: "
                                    f"{shown} (the model diverged or a clip decoded to NaN; rerun scoring)")
        if self.costs is not None:
            self.costs = np.asarray(self.costs, dtype=np.float64)
            if self.costs.shape != (n,) or not (np.isfinite(self.costs) & (self.costs > 0)).all():
                raise PoolError(f"ScoredPool.costs must be [N={n}] finite values > 0 (seconds per clip), got shape "
                                f"{self.costs.shape}")
        if self.grad_embedding_parts is not None:
            a, h = (np.asarray(v, dtype=np.float32) for v in self.grad_embedding_parts)
            if a.ndim != 2 or h.ndim != 2 or len(a) != n or len(h) != n:
                raise PoolError(f"ScoredPool.grad_embedding_parts must be ([N={n}, C], [N={n}, E]), "
                                f"got {a.shape} and {h.shape}")
            self.grad_embedding_parts = (a, h)
        index = pd.Index(self.ids)
        if not index.is_unique:
            dup = index[index.duplicated()].unique()[:10].tolist()
            raise PoolError(f"ScoredPool.ids must be unique; duplicated: {dup}")

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        mc = None if self.mc_probs is None else self.mc_probs.shape
        return (f"ScoredPool(n={len(self)}, classes={self.probs.shape[1]}, embedding_dim={self.embeddings.shape[1]}, "
                f"mc_probs={mc})")

"""The strategy contract: ``ScoredPool`` in, ``n`` unique unlabelled clip ids out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import faiss
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ser_models.active.index import as_float32
from ser_models.active.scores import REGRESSION_SCORES, SCORES
from ser_models.exceptions import PoolError, PoolExhaustedError

__all__ = ["QueryStrategy", "ScoredPool", "uncertainty_scores"]


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
        self.embeddings = as_float32(self.embeddings, "ScoredPool.embeddings")
        if self.probs.ndim != 2 or len(self.probs) != n:
            raise PoolError(f"ScoredPool.probs must be [N={n}, C], got shape {self.probs.shape}")
        if len(self.embeddings) != n:
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


def uncertainty_scores(scored: ScoredPool, name: str, who: str) -> np.ndarray:
    """[N] uncertainty (higher = more uncertain) named by ``active.strategy.uncertainty``, per unit of cost when
    the pool carries ``costs``.

    Raises:
        PoolError: the score needs outputs the pool was not scored with (MC samples, classes, dimensions).
    """
    u = _raw_uncertainty(scored, name, who)
    return u if scored.costs is None else u / scored.costs


def _raw_uncertainty(scored: ScoredPool, name: str, who: str) -> np.ndarray:
    if name in REGRESSION_SCORES:
        if scored.mc_predictions is None:
            raise PoolError(
                f"{who} uses {name}, which needs ScoredPool.mc_predictions [N, T, K] (MC-dropout samples of the "
                "dimensional outputs): set model.dimensions and active.scorer.mc_samples >= 2")
        return REGRESSION_SCORES[name](scored.mc_predictions)
    if scored.probs.shape[1] < 2:
        raise PoolError(f"{who} ranks by {name}, a class-probability score, but the model has no classes "
                        "(model.labels is empty): use active.strategy.uncertainty=mc_variance or a greedy "
                        "sampling strategy (gsx, gsy, igs)")
    if name == "bald":
        if scored.mc_probs is None:
            raise PoolError(
                f"{who} uses BALD, which needs ScoredPool.mc_probs [N, T, C] (MC-dropout samples), but the pool "
                "was scored without them: enable MC samples in the scorer or set active.strategy.uncertainty to "
                "entropy, least_confidence or margin")
        return SCORES["bald"](scored.mc_probs)
    return SCORES[name](scored.probs)


def rank_desc(values: np.ndarray) -> np.ndarray:
    """Positions sorting ``values`` high to low; ties keep pool order so a seed fully fixes the result."""
    return np.argsort(-np.asarray(values, dtype=np.float64), kind="stable")


@contextmanager
def thread_limit(num_threads: int | None) -> Iterator[None]:
    """Cap FAISS (OpenMP) and BLAS threads for the duration of a query; ``None`` leaves them alone."""
    if num_threads is None:
        yield
        return
    old = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(num_threads)
    try:
        with threadpool_limits(limits=num_threads):
            yield
    finally:
        faiss.omp_set_num_threads(old)


class QueryStrategy:
    """Base class: checks the request, computes the unlabelled candidates, calls :meth:`_select`.

    Subclasses implement ``_select(scored, candidates, labelled, n, seed) -> positions``: ``candidates``
    [U] are positions of unlabelled clips in ``scored`` (ascending), ``labelled`` [L] positions of clips of
    ``scored`` that are already in the ledger (usable as existing centres). The result is a pure function of
    (scored, ledger_ids, n, seed).
    """

    name = "base"
    #: False when the picks ignore the model's scores (random): the loop then skips retraining between query
    #: batches (``active.query_batch``).
    uses_model = True

    def __init__(self, num_threads: int | None = None):
        self.num_threads = num_threads

    def query(self, scored: ScoredPool, ledger_ids: set[str], n: int, seed: int) -> list[str]:
        """Choose ``n`` clips to label next.

        Args:
            scored: the scored pool.
            ledger_ids: ids already labelled (never returned).
            n: how many clips to return (>= 1).
            seed: fixes every random choice.

        Returns:
            ``n`` unique ids from ``scored.ids``, none in ``ledger_ids``, in pick order.

        Raises:
            PoolExhaustedError: fewer than ``n`` unlabelled clips remain.
        """
        if int(n) != n or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        n = int(n)
        in_ledger = pd.Index(scored.ids).isin(list(ledger_ids)) if ledger_ids else np.zeros(len(scored), bool)
        candidates = np.flatnonzero(~in_ledger)
        if n > len(candidates):
            raise PoolExhaustedError(
                f"{self!r} was asked for {n} clips but only {len(candidates)} of the {len(scored)} scored clips are "
                f"unlabelled ({int(in_ledger.sum())} are in the ledger); lower the batch size or the budget")
        with thread_limit(self.num_threads):
            picks = np.asarray(self._select(scored, candidates, np.flatnonzero(in_ledger), n, int(seed)))
        out = scored.ids[picks].tolist()
        if len(out) != n or len(set(out)) != n or in_ledger[picks].any():  # a bug here would corrupt the ledger
            raise AssertionError(f"{self!r} returned {len(out)} picks ({len(set(out))} unique) for n={n}")
        return out

    def _select(self, scored: ScoredPool, candidates: np.ndarray, labelled: np.ndarray, n: int,
                seed: int) -> np.ndarray:
        raise NotImplementedError

    def _params(self) -> dict:
        return {}

    def __repr__(self) -> str:
        params = {**self._params(), "num_threads": self.num_threads}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"

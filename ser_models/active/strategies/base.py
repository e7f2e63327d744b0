"""The strategy contract: ``ScoredPool`` in, ``n`` unique unlabelled clip ids out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import faiss
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ser_models.active.scores import REGRESSION_SCORES, SCORES
from ser_models.data.id_keys import id_keys
from ser_models.exceptions import PoolError, PoolExhaustedError
from ser_models.scoring.scored_pool import ScoredPool

__all__ = ["QueryStrategy", "ShardPlan", "TopK", "exhausted", "random_keys", "uncertainty_scores"]


@dataclass(frozen=True)
class TopK:
    """One per-clip ranking a sharded query keeps the top of.

    Attributes:
        key: an uncertainty score name (``active.strategy.uncertainty``; highest first) or ``"random"`` (the
            smallest seeded hash of the id first, :func:`random_keys`).
        k: how many of the best unlabelled clips to keep.
        per_class: keep the top ``k`` of each predicted class instead (class-balanced quotas).
    """

    key: str
    k: int
    per_class: bool = False


@dataclass(frozen=True)
class ShardPlan:
    """Which clips a strategy may pick from, as rankings that merge exactly over shards.

    Attributes:
        tops: the rankings; their winners, merged over every shard, hold every clip the strategy can pick.
        centres: the strategy also reads the scores of clips already labelled (k-center centres, ``auto``'s
            replay, class-balanced quotas).
        local: no ranking holds the picks (k-center, k-means, BADGE, greedy sampling): each shard runs the
            strategy on its own clips, with the labelled clips as existing centres, and offers its ``n`` picks;
            the strategy then runs again on the union of the offers. Two rounds of a composable core-set:
            approximate (Malkomes et al., 2015), where ``tops`` are exact.
        stepwise: with ``local``: the strategy draws its picks one at a time, each over every shard
            (:mod:`ser_models.active.sharded_seeding`; the strategy has a ``seeding(scores, seed)``), which gives
            the whole pool's picks. A recording cap around it still goes two rounds.
    """

    tops: tuple[TopK, ...] = ()
    centres: bool = False
    local: bool = False
    stepwise: bool = False

    def __add__(self, other: ShardPlan) -> ShardPlan:
        if self.local or other.local:
            raise ValueError("a two-round (local) shard plan does not combine with others")
        return ShardPlan(self.tops + tuple(t for t in other.tops if t not in self.tops), self.centres or other.centres)


def random_keys(ids, seed: int) -> np.ndarray:
    """[N] uint64: a seeded hash of each clip id (:func:`ser_models.data.id_keys.id_keys`).

    Random selection takes the clips with the smallest keys: a clip's key depends on its id and the seed only,
    never on the other clips, so the pick is the same however the pool is split into shards.
    """
    return id_keys(ids, seed)


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


def exhausted(strategy, n: int, rows: int, labelled: int) -> PoolExhaustedError:
    """The error of a query for ``n`` clips over ``rows`` scored clips, ``labelled`` of them in the ledger (or
    otherwise excluded), in process or over shards."""
    return PoolExhaustedError(
        f"{strategy!r} was asked for {n} clips but only {rows - labelled} of the {rows} scored clips are "
        f"unlabelled ({labelled} are in the ledger); lower the batch size or the budget")


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
            raise exhausted(self, n, len(scored), int(in_ledger.sum()))
        with thread_limit(self.num_threads):
            picks = np.asarray(self._select(scored, candidates, np.flatnonzero(in_ledger), n, int(seed)))
        out = scored.ids[picks].tolist()
        if len(out) != n or len(set(out)) != n or in_ledger[picks].any():  # a bug here would corrupt the ledger
            raise AssertionError(f"{self!r} returned {len(out)} picks ({len(set(out))} unique) for n={n}")
        return out

    def _select(self, scored: ScoredPool, candidates: np.ndarray, labelled: np.ndarray, n: int,
                seed: int) -> np.ndarray:
        raise NotImplementedError

    def shard_plan(self, n: int) -> ShardPlan | None:
        """The rankings that hold every clip this strategy can pick for a batch of ``n``, so that a query over
        sharded scores (:mod:`ser_models.active.sharded_selection`) gathers only those rows and picks exactly
        what the whole pool would give; None = no such plan known before the query."""
        return None

    def sharded(self, n: int) -> bool:
        """Whether a query of ``n`` clips can run over sharded scores: a :meth:`shard_plan` (``auto`` over a
        two-round candidate chooses first, then runs the chosen one's plan); False = the pool's scores are
        gathered."""
        return self.shard_plan(n) is not None

    def rest_of_batch(self) -> QueryStrategy:
        """The strategy the rest of a batch asks after this one's first query (a recording cap's later calls, for
        fewer clips): itself; ``auto``, the candidate that query chose for the whole batch."""
        return self

    def _params(self) -> dict:
        return {}

    def __str__(self) -> str:
        """The strategy as a run's log names it: ``auto (candidates=random+margin+informative_diverse,
        repeats=8, ...)``, its name and settings, no class names."""
        words = {k: "+".join(map(str, v)) if isinstance(v, (list, tuple)) else v for k, v in self._params().items()}
        settings = ", ".join(f"{k}={v}" for k, v in words.items() if not isinstance(v, (dict, QueryStrategy)))
        return f"{self.name} ({settings})" if settings else str(self.name)

    def __repr__(self) -> str:
        params = {**self._params(), "num_threads": self.num_threads}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"

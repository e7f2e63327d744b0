"""Random and top-k uncertainty strategies."""

from __future__ import annotations

import numpy as np

from ser_models.active.strategies.base import (
    QueryStrategy,
    ShardPlan,
    TopK,
    random_keys,
    rank_desc,
    uncertainty_scores,
)
from ser_models.scoring.scored_pool import ScoredPool

__all__ = ["RandomStrategy", "UncertaintyStrategy", "class_balanced_top"]


class RandomStrategy(QueryStrategy):
    """Uniform sample without replacement (the smallest seeded hashes of the ids): the baseline every other
    strategy must beat."""

    name = "random"
    uses_model = False

    def _select(self, scored, candidates, labelled, n, seed):
        # The n smallest seeded hashes of the ids: uniform, fixed by the seed, and the same pick whether the pool
        # is whole or split into shards (a clip's key never depends on the other clips).
        return candidates[np.lexsort((candidates, random_keys(scored.ids[candidates], seed)))[:n]]

    def shard_plan(self, n):
        return ShardPlan((TopK("random", n),))


class UncertaintyStrategy(QueryStrategy):
    """The ``n`` most uncertain clips under one score (ties broken by pool order).

    Args:
        score: ``"entropy"``, ``"least_confidence"``, ``"margin"``, ``"bald"`` (needs ``mc_probs``) or
            ``"mc_variance"`` (dimensional outputs; needs ``mc_predictions``).

    References:
        Lewis and Gale, 1994, "A Sequential Algorithm for Training Text Classifiers" (least confidence).
        Scheffer et al., 2001, "Active Hidden Markov Models for Information Extraction" (margin).
        Settles, 2009, "Active Learning Literature Survey" (entropy).
        Houlsby et al., 2011; Gal et al., 2017 (BALD).
    """

    def __init__(self, score: str = "entropy", num_threads: int | None = None, class_balanced: bool = False):
        super().__init__(num_threads)
        self.score = score
        self.name = score
        self.class_balanced = class_balanced

    def _select(self, scored: ScoredPool, candidates, labelled, n, seed):
        u = uncertainty_scores(scored, self.score, repr(self))[candidates]
        if self.class_balanced and scored.probs.shape[1] >= 2:
            return candidates[class_balanced_top(u, scored.probs[candidates].argmax(1), n,
                                                 _label_counts(scored, labelled))]
        return candidates[rank_desc(u)[:n]]

    def shard_plan(self, n):
        # Class-balanced quotas take at most n of a class, its most uncertain first: each class's top n holds them.
        return ShardPlan((TopK(self.score, n, per_class=self.class_balanced),), centres=self.class_balanced)

    def _params(self):
        return {"score": self.score, **({"class_balanced": True} if self.class_balanced else {})}


def _label_counts(scored: ScoredPool, labelled: np.ndarray) -> np.ndarray:
    """[C] labelled clips per class (zeros when the pool carries no labels)."""
    c = scored.probs.shape[1]
    if scored.labels is None:
        return np.zeros(c, int)
    known = scored.labels[labelled]
    return np.bincount(known[known >= 0], minlength=c)


def class_balanced_top(u: np.ndarray, predicted: np.ndarray, n: int, have: np.ndarray) -> np.ndarray:
    """The ``n`` positions to take: per predicted class, a quota of its most uncertain clips.

    The quotas fill the classes the ledger holds fewest of first: each class is topped up toward an equal share
    of ``have.sum() + n`` (water-filling), so a pool that is mostly neutral does not spend the budget on
    neutral clips because the model calls most clips neutral. A class with fewer candidates than its quota
    hands the rest on; what no class can take goes to the most uncertain clips left.

    Args:
        u: [U] uncertainty of each candidate (higher = more informative).
        predicted: [U] predicted class of each candidate.
        n: how many to take (<= U).
        have: [C] labelled clips per class so far.

    Returns:
        [n] positions into ``u``, unique.

    References:
        Emam et al., "Active Learning at the ImageNet Scale", 2021 (BASE: balanced selection per predicted class).
    """
    num_classes = len(have)
    pools = [np.flatnonzero(predicted == c) for c in range(num_classes)]
    pools = [p[rank_desc(u[p])] for p in pools]  # most uncertain first
    quota = np.zeros(num_classes, int)
    counts = have.astype(float).copy()
    for _ in range(n):  # one clip at a time to the class with the fewest (labelled + queued) that can take one
        open_ = [c for c in range(num_classes) if quota[c] < len(pools[c])]
        if not open_:
            break
        c = min(open_, key=lambda k: (counts[k], k))
        quota[c] += 1
        counts[c] += 1
    picks = np.concatenate([pools[c][:quota[c]] for c in range(num_classes)]).astype(int)
    if len(picks) < n:
        rest = np.setdiff1d(np.arange(len(u)), picks)
        picks = np.concatenate([picks, rest[rank_desc(u[rest])[: n - len(picks)]]])
    return picks

"""Random and top-k uncertainty strategies."""

from __future__ import annotations

import numpy as np

from ser_models.active.strategies.base import QueryStrategy, ScoredPool, rank_desc, uncertainty_scores

__all__ = ["RandomStrategy", "UncertaintyStrategy"]


class RandomStrategy(QueryStrategy):
    """Uniform sample without replacement: the baseline every other strategy must beat."""

    name = "random"

    def _select(self, scored, candidates, labelled, n, seed):
        return np.random.default_rng(seed).choice(candidates, size=n, replace=False)


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

    def __init__(self, score: str = "entropy", num_threads: int | None = None):
        super().__init__(num_threads)
        self.score = score
        self.name = score

    def _select(self, scored: ScoredPool, candidates, labelled, n, seed):
        u = uncertainty_scores(scored, self.score, repr(self))[candidates]
        return candidates[rank_desc(u)[:n]]

    def _params(self):
        return {"score": self.score}

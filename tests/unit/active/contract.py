"""Contract every query strategy honours; each strategy's test class inherits ``StrategyContract``."""

from __future__ import annotations

import numpy as np
import pytest

from ser_models.exceptions import PoolExhaustedError
from ser_models.scoring.scored_pool import ScoredPool


def fake_pool(n: int = 60, classes: int = 4, dim: int = 8, mc: int = 3, seed: int = 0) -> ScoredPool:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, dim)) * 4
    emb = centres[rng.integers(0, 5, n)] + rng.normal(size=(n, dim))
    mc_probs = rng.dirichlet(np.ones(classes), size=(n, mc))
    # Arousal / valence on [1, 5] that follow the embedding (a regression model would predict them from it).
    mc_dims = np.clip(3 + 0.3 * emb[:, None, :2] + rng.normal(0, 0.2, (n, mc, 2)), 1, 5)
    truth = np.clip(mc_dims.mean(1) + rng.normal(0, 0.3, (n, 2)), 1, 5)  # only labelled rows are ever read
    return ScoredPool(ids=[f"c{i:03d}" for i in range(n)], probs=mc_probs.mean(1), embeddings=emb,
                      mc_probs=mc_probs, predictions=mc_dims.mean(1), mc_predictions=mc_dims, targets=truth)


class StrategyContract:
    """Subclasses define ``make(self)`` returning a fresh strategy."""

    def make(self):
        raise NotImplementedError

    def test_exactly_n_unique_unlabelled(self):
        pool = fake_pool()
        ledger = {"c000", "c005", "c017"}
        ids = self.make().query(pool, ledger, 10, seed=1)
        assert len(ids) == 10 and len(set(ids)) == 10
        assert not set(ids) & ledger
        assert set(ids) <= set(pool.ids.tolist())

    def test_exhausted_pool_raises_with_numbers(self):
        pool = fake_pool(n=12)
        with pytest.raises(PoolExhaustedError, match=r"asked for 11 .* only 10 of the 12"):
            self.make().query(pool, {"c000", "c001"}, 11, seed=0)

    def test_deterministic_under_seed(self):
        pool = fake_pool()
        assert self.make().query(pool, {"c001"}, 7, seed=3) == self.make().query(pool, {"c001"}, 7, seed=3)

    def test_n_equal_to_unlabelled(self):
        pool = fake_pool(n=20)
        ledger = {f"c{i:03d}" for i in range(5)}
        ids = self.make().query(pool, ledger, 15, seed=0)
        assert sorted(ids) == sorted(set(pool.ids.tolist()) - ledger)

    def test_repr_names_class(self):
        assert type(self.make()).__name__ in repr(self.make())

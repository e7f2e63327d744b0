"""The strategy registry: ``STRATEGIES`` (name -> builder from the config) and ``build_strategy(cfg)``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ser_models.active.config import StrategyConfig
from ser_models.active.strategies.auto import AutoStrategy
from ser_models.active.strategies.base import QueryStrategy
from ser_models.active.strategies.diversity import (
    BadgeStrategy,
    ClusterColdStartStrategy,
    InformativeDiverseStrategy,
    KCenterStrategy,
    KMeansStrategy,
)
from ser_models.active.strategies.regression import GreedySamplingStrategy
from ser_models.active.strategies.uncertainty import RandomStrategy, UncertaintyStrategy

__all__ = ["STRATEGIES", "build_strategy"]

#: Strategies that take ``active.strategy.class_balanced``.
_RANKS_BY_UNCERTAINTY = ("entropy", "least_confidence", "margin", "bald")

#: ``active.strategy.name`` -> builder from the config.
STRATEGIES: dict[str, Callable[[StrategyConfig], QueryStrategy]] = {
    "random": lambda c: RandomStrategy(num_threads=c.num_threads),
    "entropy": lambda c: UncertaintyStrategy("entropy", num_threads=c.num_threads, class_balanced=c.class_balanced),
    "least_confidence": lambda c: UncertaintyStrategy("least_confidence", num_threads=c.num_threads, class_balanced=c.class_balanced),
    "margin": lambda c: UncertaintyStrategy("margin", num_threads=c.num_threads, class_balanced=c.class_balanced),
    "bald": lambda c: UncertaintyStrategy("bald", num_threads=c.num_threads, class_balanced=c.class_balanced),
    "mc_variance": lambda c: UncertaintyStrategy("mc_variance", num_threads=c.num_threads),
    "gsx": lambda c: GreedySamplingStrategy("input", reduce_dim=c.kcenter_dim, num_threads=c.num_threads),
    "gsy": lambda c: GreedySamplingStrategy("output", num_threads=c.num_threads),
    "igs": lambda c: GreedySamplingStrategy("both", num_threads=c.num_threads),
    "badge": lambda c: BadgeStrategy(num_threads=c.num_threads),
    "kcenter": lambda c: KCenterStrategy(reduce_dim=c.kcenter_dim, num_threads=c.num_threads),
    "kmeans": lambda c: KMeansStrategy(c.uncertainty, c.pick, c.kmeans_iters, num_threads=c.num_threads),
    "cluster_cold_start": lambda c: ClusterColdStartStrategy(c.num_clusters, c.kmeans_iters, c.max_clusters,
                                                             c.cold_start_dim, num_threads=c.num_threads),
    "informative_diverse": lambda c: InformativeDiverseStrategy(c.uncertainty, c.prefilter_factor,
                                                                c.kcenter_dim, num_threads=c.num_threads),
    "auto": lambda c: AutoStrategy({name: build_strategy(dataclasses.replace(
        c, name=name, class_balanced=c.class_balanced and name in _RANKS_BY_UNCERTAINTY))
        for name in c.auto_candidates}, c.auto_repeats, c.auto_margin, c.auto_min_labelled,
        num_threads=c.num_threads),
}


def build_strategy(cfg: StrategyConfig | None = None) -> QueryStrategy:
    """The strategy named by ``cfg.name`` (``active.strategy.name``), configured from ``cfg``."""
    cfg = cfg or StrategyConfig()
    return STRATEGIES[cfg.name](cfg)

"""Query strategies: registry ``STRATEGIES`` and ``build_strategy(cfg)``.

Every name loads on first use: a shard task that unpickles one strategy imports its module and the contract
(``base``), not the whole family with ``auto``'s statistics (SciPy), which a Ray worker would otherwise load
for every selection task.
"""

from ser_models.lazy import lazy_exports

__all__ = ["STRATEGIES", "AutoStrategy", "BadgeStrategy", "ClusterColdStartStrategy", "GreedySamplingStrategy",
           "InformativeDiverseStrategy",
           "KCenterStats", "KCenterStrategy", "KMeansStrategy", "QueryStrategy", "RandomStrategy",
           "UncertaintyStrategy", "badge_kmeanspp", "build_strategy", "format_verdict", "greedy_kcenter", "greedy_sampling",
           "pca_reduce", "selection_verdict", "simulate_strategies", "uncertainty_scores"]

_LAZY = {
    **{name: "ser_models.active.strategies.auto" for name in (
        "AutoStrategy", "format_verdict", "selection_verdict", "simulate_strategies")},
    **{name: "ser_models.active.strategies.base" for name in ("QueryStrategy", "uncertainty_scores")},
    **{name: "ser_models.active.strategies.diversity" for name in (
        "BadgeStrategy", "ClusterColdStartStrategy", "InformativeDiverseStrategy", "KCenterStrategy",
        "KMeansStrategy", "badge_kmeanspp")},
    **{name: "ser_models.active.strategies.kcenter" for name in ("KCenterStats", "greedy_kcenter", "pca_reduce")},
    **{name: "ser_models.active.strategies.regression" for name in ("GreedySamplingStrategy", "greedy_sampling")},
    **{name: "ser_models.active.strategies.uncertainty" for name in ("RandomStrategy", "UncertaintyStrategy")},
    **{name: "ser_models.active.strategies.registry" for name in ("STRATEGIES", "build_strategy")},
}


__getattr__ = lazy_exports(__name__, _LAZY)

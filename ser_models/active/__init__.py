"""Active learning: the AFTER loop and what it decides. Uncertainty scores, the FAISS ``VectorIndex``, query
strategies, the budget, stopping and the round reports. Scoring lives in ``ser_models.scoring``, labelling in
``ser_models.labelling``, and evaluation sets and the planner in ``ser_models.planning``, all below this
package. Every name loads on first use, so importing one strategy does not load Ray or torch with it."""

from ser_models.lazy import lazy_exports

__all__ = ["SCORES", "STRATEGIES", "BadgeStrategy", "ClusterColdStartStrategy",
           "InformativeDiverseStrategy", "KCenterStrategy", "KMeansStrategy", "QueryStrategy",
           "RandomStrategy", "StrategyConfig", "UncertaintyStrategy",
           "VectorIndex", "bald", "build_strategy", "entropy", "greedy_kcenter", "least_confidence", "margin",
           "ActiveConfig", "ActiveLearningLoop", "RoundReport"]

_LAZY = {
    "StrategyConfig": "ser_models.active.config",
    "VectorIndex": "ser_models.active.index",
    **{name: "ser_models.active.scores" for name in ("SCORES", "bald", "entropy", "least_confidence", "margin")},
    **{name: "ser_models.active.strategies" for name in (
        "STRATEGIES", "BadgeStrategy", "ClusterColdStartStrategy", "InformativeDiverseStrategy", "KCenterStrategy",
        "KMeansStrategy", "QueryStrategy", "RandomStrategy", "UncertaintyStrategy", "build_strategy",
        "greedy_kcenter")},
    "ActiveConfig": "ser_models.active.loop_config",
    "ActiveLearningLoop": "ser_models.active.loop",
    "RoundReport": "ser_models.active.round_report",
}


__getattr__ = lazy_exports(__name__, _LAZY)

"""Active learning: uncertainty scores, the FAISS ``VectorIndex``, query strategies, oracles, the pool scorer,
the frozen-encoder feature cache and the AFTER loop. Every name loads on first use, so a scoring actor or a
training worker that imports ``ser_models.active.scorer`` does not load FAISS, scikit-learn or Ray with it."""

__all__ = ["SCORES", "STRATEGIES", "BadgeStrategy", "ClusterColdStartStrategy", "FileOracle",
           "InformativeDiverseStrategy", "KCenterStrategy", "KMeansStrategy", "Oracle", "QueryStrategy",
           "RandomStrategy", "ScoredPool", "SimulatedOracle", "StrategyConfig", "UncertaintyStrategy",
           "VectorIndex", "bald", "build_strategy", "entropy", "greedy_kcenter", "least_confidence", "margin",
           "ActiveConfig", "ActiveLearningLoop", "EvaluationConfig", "FeatureCache", "PoolScorer", "RoundReport",
           "ScorerConfig", "Scores", "draw_evaluation_sets", "score_dataset"]

_LAZY = {
    "StrategyConfig": "ser_models.active.config",
    "VectorIndex": "ser_models.active.index",
    **{name: "ser_models.active.oracles" for name in ("FileOracle", "Oracle", "SimulatedOracle")},
    **{name: "ser_models.active.scores" for name in ("SCORES", "bald", "entropy", "least_confidence", "margin")},
    **{name: "ser_models.active.strategies" for name in (
        "STRATEGIES", "BadgeStrategy", "ClusterColdStartStrategy", "InformativeDiverseStrategy", "KCenterStrategy",
        "KMeansStrategy", "QueryStrategy", "RandomStrategy", "ScoredPool", "UncertaintyStrategy", "build_strategy",
        "greedy_kcenter")},
    "ActiveConfig": "ser_models.active.loop_config",
    "ActiveLearningLoop": "ser_models.active.loop",
    "EvaluationConfig": "ser_models.active.evaluation_sets",
    "draw_evaluation_sets": "ser_models.active.evaluation_sets",
    "RoundReport": "ser_models.active.round_report",
    "FeatureCache": "ser_models.active.feature_cache",
    "PoolScorer": "ser_models.active.scorer",
    "ScorerConfig": "ser_models.active.scorer",
    "Scores": "ser_models.active.scorer",
    "score_dataset": "ser_models.active.scorer",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ser_models.active' has no attribute {name!r}")

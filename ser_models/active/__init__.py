"""Active learning: uncertainty scores, the FAISS ``VectorIndex``, query strategies, oracles, the pool scorer,
the frozen-encoder feature cache and the AFTER loop (the last three load lazily: they pull in Ray and torch)."""

from ser_models.active.config import StrategyConfig
from ser_models.active.index import VectorIndex
from ser_models.active.oracles import FileOracle, Oracle, SimulatedOracle
from ser_models.active.scores import SCORES, bald, entropy, least_confidence, margin
from ser_models.active.strategies import (
    STRATEGIES,
    BadgeStrategy,
    ClusterColdStartStrategy,
    InformativeDiverseStrategy,
    KCenterStrategy,
    KMeansStrategy,
    QueryStrategy,
    RandomStrategy,
    ScoredPool,
    UncertaintyStrategy,
    build_strategy,
    greedy_kcenter,
)

__all__ = ["SCORES", "STRATEGIES", "BadgeStrategy", "ClusterColdStartStrategy", "FileOracle",
           "InformativeDiverseStrategy", "KCenterStrategy", "KMeansStrategy", "Oracle", "QueryStrategy",
           "RandomStrategy", "ScoredPool", "SimulatedOracle", "StrategyConfig", "UncertaintyStrategy",
           "VectorIndex", "bald", "build_strategy", "entropy", "greedy_kcenter", "least_confidence", "margin",
           "ActiveConfig", "ActiveLearningLoop", "EvaluationConfig", "FeatureCache", "PoolScorer", "RoundReport",
           "ScorerConfig", "Scores", "draw_evaluation_sets", "score_dataset"]

_LAZY = {
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

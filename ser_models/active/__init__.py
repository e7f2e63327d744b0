"""Active learning: uncertainty scores, the FAISS ``VectorIndex``, query strategies and oracles."""

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
           "VectorIndex", "bald", "build_strategy", "entropy", "greedy_kcenter", "least_confidence", "margin"]

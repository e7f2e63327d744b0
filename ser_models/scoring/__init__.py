"""Scoring: a checkpoint's probabilities and embeddings for every clip of a pool, and the frozen-encoder
feature cache that lets every round (and predict, finetune, evaluation and the Python API) skip the encoder.

Below active learning: nothing here imports ``ser_models.active`` or ``ser_models.labelling``. Every name
loads on first use, so a scoring actor or a training worker that imports ``ser_models.scoring.scorer`` does
not load FAISS, scikit-learn or Ray with it.
"""

from ser_models.lazy import lazy_exports

__all__ = ["FeatureCache", "PoolScorer", "ScoredPool", "ScorerConfig", "Scores", "score_dataset"]

_LAZY = {
    "FeatureCache": "ser_models.scoring.feature_cache",
    "ScoredPool": "ser_models.scoring.scored_pool",
    **{name: "ser_models.scoring.scorer" for name in ("PoolScorer", "ScorerConfig", "Scores", "score_dataset")},
}


__getattr__ = lazy_exports(__name__, _LAZY)

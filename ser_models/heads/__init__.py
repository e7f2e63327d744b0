"""Pooling over frames and the categorical emotion head."""

from ser_models.heads.categorical import CategoricalHead, class_weights, weighted_cross_entropy
from ser_models.heads.pooling import (
    POOLINGS,
    AttentiveStatisticsPooling,
    MeanPooling,
    build_pooling,
    frame_mask,
    masked_mean,
)

__all__ = [
    "POOLINGS",
    "AttentiveStatisticsPooling",
    "CategoricalHead",
    "MeanPooling",
    "build_pooling",
    "class_weights",
    "frame_mask",
    "masked_mean",
    "weighted_cross_entropy",
]

"""Pooling over frames and the emotion head (categorical and dimensional outputs, their losses)."""

from ser_models.heads.categorical import class_weights, soft_cross_entropy, weighted_cross_entropy
from ser_models.heads.dimensional import (
    DIMENSIONAL_LOSSES,
    DIMENSIONS,
    DimensionalOutput,
    check_dimensions,
    concordance,
    dimensional_loss,
)
from ser_models.heads.emotion_head import EmotionHead
from ser_models.heads.pooling import (
    POOLINGS,
    AttentiveStatisticsPooling,
    MeanPooling,
    build_pooling,
    frame_mask,
    masked_mean,
)

__all__ = [
    "DIMENSIONAL_LOSSES",
    "DIMENSIONS",
    "POOLINGS",
    "AttentiveStatisticsPooling",
    "DimensionalOutput",
    "EmotionHead",
    "MeanPooling",
    "build_pooling",
    "check_dimensions",
    "class_weights",
    "concordance",
    "dimensional_loss",
    "frame_mask",
    "masked_mean",
    "soft_cross_entropy",
    "weighted_cross_entropy",
]

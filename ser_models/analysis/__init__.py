"""Encoder-layer analysis: per-layer probes, layer similarity across languages (CKA), anchoring (CORAL)."""

from ser_models.analysis.anchoring import AnchoringConfig, anchor_groups, anchoring_loss
from ser_models.analysis.coral import coral_loss
from ser_models.analysis.similarity import class_matched_pairs, layer_similarity, linear_cka, suggest_anchors

__all__ = [
    "AnchoringConfig", "anchor_groups", "anchoring_loss", "class_matched_pairs", "coral_loss", "layer_similarity",
    "linear_cka", "suggest_anchors",
]

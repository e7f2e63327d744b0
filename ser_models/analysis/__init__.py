"""Encoder-layer analysis: per-layer probes, layer similarity across languages (CKA), and which layers to
anchor. The anchoring loss itself (CORAL over anchor groups) is a training loss: ``ser_models.training.anchoring``."""

from ser_models.analysis.anchoring import AnchoringConfig, anchor_groups
from ser_models.analysis.similarity import class_matched_pairs, layer_similarity, linear_cka, suggest_anchors

__all__ = [
    "AnchoringConfig", "anchor_groups", "class_matched_pairs", "layer_similarity", "linear_cka", "suggest_anchors",
]

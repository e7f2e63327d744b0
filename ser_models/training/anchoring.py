"""Layer anchoring in training: its loss, CORAL, the distance between the feature covariances of two batches (a
differentiable domain-alignment loss) averaged over anchor groups of encoder layers, and its feed of unlabelled
target-domain clips (:class:`AnchorFeed`), drawn at random beside every training batch. The trainer adds the loss
to the emotion loss; which layers to anchor is chosen in ``ser_models.analysis.anchoring``.

References:
    Sun and Saenko, 2016. Deep CORAL: Correlation Alignment for Deep Domain Adaptation. ECCV workshops.
    Upadhyay, Busso, Lee, 2024. A Layer-Anchoring Strategy for Enhancing Cross-Lingual Speech Emotion
    Recognition. arXiv:2407.04966.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ser_models.data.clips import ClipSet, collect_clips
from ser_models.precision import pin_for
from ser_models.training.batching import make_batch
from ser_models.training.config import TrainConfig


def feature_covariance(x: torch.Tensor) -> torch.Tensor:
    """Unbiased covariance of the rows of ``x``.

    Args:
        x: ``[N, D]`` with N >= 2.

    Returns:
        ``[D, D]``.
    """
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"feature_covariance needs [N >= 2, D] features, got {tuple(x.shape)}")
    centred = x - x.mean(dim=0, keepdim=True)
    return centred.T @ centred / (x.shape[0] - 1)


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared Frobenius distance of the two covariances over ``4 D^2`` (Sun and Saenko's scaling).

    Zero when the two batches have the same covariance (the same rows, or a shifted copy); it ignores the means.
    Computed in float32 at least, so that mixed-precision features do not lose the small differences.

    Args:
        source: ``[Ns, D]`` features of the source domain (Ns >= 2).
        target: ``[Nt, D]`` features of the target domain (Nt >= 2).

    Returns:
        A scalar tensor (differentiable in both inputs).
    """
    if source.shape[1:] != target.shape[1:]:
        raise ValueError(f"coral_loss needs the same feature width, got {tuple(source.shape)} and {tuple(target.shape)}")
    dtype = torch.promote_types(source.dtype, torch.float32)
    cs, ct = feature_covariance(source.to(dtype)), feature_covariance(target.to(dtype))
    d = source.shape[1]
    return ((cs - ct) ** 2).sum() / (4.0 * d * d)


def anchoring_loss(source: torch.Tensor, target: torch.Tensor, groups: list[list[int]],
                   layers: list[int]) -> torch.Tensor:
    """Mean CORAL loss over the anchor groups.

    Args:
        source: ``[Bs, U, D]`` utterance means of the source batch at ``layers`` (U layers, in that order).
        target: ``[Bt, U, D]`` the same for the target batch.
        groups: anchor groups from :func:`~ser_models.analysis.anchoring.anchor_groups` (every layer in ``layers``).
        layers: which hidden state each of the U columns is.

    Returns:
        A scalar tensor.
    """
    where = {layer: i for i, layer in enumerate(layers)}
    terms = []
    for group in groups:
        cols = [where[layer] for layer in group]
        terms.append(coral_loss(source[:, cols].mean(1), target[:, cols].mean(1)))
    return torch.stack(terms).mean()


def union_layers(groups: list[list[int]]) -> list[int]:
    """Sorted distinct layers of all groups (the hidden states the model must pool)."""
    return sorted({layer for group in groups for layer in group})


@dataclass
class AnchorFeed:
    """Unlabelled target-domain clips and where to align them with the training batches (layer anchoring).

    Attributes:
        clips: the target clips (audio), held; each step draws ``batch_size`` of them at random.
        groups: anchor layer groups (``ser_models.analysis.anchor_groups``).
        weight: weight of the CORAL loss next to the emotion loss.
        batch_size: target clips per step (>= 2).
    """

    clips: ClipSet
    groups: list[list[int]]
    weight: float
    batch_size: int
    layers: list[int] = field(init=False)  # the hidden states the groups use, pooled every step

    def __post_init__(self) -> None:

        self.layers = union_layers(self.groups)


def anchor_feed(spec: dict | None, batches) -> AnchorFeed | None:
    """The :class:`AnchorFeed` of a training run from its ``anchoring`` spec (``groups``, ``weight``,
    ``batch_size``) and the target clips' numpy batches; None without a spec."""
    if not spec:
        return None
    clips = collect_clips(batches, [], require_labels=False).sorted_by_id()
    return AnchorFeed(clips, [list(g) for g in spec["groups"]], float(spec["weight"]), int(spec["batch_size"]))


def target_batch(anchor: AnchorFeed, cfg: TrainConfig, rng: np.random.Generator, device: torch.device):
    """A random batch of ``anchor.batch_size`` target clips, cropped like training clips."""
    n = len(anchor.clips)
    index = rng.choice(n, size=anchor.batch_size, replace=n < anchor.batch_size)
    return make_batch(anchor.clips, index, int(cfg.optim.max_crop_seconds * 16000), rng, pin_for(device)).to(device)

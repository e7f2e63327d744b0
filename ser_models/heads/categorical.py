"""The categorical loss: inverse-frequency class weights and weighted cross-entropy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F  # noqa: N812


def class_weights(label_counts: Sequence[int] | Mapping[int, int] | torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights, normalised to mean 1 over the classes that occur.

    Args:
        label_counts: examples per class, as a length-C sequence or ``{class_index: count}``.
        num_classes: C.

    Returns:
        ``[C]`` float32. A class with zero examples gets weight 0: no target carries it, so its weight never
        enters the loss, and 0 keeps the mean over present classes exactly 1 (the loss scale stays that of
        unweighted cross-entropy).
    """
    if isinstance(label_counts, Mapping):
        counts = torch.zeros(num_classes, dtype=torch.float64)
        for k, v in label_counts.items():
            counts[int(k)] = float(v)
    else:
        counts = torch.as_tensor(list(label_counts) if not isinstance(label_counts, torch.Tensor) else label_counts,
                                 dtype=torch.float64)
    if counts.shape != (num_classes,):
        raise ValueError(f"label_counts must have {num_classes} entries, got shape {tuple(counts.shape)}")
    if bool((counts < 0).any()):
        raise ValueError(f"label_counts must be >= 0, got {counts.tolist()}")
    present = counts > 0
    w = torch.zeros(num_classes, dtype=torch.float64)
    if present.any():
        w[present] = 1.0 / counts[present]
        w[present] /= w[present].mean()
    return w.float()


def weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None,
                           label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy with optional class weights (normalised by the weights of the batch's targets).

    Args:
        logits: ``[B, C]``.
        targets: ``[B]`` int64 class indexes.
        weights: ``[C]`` from :func:`class_weights`, or ``None``.
        label_smoothing: as in ``torch.nn.functional.cross_entropy``.

    Returns:
        Scalar loss.
    """
    w = None if weights is None else weights.to(device=logits.device, dtype=torch.float32)
    return F.cross_entropy(logits.float(), targets, weight=w, label_smoothing=label_smoothing)

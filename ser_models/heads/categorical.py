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


def soft_cross_entropy(logits: torch.Tensor, probs: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against target distributions (several annotators' vote shares), class-weighted the way
    ``F.cross_entropy`` weights hard labels: ``sum_i sum_c w_c p_ic (-log q_ic) / sum_i sum_c w_c p_ic``, so a
    one-hot row gives exactly the hard-label loss. (``F.cross_entropy`` with probability targets divides by
    the batch size instead, which rescales the loss with the weights and mixes badly with hard batches.)

    Args:
        logits: [B, C].
        probs: [B, C] rows summing to 1.
        weights: [C] class weights, or None.
    """
    logp = F.log_softmax(logits.float(), -1)
    w = probs.float() if weights is None else probs.float() * weights.to(logits.device).float()[None, :]
    return -(w * logp).sum() / w.sum().clamp_min(1e-12)

"""Time masks and contrastive distractors over encoder frames, reproducible per seed (TAPT, distillation and
the adapter's pre-training share them)."""

from __future__ import annotations

import numpy as np
import torch
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

from ser_models.heads.pooling import frame_mask


def sample_time_mask(frame_lengths: torch.Tensor, num_frames: int, prob: float, length: int, min_masks: int,
                     rng: np.random.Generator) -> torch.Tensor:
    """Spans to mask, drawn with transformers' ``_compute_mask_indices`` inside each clip's valid frames.

    ``_compute_mask_indices`` draws from numpy's global RNG; it is reseeded from ``rng`` and restored, so
    masks are reproducible per (seed, epoch, rank) and other users of the global RNG are untouched.

    Args:
        frame_lengths: ``[B]`` valid frames per clip.
        num_frames: F, padded frame count of the batch.
        prob, length, min_masks: span start probability, span length (frames), minimum spans per clip.

    Returns:
        ``[B, F]`` bool; never True on a padding frame (transformers may mark one as a filler).
    """
    frame_lengths = frame_lengths.cpu().long()
    valid = frame_mask(frame_lengths, num_frames)
    saved = np.random.get_state()
    np.random.seed(int(rng.integers(0, 2**32 - 1)))
    try:
        mask = _compute_mask_indices((len(frame_lengths), num_frames), prob, min(length, num_frames),
                                     attention_mask=valid.long(), min_masks=min_masks)
    finally:
        np.random.set_state(saved)
    return torch.from_numpy(mask) & valid


def sample_negatives(mask: torch.Tensor, num_negatives: int, rng: np.random.Generator) -> torch.Tensor:
    """Distractor indices for every masked frame, drawn from the *other masked frames of the same clip*, as
    wav2vec 2.0 does (Baevski et al. 2020, section 3.2), via transformers' ``_sample_negative_indices``.

    Args:
        mask: ``[B, F]`` bool time mask (:func:`sample_time_mask`; at least 2 masked frames per clip).
        num_negatives: distractors per masked frame.

    Returns:
        ``[B, F, num_negatives]`` int64 indices into the flattened ``[B * F]`` frames (rows of unmasked
        frames are unused).
    """
    masked = mask.cpu().bool().numpy()
    saved = np.random.get_state()
    np.random.seed(int(rng.integers(0, 2**32 - 1)))
    try:
        neg = _sample_negative_indices(masked.shape, num_negatives, mask_time_indices=masked)
    finally:
        np.random.set_state(saved)
    return torch.from_numpy(neg).long()

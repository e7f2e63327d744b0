"""Per-layer, per-dimension standardisation of encoder features with statistics of the unlabelled pool.

Pretrained encoders' residual streams carry a few dimensions hundreds of times larger than the rest; a small
head trained on a few dozen labels spends them on those. Standardising every dimension of every layer with
the pool's own mean and standard deviation (no labels: the pool is free data) is what a scikit-learn
``StandardScaler`` + logistic-regression probe does, and the head then matches that probe. The transform is
affine per layer, so it commutes with mean pooling and with the learned layer weighting: the frozen-encoder
cache can keep raw per-layer means and standardise them at training and scoring time.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

import numpy as np
import torch
from safetensors.numpy import load as load_safetensors_bytes
from safetensors.numpy import save as save_safetensors_bytes
from torch import nn

from ser_models.exceptions import ConfigError
from ser_models.io import read_bytes, write_bytes_atomic

#: A dimension whose spread is below this (a constant feature) is centred, not scaled up.
MIN_STD = 1e-5


class LayerStandardizer(nn.Module):
    """``(h_l - mean_l) / std_l`` for every hidden state ``l``, with statistics set from a pool.

    Args:
        num_layers: L hidden states.
        dim: D, their width.

    The statistics are buffers (saved in checkpoints with the trainable weights, never trained). ``clips`` is
    how many clips they were computed from: 0 means "not set yet", and training refuses that.
    """

    def __init__(self, num_layers: int, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_layers, dim))
        self.register_buffer("scale", torch.ones(num_layers, dim))  # 1 / std
        self.register_buffer("clips", torch.zeros((), dtype=torch.int64))

    @property
    def fitted(self) -> bool:
        return int(self.clips) > 0

    def set_statistics(self, mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor, clips: int) -> None:
        """Set ``mean`` and ``std`` ``[L, D]`` (feature units) computed over ``clips`` clips."""
        mean, std = torch.as_tensor(np.asarray(mean), dtype=torch.float32), torch.as_tensor(np.asarray(std),
                                                                                            dtype=torch.float32)
        if mean.shape != self.mean.shape or std.shape != self.mean.shape:
            raise ConfigError(f"feature statistics of shape {tuple(mean.shape)} / {tuple(std.shape)} do not fit an "
                              f"encoder with [L, D] = {tuple(self.mean.shape)}")
        with torch.no_grad():
            self.mean.copy_(mean)
            self.scale.copy_(1.0 / std.clamp_min(MIN_STD))
            self.clips.fill_(int(clips))

    def forward(self, hidden_states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """L tensors ``[B, F, D]`` -> the same, standardised per layer."""
        return tuple((h - self.mean[i].to(h.dtype)) * self.scale[i].to(h.dtype) for i, h in enumerate(hidden_states))

    def forward_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """``[B, S, D]`` per-layer utterance vectors of the first ``S <= L`` hidden states -> the same,
        standardised."""
        states = pooled.shape[1]
        return (pooled - self.mean[:states].to(pooled.dtype)) * self.scale[:states].to(pooled.dtype)

    def extra_repr(self) -> str:
        return f"layers={self.mean.shape[0]}, dim={self.mean.shape[1]}, clips={int(self.clips)}"


class RunningMoments:
    """Streaming mean and standard deviation of ``[L, D]`` feature rows (float64; memory O(L x D))."""

    def __init__(self):
        self.n, self.sum, self.sumsq = 0, None, None

    def add(self, rows: np.ndarray) -> None:
        """Args: rows ``[N, L, D]``."""
        rows = np.asarray(rows, dtype=np.float64)
        if self.sum is None:
            self.sum, self.sumsq = np.zeros(rows.shape[1:]), np.zeros(rows.shape[1:])
        self.n += len(rows)
        self.sum += rows.sum(0)
        self.sumsq += np.square(rows).sum(0)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` ``[L, D]`` float32 (population std)."""
        if not self.n:
            raise ConfigError("no clips to compute feature statistics from")
        mean = self.sum / self.n
        var = np.maximum(self.sumsq / self.n - np.square(mean), 0.0)
        return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def save_statistics(path, mean: np.ndarray, std: np.ndarray, clips: int) -> None:
    """Write ``mean`` / ``std`` ``[L, D]`` and the clip count as safetensors (atomic; ``path`` may be a URI)."""
    write_bytes_atomic(path, save_safetensors_bytes({"mean": np.ascontiguousarray(mean, np.float32),
                                                     "std": np.ascontiguousarray(std, np.float32)},
                                                    metadata={"clips": str(int(clips))}))


def load_statistics(path) -> tuple[np.ndarray, np.ndarray, int]:
    """``(mean, std, clips)`` from a file written by :func:`save_statistics`.

    Raises:
        ConfigError: naming ``model.feature_stats`` and the file when it cannot be read.
    """
    try:
        data = read_bytes(path)
        tensors = load_safetensors_bytes(data)
        # The clip count sits in the header's metadata (safetensors: 8-byte length, then the JSON header).
        header = json.loads(data[8:8 + struct.unpack("<Q", data[:8])[0]])
        clips = int(header.get("__metadata__", {}).get("clips", 0))
        return tensors["mean"], tensors["std"], clips
    except Exception as exc:
        raise ConfigError(f"model.feature_stats: cannot read feature statistics from {path} "
                          f"({type(exc).__name__}: {exc})") from exc

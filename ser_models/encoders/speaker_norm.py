"""Per-speaker standardisation of encoder features (``model.feature_norm=speaker``).

Emotion is a departure from a speaker's own baseline: a deep voice is not sad, a fast talker not angry. So every
feature is standardised with the mean and std of its own speaker's clips in the pool (every clip counts,
labelled or not; no label is read), not with the pool's.

A speaker seen on few clips has noisy statistics (one clip: a std of zero). They are shrunk toward the pool's
by one rule, ``w = n / (n + k)`` for a speaker with ``n`` clips and ``k = model.speaker_shrinkage``: the
speaker's mean and variance become those of a mixture that weighs the speaker's own clips by ``w`` and the
pool by ``1 - w``::

    mean' = w * mean_s + (1 - w) * mean_pool
    var'  = w * (var_s + (mean_s - mean')**2) + (1 - w) * (var_pool + (mean_pool - mean')**2)

With ``k = 10`` a speaker with 10 clips is half their own, one with 90 clips 90 %. ``k = 0`` uses the speaker's
own statistics alone. A clip with no speaker, or one the statistics never saw, falls back to the pool's
statistics, and every caller counts those fallbacks.

Memory is O(S x L x D) for S speakers (float64 sums while streaming): 1,000 speakers of Whisper-tiny's first two
hidden states take 12 MB.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from safetensors.numpy import load as load_safetensors_bytes
from safetensors.numpy import save as save_safetensors_bytes
from torch import nn

# One definition of a clip's speaker (a segment without one is its stream's): the pool's readers give it as the
# ``speaker`` column, and a value here is normalised by the same function (None, NaN or blank = unknown).
from ser_models.data.speakers import speaker_key  # noqa: F401 (re-exported)
from ser_models.encoders.standardizer import MIN_STD, RunningMoments
from ser_models.exceptions import ConfigError
from ser_models.io import read_bytes, write_bytes_atomic

#: Default ``k`` of the shrinkage rule, in clips (``model.speaker_shrinkage``).
DEFAULT_SHRINK_CLIPS = 10.0


class SpeakerMoments:
    """Streaming moments of ``[L, D]`` feature rows per speaker and over the whole pool."""

    def __init__(self):
        self.pool = RunningMoments()
        self.by_speaker: dict[str, RunningMoments] = {}
        self.without_speaker = 0

    def add(self, rows: np.ndarray, speakers: Sequence) -> None:
        """Args: rows ``[N, L, D]``; speakers: N speaker values (None or empty = unknown: pool only)."""
        rows = np.asarray(rows)
        keys = [speaker_key(s) for s in speakers]
        if len(keys) != len(rows):
            raise ValueError(f"{len(rows)} feature rows but {len(keys)} speakers")
        if not len(rows):
            return
        self.pool.add(rows)
        order: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if key is None:
                self.without_speaker += 1
            else:
                order.setdefault(key, []).append(i)
        for key, index in order.items():
            self.by_speaker.setdefault(key, RunningMoments()).add(rows[index])

    def result(self, shrink_clips: float = DEFAULT_SHRINK_CLIPS) -> SpeakerStatistics:
        """The shrunk statistics of every speaker seen, and the pool's (see the module docstring)."""
        if shrink_clips < 0:
            raise ConfigError(f"model.speaker_shrinkage must be >= 0 clips, got {shrink_clips!r}")
        pool_mean, pool_std = self.pool.result()
        pool_mean64, pool_var = pool_mean.astype(np.float64), np.square(pool_std.astype(np.float64))
        speakers = sorted(self.by_speaker)
        shape = (len(speakers), *pool_mean.shape)
        mean, std, counts = np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.zeros(len(speakers), np.int64)
        for i, key in enumerate(speakers):
            m = self.by_speaker[key]
            s_mean = m.sum / m.n
            s_var = np.maximum(m.sumsq / m.n - np.square(s_mean), 0.0)
            w = m.n / (m.n + float(shrink_clips))
            shrunk = w * s_mean + (1 - w) * pool_mean64
            var = w * (s_var + np.square(s_mean - shrunk)) + (1 - w) * (pool_var + np.square(pool_mean64 - shrunk))
            mean[i], std[i], counts[i] = shrunk, np.sqrt(var), m.n
        return SpeakerStatistics(speakers=speakers, counts=counts, mean=mean, std=std, pool_mean=pool_mean,
                                 pool_std=pool_std, pool_clips=self.pool.n, shrink_clips=float(shrink_clips))


@dataclass
class SpeakerStatistics:
    """Shrunk per-speaker statistics and the pool's fallback.

    Attributes:
        speakers: S speaker ids, sorted.
        counts: ``[S]`` clips per speaker.
        mean, std: ``[S, L, D]`` shrunk statistics (feature units).
        pool_mean, pool_std: ``[L, D]``, for clips without a known speaker.
        pool_clips: clips the pool statistics came from.
        shrink_clips: ``k`` of the shrinkage rule.
    """

    speakers: list[str]
    counts: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    pool_mean: np.ndarray
    pool_std: np.ndarray
    pool_clips: int
    shrink_clips: float

    def __post_init__(self) -> None:
        self._row = {s: i for i, s in enumerate(self.speakers)}

    def index(self, speakers: Sequence) -> np.ndarray:
        """``[N]`` row of each clip's speaker in :attr:`mean`, -1 where it falls back to the pool."""
        return np.asarray([self._row.get(speaker_key(s), -1) if speaker_key(s) is not None else -1
                           for s in speakers], np.int64)

    def normalise(self, rows: np.ndarray, speakers: Sequence) -> tuple[np.ndarray, int]:
        """Standardise ``[N, S', D]`` per-layer rows of the first ``S' <= L`` hidden states (or ``[N, F, S', D]``
        frames) with each clip's speaker statistics.

        Returns:
            ``(rows, fallbacks)``: float32 rows of the input's shape, and how many clips used the pool's
            statistics (no speaker, or one not in :attr:`speakers`).
        """
        rows = np.asarray(rows, np.float32)
        index = self.index(speakers)
        if len(index) != len(rows):
            raise ValueError(f"{len(rows)} feature rows but {len(index)} speakers")
        states = rows.shape[-2]
        mean = np.concatenate([self.mean, self.pool_mean[None]])[:, :states]  # row -1 = the pool
        scale = 1.0 / np.maximum(np.concatenate([self.std, self.pool_std[None]])[:, :states], MIN_STD)
        m, sc = mean[index], scale[index]  # [N, S', D]
        if rows.ndim == 4:  # frames: one statistic per clip for all its frames
            m, sc = m[:, None], sc[:, None]
        return ((rows - m) * sc).astype(np.float32), int((index < 0).sum())

    def save(self, path) -> None:
        """Write the statistics as safetensors (atomic; ``path`` may be a URI)."""
        tensors = {"mean": np.ascontiguousarray(self.mean, np.float32), "std": np.ascontiguousarray(self.std, np.float32),
                   "counts": np.ascontiguousarray(self.counts, np.int64),
                   "pool_mean": np.ascontiguousarray(self.pool_mean, np.float32),
                   "pool_std": np.ascontiguousarray(self.pool_std, np.float32)}
        meta = {"speakers": json.dumps(self.speakers), "pool_clips": str(int(self.pool_clips)),
                "shrink_clips": repr(float(self.shrink_clips))}
        write_bytes_atomic(path, save_safetensors_bytes(tensors, metadata=meta))

    @classmethod
    def load(cls, path) -> SpeakerStatistics:
        """Read a file written by :meth:`save`.

        Raises:
            ConfigError: naming ``model.speaker_stats`` and the file when it cannot be read.
        """
        try:
            data = read_bytes(path)
            t = load_safetensors_bytes(data)
            meta = json.loads(data[8:8 + struct.unpack("<Q", data[:8])[0]]).get("__metadata__", {})
            return cls(speakers=json.loads(meta["speakers"]), counts=t["counts"], mean=t["mean"], std=t["std"],
                       pool_mean=t["pool_mean"], pool_std=t["pool_std"], pool_clips=int(meta["pool_clips"]),
                       shrink_clips=float(meta["shrink_clips"]))
        except Exception as exc:
            raise ConfigError(f"model.speaker_stats: cannot read speaker statistics from {path} "
                              f"({type(exc).__name__}: {exc})") from exc

    def summary(self) -> dict:
        """Speakers, clips per speaker (min / median / max) and the shrinkage, for logs and metrics."""
        counts = self.counts if len(self.counts) else np.zeros(1, np.int64)
        return {"speakers": len(self.speakers), "clips_min": int(counts.min()),
                "clips_median": float(np.median(counts)), "clips_max": int(counts.max()),
                "pool_clips": int(self.pool_clips), "shrink_clips": self.shrink_clips}


class SpeakerStandardizer(nn.Module):
    """The model's ``model.feature_norm=speaker`` step: ``(h - mean_s) / std_s`` per clip, by its speaker.

    The statistics are not trained and not in the model's state dict (their speaker count varies from pool to
    pool); a checkpoint carries them in a file of their own (``EmotionModel.save_checkpoint``). Until
    :meth:`set_statistics` is called the model is not fitted, and training refuses it.

    Args:
        num_layers: L hidden states.
        dim: D, their width.
    """

    def __init__(self, num_layers: int, dim: int):
        super().__init__()
        self.shape = (num_layers, dim)
        self.stats: SpeakerStatistics | None = None
        # Buffers, so .to(device) moves them with the model; not persistent: the checkpoint keeps them in a
        # file of their own (their speaker count varies from pool to pool). Empty until set, so that they
        # still record the device the model was moved to.
        self.register_buffer("_mean", torch.zeros(0), persistent=False)
        self.register_buffer("_scale", torch.zeros(0), persistent=False)

    @property
    def fitted(self) -> bool:
        return self.stats is not None

    def set_statistics(self, stats: SpeakerStatistics) -> None:
        """Use ``stats`` (``[S, L', D]`` per speaker, ``[L', D]`` for the pool, of the first ``L' <= L`` states).

        Raises:
            ConfigError: the statistics do not fit an encoder with ``[L, D]`` hidden states.
        """
        states, dim = stats.pool_mean.shape
        if dim != self.shape[1] or states > self.shape[0] or stats.mean.shape[1:] != stats.pool_mean.shape:
            raise ConfigError(f"speaker statistics of shape {tuple(stats.pool_mean.shape)} do not fit an encoder "
                              f"with [L, D] = {self.shape}")
        self.stats = stats
        pad = self.shape[0] - states  # a cache of the first states: the model's layer is among them
        mean = np.concatenate([stats.mean, stats.pool_mean[None]])  # row -1 = the pool
        std = np.concatenate([stats.std, stats.pool_std[None]])
        mean = np.pad(mean, ((0, 0), (0, pad), (0, 0)))
        std = np.pad(std, ((0, 0), (0, pad), (0, 0)), constant_values=1.0)
        # On the device the model was moved to already (a loop sets new statistics every round).
        device = self._mean.device
        self._mean = torch.from_numpy(np.ascontiguousarray(mean, np.float32)).to(device)
        self._scale = torch.from_numpy(np.ascontiguousarray(1.0 / np.maximum(std, MIN_STD), np.float32)).to(device)

    def _rows(self, speakers: Sequence | None, batch: int, states: int, like: torch.Tensor):
        if self.stats is None:
            raise ConfigError("model.feature_norm=speaker but no speaker statistics are loaded: set "
                              "model.speaker_stats (the AL loop and jobs.predict compute them)")
        index = (np.full(batch, -1, np.int64) if speakers is None else self.stats.index(speakers))
        if len(index) != batch:
            raise ValueError(f"{batch} clips but {len(index)} speakers")
        index = torch.from_numpy(index).to(self._mean.device)
        return (self._mean[index, :states].to(like.device, like.dtype),
                self._scale[index, :states].to(like.device, like.dtype))

    def forward(self, hidden_states: Sequence[torch.Tensor], speakers: Sequence | None) -> tuple[torch.Tensor, ...]:
        """L tensors ``[B, F, D]`` -> the same, standardised with each clip's speaker statistics (None = the
        pool's for every clip)."""
        first = hidden_states[0]
        mean, scale = self._rows(speakers, first.shape[0], len(hidden_states), first)  # [B, L, D]
        return tuple((h - mean[:, i, None]) * scale[:, i, None] for i, h in enumerate(hidden_states))

    def forward_pooled(self, pooled: torch.Tensor, speakers: Sequence | None) -> torch.Tensor:
        """``[B, S, D]`` per-layer utterance vectors of the first ``S <= L`` hidden states, or ``[B, F, S, D]``
        frames -> the same, standardised."""
        mean, scale = self._rows(speakers, pooled.shape[0], pooled.shape[-2], pooled)
        if pooled.dim() == 4:
            mean, scale = mean[:, None], scale[:, None]
        return (pooled - mean) * scale

    def extra_repr(self) -> str:
        return f"layers={self.shape[0]}, dim={self.shape[1]}, speakers={len(self.stats.speakers) if self.stats else 0}"

"""Masked-prediction targets: frame features (MFCC or an encoder layer) clustered by FAISS k-means."""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ser_models.data.clips import ClipSet
from ser_models.encoders import Encoder
from ser_models.encoders.presets import TINY_PRESETS
from ser_models.exceptions import ConfigError, TrainingError
from ser_models.heads.pooling import frame_mask
from ser_models.io import read_bytes, write_bytes_atomic
from ser_models.pretraining.mfcc import mfcc
from ser_models.pretraining.tapt_config import TaptConfig
from ser_models.training.batching import iterate_batches


@dataclass
class Clusters:
    """k-means targets: centroids in standardised feature space.

    Attributes:
        centroids: ``[K, d]`` float32.
        mean, std: ``[d]`` float32 feature standardisation (MFCC cepstra and deltas differ in scale by ~100x;
            unscaled, k-means would only cluster energy).
        features: ``"mfcc"`` | ``"layer"``; layer: hidden-state index when ``"layer"``.
    """

    centroids: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    features: str
    layer: int
    stats: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"centroids": self.centroids, "mean": self.mean, "std": self.std, "features": self.features,
                "layer": self.layer, "stats": self.stats}

    @classmethod
    def from_dict(cls, d: dict) -> Clusters:
        return cls(np.asarray(d["centroids"], np.float32), np.asarray(d["mean"], np.float32),
                   np.asarray(d["std"], np.float32), str(d["features"]), int(d["layer"]), dict(d.get("stats", {})))

    def save(self, path: str) -> None:
        buf = io.BytesIO()
        np.savez(buf, centroids=self.centroids, mean=self.mean, std=self.std, features=self.features,
                 layer=self.layer)
        write_bytes_atomic(path, buf.getvalue())

    @classmethod
    def load(cls, path: str) -> Clusters:
        with np.load(io.BytesIO(read_bytes(path))) as z:
            return cls(z["centroids"], z["mean"], z["std"], str(z["features"]), int(z["layer"]))


@torch.no_grad()
def cluster_frames(encoder: Encoder, wavs: torch.Tensor, lengths: torch.Tensor, features: str,
                   layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame features that k-means clusters, aligned with ``encoder``'s frames.

    Args:
        encoder: gives the input normalisation and frame count (``mfcc``) or the hidden states (``layer``).
        wavs: ``[B, T]`` 16 kHz; lengths: ``[B]`` samples.
        features: ``"mfcc"`` (39-d, on the encoder's normalised input) or ``"layer"``.
        layer: hidden-state index for ``"layer"``.

    Returns:
        ``(frames [B, F, d] float32, frame_lengths [B])`` with F the encoder's padded frame count.
    """
    if features == "layer":
        was_training = encoder.training
        encoder.eval()
        out = encoder(wavs, lengths)
        encoder.train(was_training)
        return out.hidden_states[layer].float(), out.frame_lengths
    input_values, _ = encoder.prepare_inputs(wavs, lengths)
    frame_lengths = encoder.frame_lengths(lengths.to(wavs.device))
    num_frames = int(encoder.frame_lengths(torch.tensor([wavs.shape[1]])))
    feats = mfcc(input_values, lengths, frame_lengths)
    if feats.shape[1] < num_frames:
        feats = nn.functional.pad(feats, (0, 0, 0, num_frames - feats.shape[1]))
    return feats, frame_lengths


def fit_kmeans(frames: np.ndarray, k: int, iterations: int, seed: int) -> tuple[np.ndarray, dict]:
    """FAISS k-means over every given frame.

    ``faiss.Kmeans`` silently subsamples to ``max_points_per_centroid`` (default 256) points per centroid;
    it is raised to cover all frames, so the number of frames is bounded by ``tapt.kmeans_max_clips`` only.

    Args:
        frames: ``[N, d]`` features.

    Returns:
        ``(centroids [K, d] float32, {"frames", "inertia", "seconds"})``.

    Raises:
        TrainingError: fewer frames than clusters.
    """
    import faiss

    x = np.ascontiguousarray(frames, dtype=np.float32)
    if x.shape[0] < k:
        raise TrainingError(f"k-means needs at least tapt.num_clusters={k} frames, got {x.shape[0]}: lower "
                            "tapt.num_clusters or raise tapt.kmeans_max_clips")
    t0 = time.perf_counter()
    km = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=seed, verbose=False,
                      max_points_per_centroid=int(math.ceil(x.shape[0] / k)) + 1, min_points_per_centroid=1)
    km.train(x)
    return np.ascontiguousarray(km.centroids, dtype=np.float32), {
        "frames": int(x.shape[0]), "inertia": float(km.obj[-1]) if len(km.obj) else float("nan"),
        "seconds": time.perf_counter() - t0}


def fit_clusters(encoder: Encoder, clips: ClipSet, cfg: TaptConfig, batch_size: int = 16) -> Clusters:
    """Fit the masked-prediction targets on ``clips`` (centre crops of ``tapt.optim.max_crop_seconds``).

    Raises:
        ConfigError: ``tapt.cluster_layer`` out of range for this encoder.
    """
    cfg = resolve_targets(cfg, encoder)
    _check_layer(encoder, cfg)
    chunks = []
    for batch in iterate_batches(clips, batch_size, cfg.optim.max_crop_seconds, rng=None):
        feats, fl = cluster_frames(encoder, batch.wavs, batch.lengths, cfg.cluster_features, cfg.cluster_layer)
        chunks.append(feats[frame_mask(fl, feats.shape[1])].cpu().numpy())
    frames = np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)
    mean = frames.mean(0).astype(np.float32) if len(frames) else np.zeros(frames.shape[1], np.float32)
    std = (frames.std(0) + 1e-5).astype(np.float32) if len(frames) else np.ones(frames.shape[1], np.float32)
    centroids, stats = fit_kmeans((frames - mean) / std, cfg.num_clusters, cfg.kmeans_iterations, cfg.optim.seed)
    stats["clips"] = len(clips)
    return Clusters(centroids, mean, std, cfg.cluster_features, cfg.cluster_layer, stats)


def resolve_targets(cfg: TaptConfig, encoder: Encoder) -> TaptConfig:
    """``cfg`` with ``cluster_features=auto`` and ``cluster_layer=null`` made concrete for ``encoder``: a
    randomly initialised tiny preset clusters MFCCs, anything with learnt weights its own middle layer."""

    random_init = encoder.cfg.source in TINY_PRESETS and not encoder.cfg.checkpoint
    return cfg.resolve_targets(pretrained=not random_init, num_hidden_states=encoder.num_layers)


def _check_layer(encoder: Encoder, cfg: TaptConfig) -> None:
    if cfg.cluster_features == "layer" and cfg.cluster_layer >= encoder.num_layers:
        raise ConfigError(f"tapt.cluster_layer={cfg.cluster_layer} but the encoder has {encoder.num_layers} "
                          f"hidden states (0..{encoder.num_layers - 1})")

"""Task-adaptive pre-training (TAPT): continue the encoder's self-supervised objective on the pool's audio.

Two objectives, picked by encoder family (``tapt.objective=auto``):

- ``contrastive`` (wav2vec2): ``Wav2Vec2ForPreTraining`` over the encoder's own base model. Since
  transformers 4.12 its forward returns ``loss=None`` unless ``sampled_negative_indices`` is passed; AFTER's
  published TAPT code passes only the mask and so trains nothing. Here masks and negatives are sampled per
  batch (:meth:`ContrastiveObjective.prepare`) and the loss is checked to exist.
- ``masked_prediction`` (HuBERT / WavLM): cross-entropy on masked frames between a cosine-similarity head
  and k-means cluster ids of MFCC frames (first iteration) or of a layer of the encoder itself (later
  iterations). Targets are computed per batch on the same random crop the model sees, from centroids fitted
  once on the driver (:func:`fit_clusters`).

Layers: objectives and one training step (no Ray) -> :func:`pretrain` (epochs, resume state) ->
:func:`tapt_loop_per_worker` (Ray Train worker) -> :func:`run_tapt` (driver, artifacts)::

    output_dir/
      encoder/encoder.safetensors   state dict of Encoder.hf_model: set EncoderConfig.checkpoint to it
      encoder/encoder.json          source encoder config, objective, epochs, final loss
      kmeans/clusters.npz           centroids [K, d] + feature mean/std (masked prediction only)
      tapt_metrics.json             loss per epoch, seconds (written last: marks the run finished)
      tapt_loss.png                 loss curve
      ray_train/tapt/               Ray Train checkpoints per epoch; rerunning resumes from them

Where we differ from AFTER's code: negatives are actually passed (so the loss exists), the loss is averaged
per masked frame, clips are shuffled and randomly cropped every epoch, the CNN is frozen by default, and
only the training split is ever read (dev/test are refused by the job config).

References:
    Li et al., "Active Learning with Task Adaptation Pre-training for Speech Emotion Recognition",
    arXiv:2405.00307 (AFTER). Baevski et al., "wav2vec 2.0", NeurIPS 2020. Hsu et al., "HuBERT",
    IEEE/ACM TASLP 2021.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import math
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

from ser_models.encoders import Encoder, EncoderConfig, build_encoder
from ser_models.exceptions import ConfigError, TrainingError
from ser_models.io import exists, read_bytes, save_figure, storage_path, write_bytes_atomic
from ser_models.training.batching import (
    AUDIO_INPUT_COLUMNS,
    ClipSet,
    StreamingClips,
    epoch_batches,
    iterate_batches,
)
from ser_models.training.distributed import all_reduce_min, rank, seed_epoch, wrap_ddp
from ser_models.training.mfcc import mfcc
from ser_models.training.schedule import tri_stage_scheduler
from ser_models.training.state_io import load_state, save_state
from ser_models.training.tapt_config import TaptConfig, TaptJobConfig

#: Pool columns TAPT reads: audio only, never labels.
TAPT_COLUMNS = AUDIO_INPUT_COLUMNS
ENCODER_DIR = "encoder"
WEIGHTS_FILE = "encoder.safetensors"
INFO_FILE = "encoder.json"
METRICS_FILE = "tapt_metrics.json"
PLOT_FILE = "tapt_loss.png"
CLUSTERS_FILE = "kmeans/clusters.npz"
STATE_FILE = "tapt_state.pt"
RESULT_FILE = "result.json"
#: HuBERT's temperature of the cosine similarity between projected frames and cluster embeddings.
COSINE_TEMPERATURE = 0.1


# ----------------------------------------------------------------------------------------------- masks


def _valid_frames(frame_lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
    """[B, F] bool, True on real (non-padding) frames."""
    return torch.arange(num_frames, device=frame_lengths.device)[None, :] < frame_lengths[:, None]


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
    valid = _valid_frames(frame_lengths, num_frames)
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


# ------------------------------------------------------------------------------------------ objectives


class TaptObjective(nn.Module):
    """Base of the TAPT objectives: owns the :class:`Encoder` being adapted plus objective-only heads.

    A step is ``inputs = objective.prepare(wavs, lengths, rng)`` (masks, negatives or targets: sampled
    outside ``forward`` so that DDP wraps only differentiable work) then ``objective(**inputs)``, which
    returns ``{"loss": scalar, ...detached stats}``, the loss averaged per masked frame.
    """

    name = "base"

    def __init__(self, encoder: Encoder, cfg: TaptConfig):
        super().__init__()
        self.encoder = encoder
        self.cfg = cfg
        hf = encoder.hf_model
        if not hasattr(hf, "masked_spec_embed"):
            raise ConfigError(f"encoder {encoder.cfg.source!r} has no mask embedding (its config sets "
                              "mask_time_prob=0 and mask_feature_prob=0), so TAPT cannot mask frames: use a "
                              "checkpoint whose config has mask_time_prob > 0")
        # Our masks are passed explicitly; with apply_spec_augment off the base model would ignore them.
        hf.config.apply_spec_augment = True
        hc = encoder.hf_config
        self.mask_prob = float(cfg.mask_time_prob if cfg.mask_time_prob is not None else hc.mask_time_prob)
        self.mask_length = int(cfg.mask_time_length if cfg.mask_time_length is not None else hc.mask_time_length)
        self.min_masks = int(getattr(hc, "mask_time_min_masks", 2))
        if cfg.freeze_feature_encoder:
            for p in hf.feature_extractor.parameters():
                p.requires_grad_(False)

    @property
    def min_samples(self) -> int:
        """Shortest clip (16 kHz samples) with enough frames for one masked span and a distractor."""
        n = self.encoder.min_samples
        while int(self.encoder.frame_lengths(torch.tensor([n]))) < self.mask_length + 2:
            n += 320
        return n

    def _frames(self, wavs: torch.Tensor, lengths: torch.Tensor):
        input_values, attention_mask = self.encoder.prepare_inputs(wavs, lengths)
        frame_lengths = self.encoder.frame_lengths(lengths.to(wavs.device))
        num_frames = int(self.encoder.frame_lengths(torch.tensor([wavs.shape[1]])))
        return input_values, attention_mask, frame_lengths, num_frames

    def set_step(self, step: int) -> None:
        """Per-step annealing hook (the quantizer temperature of the contrastive objective)."""

    def prepare(self, wavs: torch.Tensor, lengths: torch.Tensor, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (f"objective={self.name!r}, mask_time_prob={self.mask_prob}, mask_time_length={self.mask_length}, "
                f"freeze_feature_encoder={self.cfg.freeze_feature_encoder}")


class ContrastiveObjective(TaptObjective):
    """wav2vec 2.0's contrastive + codebook-diversity loss over ``Wav2Vec2ForPreTraining``.

    The pre-training model's ``wav2vec2`` submodule *is* ``encoder.hf_model`` (shared, not copied), so the
    adapted weights are the encoder's. Quantizer and projections come from the source checkpoint when it has
    them (a hub id / folder of a ``*ForPreTraining`` model), else they start random -- which is all a tiny
    preset or a fine-tuned checkpoint can offer.

    References:
        Baevski et al., "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech Representations",
        NeurIPS 2020.
    """

    name = "contrastive"

    def __init__(self, encoder: Encoder, cfg: TaptConfig):
        from transformers import Wav2Vec2ForPreTraining

        if encoder.family != "wav2vec2":
            raise ConfigError(f"tapt.objective=contrastive needs a wav2vec2 encoder, got {encoder.family}")
        super().__init__(encoder, cfg)
        config = copy.deepcopy(encoder.hf_config)
        config.diversity_loss_weight = cfg.diversity_loss_weight
        if cfg.num_negatives is not None:
            config.num_negatives = cfg.num_negatives
        self.num_negatives = int(config.num_negatives)
        self.pretraining = _pretraining_model(encoder, config, Wav2Vec2ForPreTraining)
        self.pretraining.wav2vec2 = encoder.hf_model
        self.set_step(0)

    def set_step(self, step: int) -> None:
        c = self.cfg
        self.pretraining.set_gumbel_temperature(
            max(c.gumbel_temperature_start * c.gumbel_temperature_decay ** step, c.gumbel_temperature_end))

    def prepare(self, wavs: torch.Tensor, lengths: torch.Tensor, rng: np.random.Generator) -> dict:
        """Masks and negatives for a padded batch ``wavs [B, T]``, ``lengths [B]`` (16 kHz samples)."""
        input_values, attention_mask, frame_lengths, num_frames = self._frames(wavs, lengths)
        mask = sample_time_mask(frame_lengths, num_frames, self.mask_prob, self.mask_length, self.min_masks, rng)
        negatives = sample_negatives(mask, self.num_negatives, rng)
        return {"input_values": input_values, "attention_mask": attention_mask,
                "mask_time_indices": mask.to(wavs.device), "sampled_negative_indices": negatives.to(wavs.device)}

    def forward(self, input_values, attention_mask, mask_time_indices, sampled_negative_indices) -> dict:
        out = self.pretraining(input_values, attention_mask=attention_mask, mask_time_indices=mask_time_indices,
                               sampled_negative_indices=sampled_negative_indices)
        if out.loss is None:  # the transformers >= 4.12 trap; fail loudly rather than train nothing
            raise TrainingError("Wav2Vec2ForPreTraining returned no loss: sampled_negative_indices missing")
        n = mask_time_indices.sum().clamp(min=1)
        # out.loss = contrastive + config.diversity_loss_weight * diversity, both summed over masked frames.
        return {"loss": out.loss / n, "contrastive": out.contrastive_loss.detach() / n,
                "diversity": out.diversity_loss.detach() / n,
                "perplexity": out.codevector_perplexity.detach().float()}


def _pretraining_model(encoder: Encoder, config, model_cls):
    if encoder.cfg.source.startswith("tiny-"):
        return model_cls(config)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model_cls.from_pretrained(encoder.cfg.source, config=config,
                                             local_files_only=not encoder.cfg.allow_download)
    except Exception as exc:  # a base-model-only folder: no quantizer to reuse
        warnings.warn(f"{encoder.cfg.source}: no pre-training heads found ({type(exc).__name__}); the quantizer "
                      "and projections start random", stacklevel=2)
        return model_cls(config)


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
    """Fit the masked-prediction targets on ``clips`` (centre crops of ``tapt.max_crop_seconds``).

    Raises:
        ConfigError: ``tapt.cluster_layer`` out of range for this encoder.
    """
    cfg = resolve_targets(cfg, encoder)
    _check_layer(encoder, cfg)
    chunks = []
    for batch in iterate_batches(clips, batch_size, cfg.max_crop_seconds, rng=None):
        feats, fl = cluster_frames(encoder, batch.wavs, batch.lengths, cfg.cluster_features, cfg.cluster_layer)
        chunks.append(feats[_valid_frames(fl, feats.shape[1])].cpu().numpy())
    frames = np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)
    mean = frames.mean(0).astype(np.float32) if len(frames) else np.zeros(frames.shape[1], np.float32)
    std = (frames.std(0) + 1e-5).astype(np.float32) if len(frames) else np.ones(frames.shape[1], np.float32)
    centroids, stats = fit_kmeans((frames - mean) / std, cfg.num_clusters, cfg.kmeans_iterations, cfg.seed)
    stats["clips"] = len(clips)
    return Clusters(centroids, mean, std, cfg.cluster_features, cfg.cluster_layer, stats)


def resolve_targets(cfg: TaptConfig, encoder: Encoder) -> TaptConfig:
    """``cfg`` with ``cluster_features=auto`` and ``cluster_layer=null`` made concrete for ``encoder``: a
    randomly initialised tiny preset clusters MFCCs, anything with learnt weights its own middle layer."""
    from ser_models.encoders.presets import TINY_PRESETS

    random_init = encoder.cfg.source in TINY_PRESETS and not encoder.cfg.checkpoint
    return cfg.resolve_targets(pretrained=not random_init, num_hidden_states=encoder.num_layers)


def _check_layer(encoder: Encoder, cfg: TaptConfig) -> None:
    if cfg.cluster_features == "layer" and cfg.cluster_layer >= encoder.num_layers:
        raise ConfigError(f"tapt.cluster_layer={cfg.cluster_layer} but the encoder has {encoder.num_layers} "
                          f"hidden states (0..{encoder.num_layers - 1})")


class MaskedPredictionObjective(TaptObjective):
    """HuBERT's masked prediction of cluster ids, on a HuBERT or WavLM base model.

    Frames are masked with the base model's own ``masked_spec_embed``; the last hidden state of a masked
    frame is projected (``D -> proj_dim``) and scored by cosine similarity against a learned embedding per
    cluster, divided by 0.1; cross-entropy over masked frames only.

    Args:
        encoder: the encoder to adapt.
        cfg: TAPT settings.
        clusters: fitted targets (:func:`fit_clusters`).
        teacher: the frozen encoder whose layer is clustered (``cluster_features=layer``); default a frozen
            copy of ``encoder`` taken now, before any update.

    References:
        Hsu et al., "HuBERT: Self-Supervised Speech Representation Learning by Masked Prediction of Hidden
        Units", IEEE/ACM TASLP 2021.
    """

    name = "masked_prediction"

    def __init__(self, encoder: Encoder, cfg: TaptConfig, clusters: Clusters, teacher: Encoder | None = None):
        cfg = resolve_targets(cfg, encoder)
        super().__init__(encoder, cfg)
        _check_layer(encoder, cfg)
        if clusters.features != cfg.cluster_features or (clusters.features == "layer"
                                                         and clusters.layer != cfg.cluster_layer):
            raise ConfigError(f"clusters were fitted on {clusters.features} (layer {clusters.layer}), but "
                              f"tapt.cluster_features={cfg.cluster_features} tapt.cluster_layer={cfg.cluster_layer}")
        k = clusters.centroids.shape[0]
        self.proj = nn.Linear(encoder.hidden_size, cfg.proj_dim)
        self.cluster_embeddings = nn.Parameter(torch.randn(k, cfg.proj_dim) / math.sqrt(cfg.proj_dim))
        self.register_buffer("centroids", torch.from_numpy(clusters.centroids.copy()), persistent=False)
        self.register_buffer("feat_mean", torch.from_numpy(clusters.mean.copy()), persistent=False)
        self.register_buffer("feat_std", torch.from_numpy(clusters.std.copy()), persistent=False)
        self.features, self.layer = clusters.features, clusters.layer
        if self.features == "layer" and teacher is None:
            teacher = copy.deepcopy(encoder)
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        # A plain attribute, not a submodule: the teacher is neither trained, nor checkpointed, nor DDP-synced.
        self.__dict__["teacher"] = teacher

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if self.__dict__.get("teacher") is not None:
            self.__dict__["teacher"]._apply(fn)
        return self

    @torch.no_grad()
    def targets(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cluster ids [B, F] int64, frame_lengths [B])``; ids of padding frames are -100."""
        source = self.teacher if self.features == "layer" else self.encoder
        feats, fl = cluster_frames(source, wavs, lengths, self.features, self.layer)
        z = (feats - self.feat_mean) / self.feat_std
        ids = torch.cdist(z.flatten(0, 1), self.centroids).argmin(-1).view(z.shape[:2])
        return ids.masked_fill(~_valid_frames(fl, ids.shape[1]), -100), fl

    def prepare(self, wavs: torch.Tensor, lengths: torch.Tensor, rng: np.random.Generator) -> dict:
        """Masks and cluster-id targets for ``wavs [B, T]``, ``lengths [B]`` (16 kHz samples)."""
        input_values, attention_mask, frame_lengths, num_frames = self._frames(wavs, lengths)
        mask = sample_time_mask(frame_lengths, num_frames, self.mask_prob, self.mask_length, self.min_masks, rng)
        ids, _ = self.targets(wavs, lengths)
        return {"input_values": input_values, "attention_mask": attention_mask,
                "mask_time_indices": mask.to(wavs.device), "targets": ids}

    def forward(self, input_values, attention_mask, mask_time_indices, targets) -> dict:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*mismatched key_padding_mask.*")
            hidden = self.encoder.hf_model(input_values, attention_mask=attention_mask,
                                           mask_time_indices=mask_time_indices).last_hidden_state
        z = self.proj(hidden[mask_time_indices])  # [M, P]
        logits = nn.functional.cosine_similarity(z[:, None, :], self.cluster_embeddings[None], dim=-1)
        logits = logits / COSINE_TEMPERATURE  # [M, K]
        y = targets[mask_time_indices]
        loss = nn.functional.cross_entropy(logits.float(), y)
        return {"loss": loss, "accuracy": (logits.argmax(-1) == y).float().mean().detach()}


def build_objective(encoder: Encoder, cfg: TaptConfig, clusters: Clusters | dict | None = None) -> TaptObjective:
    """The objective ``cfg.objective`` names (``auto``: by ``encoder.family``).

    Raises:
        ConfigError: masked prediction without ``clusters``, or a contrastive objective on HuBERT/WavLM.
    """
    name = cfg.resolve_objective(encoder.family)
    if name == "adapter":
        raise ConfigError("tapt.objective=adapter pre-trains the WAP adapter on cached frames, not the encoder: "
                          "run it with jobs.adapter_pretrain (or jobs.after / jobs.finetune, which dispatch to it)")
    if name == "contrastive":
        return ContrastiveObjective(encoder, cfg)
    if clusters is None:
        raise ConfigError("tapt.objective=masked_prediction needs fitted clusters (fit_clusters)")
    if isinstance(clusters, dict):
        clusters = Clusters.from_dict(clusters)
    return MaskedPredictionObjective(encoder, cfg, clusters)


# --------------------------------------------------------------------------------------- the algorithm


def train_step(objective: TaptObjective, optimizer: torch.optim.Optimizer, wavs: torch.Tensor,
               lengths: torch.Tensor, rng: np.random.Generator, *, grad_clip: float = 0.0,
               forward: nn.Module | None = None) -> dict[str, float]:
    """One optimisation step on a padded batch; returns the step's loss and stats as floats.

    Args:
        forward: the module to call (a DDP wrapper of ``objective``); default ``objective``.
    """
    objective.train()
    inputs = objective.prepare(wavs, lengths, rng)
    out = (forward or objective)(**inputs)
    optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for p in objective.parameters() if p.requires_grad], grad_clip)
    optimizer.step()
    return {k: float(v.detach()) for k, v in out.items()}


@torch.no_grad()
def probe_loss(objective: TaptObjective, wavs: torch.Tensor, lengths: torch.Tensor, seed: int = 0) -> float:
    """The loss on a fixed batch with fixed masks/negatives (eval mode, no dropout): comparable over time."""
    was_training = objective.training
    objective.eval()
    try:
        return float(objective(**objective.prepare(wavs, lengths, np.random.default_rng(seed)))["loss"])
    finally:
        objective.train(was_training)


@dataclass
class TaptState:
    """Progress of a TAPT run, enough to resume after the last finished epoch (weights are stored beside)."""

    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)


def drop_short_clips(clips: ClipSet, min_samples: int) -> tuple[ClipSet, int]:
    """``clips`` without those shorter than ``min_samples``; returns ``(kept, number dropped)``."""
    keep = [i for i, n in enumerate(clips.lengths()) if n >= min_samples]
    if len(keep) == len(clips):
        return clips, 0
    assert clips.audio is not None
    kept = clips.subset(keep)
    return kept, len(clips) - len(keep)


def pretrain(objective: TaptObjective, clips: ClipSet | StreamingClips, cfg: TaptConfig, *,
             device: torch.device | None = None,
             resume: dict | None = None, on_epoch_end=None, log=print) -> TaptState:
    """Run TAPT epochs over this worker's clips (AdamW, tri-stage schedule, random crops).

    Args:
        objective: from :func:`build_objective`; its trainable parameters are optimised.
        clips: audio clips (labels unused), at least ``objective.min_samples`` long: held, or streamed from
            the worker's shard every epoch (:class:`StreamingClips`, which drops short clips as it reads).
        cfg: TAPT settings.
        device: where to train (default CPU).
        resume: ``{"state": TaptState, "model", "optimizer", "scheduler"}`` as saved by a checkpoint.
        on_epoch_end: ``f(state, objective, optimizer, scheduler)`` after every epoch on every worker
            (checkpoint + report); all workers call it equally often.
        log: progress lines (rank 0).

    Returns:
        The final :class:`TaptState` (``history``: one dict per epoch with ``loss`` and ``seconds``).

    Raises:
        TrainingError: a worker has no clips, or the loss becomes NaN/inf.
    """
    device = device or torch.device("cpu")
    objective.to(device)
    params = [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = all_reduce_min(epoch_batches(clips, cfg.batch_size, cfg.max_crop_seconds,
                                                   np.random.default_rng(0))[0])
    if steps_per_epoch == 0:
        raise TrainingError(f"a worker got no clips long enough for TAPT ({len(clips)} here, shortest allowed "
                            f"{objective.min_samples} samples): use fewer scaling.num_workers")
    scheduler = tri_stage_scheduler(optimizer, steps_per_epoch * cfg.epochs, cfg.warmup_ratio, cfg.hold_ratio)
    state = TaptState()
    if resume is not None:
        state = resume["state"]
        objective.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
    wrapped = wrap_ddp(objective, device)
    me = rank()
    for epoch in range(state.epoch, cfg.epochs):
        t0 = time.perf_counter()
        rng = seed_epoch(cfg.seed, epoch)  # a resumed run draws the same crops, masks and negatives
        sums: dict[str, float] = {}
        steps = 0
        _, batches = epoch_batches(clips, cfg.batch_size, cfg.max_crop_seconds, rng)
        while steps < steps_per_epoch:
            batch = next(batches, None)
            if all_reduce_min(batch is not None) == 0:  # every replica takes the same steps
                break
            objective.set_step(state.step)
            stats = train_step(objective, optimizer, batch.wavs.to(device), batch.lengths.to(device), rng,
                               grad_clip=cfg.grad_clip, forward=wrapped)
            if not math.isfinite(stats["loss"]):
                raise TrainingError(f"TAPT loss is {stats['loss']} at epoch {epoch + 1} step {steps + 1}: lower "
                                    "tapt.lr")
            scheduler.step()
            state.step += 1
            steps += 1
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
        record = {"epoch": epoch + 1, **{k: v / max(steps, 1) for k, v in sums.items()},
                  "steps": steps, "lr": scheduler.get_last_lr()[0], "seconds": time.perf_counter() - t0}
        if me == 0:
            extra = "".join(f"  {k} {record[k]:.3f}" for k in ("contrastive", "diversity", "accuracy", "l1", "cos")
                            if k in record)
            log(f"  epoch {epoch + 1:>3}/{cfg.epochs}  loss {record['loss']:.4f}{extra}  ({record['seconds']:.1f}s)")
        state.epoch = epoch + 1
        state.history.append(record)
        if on_epoch_end is not None:
            on_epoch_end(state, objective, optimizer, scheduler)
    return state


# ------------------------------------------------------------------------------------------ Ray Train


def tapt_loop_per_worker(config: dict) -> dict:
    """Ray Train worker: TAPT on this worker's shard of ``train``; checkpoints every epoch.

    Args:
        config: ``{"encoder": EncoderConfig dict, "tapt": TaptConfig dict, "clusters": Clusters dict | None,
            "threads": int}``; or, for distillation (:mod:`ser_models.training.distill`), ``"encoder"`` = the
            teacher and ``"distill"``: a DistillConfig dict instead of ``"tapt"`` (the student is trained).

    Returns:
        On rank 0 ``{"history", "objective", "final_loss", "clips", "dropped_short"}``
        (``Result.return_value``); ``{}`` elsewhere.
    """
    import json

    import ray.train
    import ray.train.torch

    from ser_models.config import from_dict
    from ser_models.encoders import save_encoder_weights
    from ser_models.training.batching import collect_clips

    torch.set_num_threads(max(int(config.get("threads", 1)), 1))
    enc_cfg = from_dict(EncoderConfig, config["encoder"])
    me = ray.train.get_context().get_world_rank()
    device = ray.train.torch.get_device()
    if config.get("distill"):  # layer-wise distillation into a student (ser_models.training.distill)
        from ser_models.training.distill import DistillConfig, build_distill_objective

        cfg = from_dict(DistillConfig, config["distill"])
        torch.manual_seed(cfg.seed)  # identical head init on every replica
        objective = build_distill_objective(enc_cfg, cfg)
    else:
        cfg = from_dict(TaptConfig, config["tapt"])
        torch.manual_seed(cfg.seed)
        objective = build_objective(build_encoder(enc_cfg), cfg, config.get("clusters"))
    encoder = objective.encoder
    shard = ray.train.get_dataset_shard("train")
    if config.get("stream_rows"):
        # Too large to hold: read the shard anew every epoch, one decoded window at a time.
        clips = StreamingClips(shard, [], int(config["stream_rows"]), require_labels=False,
                               window=int(config.get("stream_window", 256)), min_samples=objective.min_samples)
        dropped = 0  # counted while streaming
    else:
        clips = collect_clips(shard.iter_batches(batch_size=64, batch_format="numpy"), labels=[],
                              require_labels=False).sorted_by_id()
        clips, dropped = drop_short_clips(clips, objective.min_samples)
    if me == 0:
        print(f"{'distillation' if objective.name == 'distill' else f'TAPT ({objective.name})'} on {len(clips)} "
              "clips per worker"
              + (f"; dropped {dropped} shorter than {objective.min_samples / 16000:.2f}s" if dropped else ""))

    resume = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state, rest = load_state(Path(d) / STATE_FILE, TaptState)
        resume = {"state": state, **rest}
        if me == 0:
            print(f"resuming after epoch {state.epoch}")

    def save(path: Path, state: TaptState, obj, opt, sched) -> None:
        save_state(path, state, model=obj.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict())

    last: dict = {}

    def on_epoch_end(state: TaptState, obj, opt, sched) -> None:
        metrics = dict(state.history[-1])
        if me != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        last["resume"] = (state, obj, opt, sched)
        with tempfile.TemporaryDirectory() as tmp:
            save(Path(tmp) / STATE_FILE, state, obj, opt, sched)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    state = pretrain(objective, clips, cfg, device=device, resume=resume, on_epoch_end=on_epoch_end,
                     log=print if me == 0 else (lambda _: None))
    if me != 0:
        ray.train.report({"final": 1, "epoch": state.epoch}, checkpoint=None)  # every rank reports equally
        return {}
    if isinstance(clips, StreamingClips):
        dropped = clips.dropped // max(clips.epochs_read, 1)  # per epoch (each epoch reads the shard again)
    result = {"history": state.history, "objective": objective.name, "clips": len(clips), "dropped_short": dropped,
              "final_loss": state.history[-1]["loss"] if state.history else None}
    with tempfile.TemporaryDirectory() as tmp:
        save_encoder_weights(encoder.hf_model, str(Path(tmp) / WEIGHTS_FILE))
        (Path(tmp) / RESULT_FILE).write_text(json.dumps(result, default=float))
        if "resume" in last:  # keep the final checkpoint resumable too
            save(Path(tmp) / STATE_FILE, *last["resume"])
        elif resume is not None:
            save_state(Path(tmp) / STATE_FILE, resume["state"], **rest)  # nothing ran: keep what was loaded
        ray.train.report({"final": 1, "epoch": state.epoch}, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    return result


@dataclass
class TaptResult:
    """What a finished TAPT run left behind; ``checkpoint`` is what ``EncoderConfig.checkpoint`` takes."""

    output_dir: Path
    checkpoint: Path
    metrics: dict
    seconds: float
    reused: bool = False

    def encoder_config(self, base: EncoderConfig) -> EncoderConfig:
        """``base`` (the source encoder config) pointed at the adapted weights."""
        return EncoderConfig(**{**vars(base), "checkpoint": str(self.checkpoint)})


def _driver_clips(dataset, max_clips: int, seed: int) -> ClipSet:
    from ser_models.training.batching import collect_clips

    # Block order randomised (cheap, no audio shuffle) so the k-means sample is not just the first files.
    sample = dataset.randomize_block_order(seed=seed).limit(max_clips)
    return collect_clips(sample.iter_batches(batch_size=64, batch_format="numpy"), labels=[],
                         require_labels=False).sorted_by_id()


def plot_loss_curve(history: list[dict], path: Path, title: str) -> None:
    """Loss per epoch as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([h["epoch"] for h in history], [h["loss"] for h in history], marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("TAPT loss (per masked frame)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def run_tapt(cfg: TaptJobConfig, dataset=None, *, run_name: str = "tapt", train_rows: int | None = None,
             verbose: bool = True) -> TaptResult:
    """Run TAPT with Ray Train, or reuse the finished run in ``cfg.output_dir``.

    Args:
        cfg: the job config (pool, encoder, TAPT settings, scaling, output folder).
        dataset: a Ray Dataset of pool rows to use instead of ``Pool.open(cfg.pool_dir).dataset("train")``
            (only ``utt_id, audio, audio_format, num_samples`` are read).
        run_name: Ray Train run name under ``output_dir/ray_train``.
        train_rows: clips in ``dataset`` when known (None = counted); above ``scaling.stream_above_clips``
            per worker, workers stream their shard every epoch instead of holding it.

    Returns:
        A :class:`TaptResult`.

    Raises:
        TrainingError: Ray Train gives up after ``scaling.max_failures`` restarts, or no checkpoint came back.
        ConfigError: the objective does not fit the encoder.
    """
    from ser_models.config import to_dict
    from ser_models.io import read_json, write_json_atomic
    from ser_models.training.trainer import run_torch_trainer

    say = print if verbose else (lambda *_: None)
    out = storage_path(cfg.output_dir)
    weights = out / ENCODER_DIR / WEIGHTS_FILE
    metrics_path = out / METRICS_FILE
    if exists(metrics_path) and exists(weights):
        say(f"TAPT already finished in {out}: reusing {weights}")
        return TaptResult(out, weights, read_json(metrics_path), 0.0, reused=True)
    if dataset is None:
        from ser_models.data import Pool

        pool = Pool.open(cfg.pool_dir)
        dataset = pool.dataset(cfg.split, columns=TAPT_COLUMNS)
        train_rows = len(pool.metadata(columns=["utt_id"], split=cfg.split))
    dataset = dataset.select_columns(TAPT_COLUMNS)
    dataset.context.enable_progress_bars = False  # bars would interleave with the epoch lines
    t0 = time.perf_counter()
    encoder = build_encoder(cfg.encoder)
    objective = cfg.tapt.resolve_objective(encoder.family)
    if objective == "adapter":
        raise ConfigError("tapt.objective=adapter (auto for Whisper) pre-trains the WAP adapter, not the encoder: "
                          "use jobs.adapter_pretrain, or jobs.after / jobs.finetune with model.wap.enabled=true")
    # Concrete k-means targets from here on: workers, tapt_info.json and a resumed run all see the same ones.
    cfg = dataclasses.replace(cfg, tapt=resolve_targets(cfg.tapt, encoder))
    clusters = None
    if objective == "masked_prediction":
        path = out / CLUSTERS_FILE
        if exists(path):  # a resumed run must keep the targets its checkpoints were trained on
            clusters = Clusters.load(path)
            say(f"reusing k-means targets {path}")
        else:
            clips = _driver_clips(dataset, cfg.tapt.kmeans_max_clips, cfg.tapt.seed)
            clusters = fit_clusters(encoder, clips, cfg.tapt, batch_size=cfg.tapt.batch_size)
            clusters.save(path)
            write_json_atomic(path[:-len(".npz")] + ".json" if path.endswith(".npz") else path + ".json", {"features": clusters.features, "layer": clusters.layer,
                                                          "num_clusters": cfg.tapt.num_clusters, **clusters.stats})
            say(f"k-means: K={cfg.tapt.num_clusters} on {clusters.stats['frames']} {clusters.features} frames of "
                f"{clusters.stats['clips']} clips ({clusters.stats['seconds']:.1f}s) -> {path}")
    del encoder
    loop_config = {"encoder": to_dict(cfg.encoder), "tapt": to_dict(cfg.tapt),
                   "clusters": None if clusters is None else clusters.to_dict(),
                   "threads": cfg.scaling.cpus_per_worker}
    result, _, staging = run_torch_trainer(tapt_loop_per_worker, loop_config, cfg.scaling,
                                           {"train": dataset}, out, run_name,
                                           train_rows=dataset.count() if train_rows is None else train_rows)
    seconds = time.perf_counter() - t0  # k-means targets included
    try:
        if not (staging / WEIGHTS_FILE).exists():
            raise TrainingError(f"TAPT run {run_name!r}: the last checkpoint has no {WEIGHTS_FILE}")
        metrics = result.return_value or read_json(staging / RESULT_FILE)
        metrics["seconds"] = seconds
        write_bytes_atomic(weights, (staging / WEIGHTS_FILE).read_bytes())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_json_atomic(weights.parent / INFO_FILE, {
        "source_encoder": to_dict(cfg.encoder),
        "encoder": to_dict(TaptResult(out, weights, metrics, seconds).encoder_config(cfg.encoder)),
        "objective": metrics["objective"], "epochs": len(metrics["history"]), "final_loss": metrics["final_loss"],
        "tapt": to_dict(cfg.tapt), "clusters": None if clusters is None else str(out / CLUSTERS_FILE)})
    plot_loss_curve(metrics["history"], out / PLOT_FILE, f"TAPT {metrics['objective']} on {cfg.encoder.source}")
    write_json_atomic(metrics_path, metrics)  # written last: its presence marks the run finished
    return TaptResult(out, weights, metrics, seconds)

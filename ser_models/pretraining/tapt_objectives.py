"""The TAPT objectives over an encoder: wav2vec 2.0's contrastive loss and HuBERT's masked prediction.

A step is ``inputs = objective.prepare(wavs, lengths, rng)`` (masks, negatives or targets: sampled outside
``forward`` so that DDP wraps only differentiable work) then ``objective(**inputs)`` (the protocol of
:mod:`ser_models.pretraining.pretraining`).
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import torch
from torch import nn
from transformers import Wav2Vec2ForPreTraining

from ser_models.config import from_dict
from ser_models.encoders import Encoder, EncoderConfig, build_encoder
from ser_models.encoders.loading import read_tensors
from ser_models.exceptions import ConfigError, TrainingError
from ser_models.heads.pooling import frame_mask
from ser_models.pretraining.kmeans_targets import Clusters, _check_layer, cluster_frames, resolve_targets
from ser_models.pretraining.masking import sample_negatives, sample_time_mask
from ser_models.pretraining.tapt_config import TaptConfig

#: HuBERT's temperature of the cosine similarity between projected frames and cluster embeddings.
COSINE_TEMPERATURE = 0.1




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
        # A group-norm front end (wav2vec2-base) runs clip by clip, as in scoring: a clip's frames, targets and
        # loss do not depend on the padding its batch adds.
        with self.encoder._padding_aware_front_end(input_values, attention_mask):
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
        # the heads from the same files, read into memory: a later change on disk cannot reach a running TAPT
        tensors = read_tensors(encoder.cfg)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model_cls.from_pretrained(None, config=config, state_dict=tensors)
    except Exception as exc:  # a base-model-only folder: no quantizer to reuse
        warnings.warn(f"{encoder.cfg.source}: no pre-training heads found ({type(exc).__name__}); the quantizer "
                      "and projections start random", stacklevel=2)
        return model_cls(config)


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
        return ids.masked_fill(~frame_mask(fl, ids.shape[1]), -100), fl

    def prepare(self, wavs: torch.Tensor, lengths: torch.Tensor, rng: np.random.Generator) -> dict:
        """Masks and cluster-id targets for ``wavs [B, T]``, ``lengths [B]`` (16 kHz samples)."""
        input_values, attention_mask, frame_lengths, num_frames = self._frames(wavs, lengths)
        mask = sample_time_mask(frame_lengths, num_frames, self.mask_prob, self.mask_length, self.min_masks, rng)
        ids, _ = self.targets(wavs, lengths)
        return {"input_values": input_values, "attention_mask": attention_mask,
                "mask_time_indices": mask.to(wavs.device), "targets": ids}

    def forward(self, input_values, attention_mask, mask_time_indices, targets) -> dict:
        # group-norm front ends clip by clip, as in scoring (the targets' teacher features are computed so too)
        with warnings.catch_warnings(), self.encoder._padding_aware_front_end(input_values, attention_mask):
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


def build_from_config(config: dict):
    """The Ray Train worker's builder (``tapt_loop_per_worker``'s ``config["build"]``): ``(objective, TaptConfig)``
    from ``{"encoder": EncoderConfig dict, "tapt": TaptConfig dict, "clusters": Clusters dict | None}``."""

    cfg = from_dict(TaptConfig, config["tapt"])
    torch.manual_seed(cfg.optim.seed)  # identical head init on every replica
    encoder = build_encoder(from_dict(EncoderConfig, config["encoder"]))
    return build_objective(encoder, cfg, config.get("clusters")), cfg

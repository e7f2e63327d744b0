"""Schemas of task-adaptive pre-training (TAPT): the objective's knobs and the ``jobs.tapt`` config.

No torch imports here: the job parses its config (and ``--help``) without loading a model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from ser_models.config import LOCATION, PATH, RESULT, field
from ser_models.encoders.config import EncoderConfig
from ser_models.exceptions import ConfigError
from ser_models.training.config import OPTIM_RENAMED, OptimConfig, ScalingConfig

#: ``tapt.objective`` values; ``auto`` picks by encoder family (see :data:`OBJECTIVE_BY_FAMILY`) and, for a
#: frozen encoder (Whisper always), pre-trains the WAP-Transformer adapter on the pool instead (``adapter``).
OBJECTIVES = ("auto", "contrastive", "masked_prediction", "adapter")
#: What each family was pre-trained with, hence what TAPT continues.
OBJECTIVE_BY_FAMILY = {"wav2vec2": "contrastive", "hubert": "masked_prediction", "wavlm": "masked_prediction"}
CLUSTER_FEATURES = ("auto", "mfcc", "layer")


@dataclass
class AdapterPretrainConfig:
    """Pre-training the WAP-Transformer adapter on the unlabelled pool's frame cache (the encoder stays frozen).

    The student sees frames with masked spans; the teacher (an exponential moving average of the student,
    never trained by gradient) sees them unmasked. Losses on masked frames: reconstruct the standardised
    input (mask prediction), regress the teacher's normalised frame targets (frame self-distillation) and
    predict the k-means cluster of the teacher's target (local attributes); on the clip: cosine to the
    teacher's mean target (utterance self-distillation).
    """

    optim: OptimConfig = field(effect=RESULT, default_factory=lambda: OptimConfig(
        epochs=20, batch_size=16, lr=5e-4, max_crop_seconds=8.0),
        help="the optimiser: passes over the training clips' cached frames, AdamW, schedule, crops, and the seed "
             "of crops, masks, k-means and initialisation")
    mask_prob: float = field(0.5, effect=RESULT, help="fraction of frames that start a masked span (spans overlap: the masked "
                             "share is lower)")
    mask_length: int = field(5, effect=RESULT, help="masked span length in frames (20 ms each)")
    ema_decay: float = field(0.99, effect=RESULT, help="teacher EMA decay at step 0 (teacher = d * teacher + (1 - d) * student)")
    ema_decay_end: float = field(0.999, effect=RESULT, help="teacher EMA decay at the last step (linear in between)")
    target_layers: int = field(0, effect=RESULT, help="teacher blocks averaged (after instance normalisation) into the frame "
                               "targets, counted from the top; 0 = all")
    num_clusters: int = field(32, effect=RESULT, help="k-means K of the local attributes")
    refresh_every: int = field(2, effect=RESULT, help="refit the local-attribute clusters on the teacher every this many epochs")
    kmeans_max_clips: int = field(400, effect=RESULT, help="training clips whose teacher targets k-means is fitted on")
    kmeans_iterations: int = field(20, effect=RESULT, help="k-means iterations")
    mask_weight: float = field(1.0, effect=RESULT, help="weight of the masked-input reconstruction loss (mask prediction)")
    frame_weight: float = field(1.0, effect=RESULT, help="weight of the frame-level self-distillation loss")
    utterance_weight: float = field(1.0, effect=RESULT, help="weight of the utterance-level self-distillation loss")
    cluster_weight: float = field(1.0, effect=RESULT, help="weight of the local-attribute (cluster id) prediction loss")
    collapse_std: float = field(1e-3, effect=RESULT, help="collapse guard: stop with an error when the teacher's raw outputs vary "
                                "less than this across frames (mean std over dimensions) for a whole epoch")

    RENAMED: ClassVar[dict[str, str]] = OPTIM_RENAMED

    def __post_init__(self) -> None:
        for key in ("mask_length", "refresh_every", "kmeans_max_clips", "kmeans_iterations"):
            if getattr(self, key) < 1:
                raise ConfigError(f"tapt.adapter.{key} must be >= 1, got {getattr(self, key)}")
        if self.num_clusters < 2:
            raise ConfigError(f"tapt.adapter.num_clusters must be >= 2, got {self.num_clusters}")
        if not 0 < self.mask_prob <= 1:
            raise ConfigError(f"tapt.adapter.mask_prob must be in (0, 1], got {self.mask_prob}")
        if not 0 <= self.ema_decay <= self.ema_decay_end <= 1:
            raise ConfigError(f"tapt.adapter.ema_decay ({self.ema_decay}) and ema_decay_end ({self.ema_decay_end}) "
                              "must satisfy 0 <= ema_decay <= ema_decay_end <= 1")
        if self.target_layers < 0:
            raise ConfigError(f"tapt.adapter.target_layers must be >= 0, got {self.target_layers}")
        weights = (self.mask_weight, self.frame_weight, self.utterance_weight, self.cluster_weight)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ConfigError("tapt.adapter.*_weight must be >= 0 and not all 0")
        if self.collapse_std < 0:
            raise ConfigError(f"tapt.adapter.collapse_std must be >= 0, got {self.collapse_std}")


@dataclass
class TaptConfig:
    """How to continue self-supervised pre-training of the encoder on the pool's training audio.

    ``mask_time_prob``, ``mask_time_length`` and ``num_negatives`` default to the encoder's HF config
    (``null``). The published models were *pre-trained* with ``mask_time_prob`` 0.65 / length 10 while their
    configs carry the fine-tuning value 0.05; set 0.65 to reproduce pre-training-strength masking.
    """

    objective: str = field("auto", effect=RESULT, help="auto (contrastive for wav2vec2, masked_prediction for hubert/wavlm) "
                           "| contrastive | masked_prediction")
    optim: OptimConfig = field(effect=RESULT, default_factory=lambda: OptimConfig(epochs=5, lr=5e-5, max_crop_seconds=8.0),
                               help="the optimiser: passes over the training clips, AdamW, schedule, crops, and the "
                                    "seed of crops, masks, negatives, k-means and head init")
    mask_time_prob: float | None = field(None, effect=RESULT, help="fraction of frames that start a masked span "
                                         "(null = the encoder config's mask_time_prob)")
    mask_time_length: int | None = field(None, effect=RESULT, help="masked span length in frames (null = from the encoder config)")
    num_negatives: int | None = field(None, effect=RESULT, help="contrastive distractors per masked frame (null = from config)")
    diversity_loss_weight: float = field(0.1, effect=RESULT, help="weight of the codebook diversity loss (contrastive only)")
    gumbel_temperature_start: float = field(2.0, effect=RESULT, help="Gumbel-softmax temperature of the quantizer at step 0")
    gumbel_temperature_end: float = field(0.5, effect=RESULT, help="floor of the quantizer temperature")
    gumbel_temperature_decay: float = field(0.999995, effect=RESULT, help="per-step multiplicative temperature decay")
    num_clusters: int = field(100, effect=RESULT, help="k-means K of masked-prediction targets (HuBERT used 100 on MFCC)")
    cluster_features: str = field("auto", effect=RESULT, help="k-means input: mfcc (HuBERT's first iteration) | layer (an encoder "
                                  "layer) | auto = layer for pretrained weights, mfcc for a randomly initialised "
                                  "encoder (MFCC targets would pull a pretrained model back to iteration one)")
    cluster_layer: int | None = field(None, effect=RESULT, help="hidden-state index clustered when cluster_features=layer "
                                      "(0 = CNN projection, i = transformer layer i); null = the middle layer "
                                      "(6 of a 12-layer base model, as HuBERT's second iteration)")
    kmeans_max_clips: int = field(1000, effect=RESULT, help="training clips whose frames k-means is fitted on")
    kmeans_iterations: int = field(20, effect=RESULT, help="k-means iterations")
    proj_dim: int = field(256, effect=RESULT, help="masked prediction: projection width of the cluster-embedding head")
    freeze_feature_encoder: bool = field(True, effect=RESULT, help="keep the CNN feature encoder fixed (as in fine-tuning)")
    adapter: AdapterPretrainConfig = field(default_factory=AdapterPretrainConfig,
                                           help="objective=adapter: pre-training the WAP-Transformer adapter "
                                                "(model.wap) on the pool's frames")

    RENAMED: ClassVar[dict[str, str]] = OPTIM_RENAMED

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"tapt.objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.cluster_features not in CLUSTER_FEATURES:
            raise ConfigError(f"tapt.cluster_features must be one of {CLUSTER_FEATURES}, got "
                              f"{self.cluster_features!r}")
        for key in ("kmeans_max_clips", "kmeans_iterations", "proj_dim"):
            if getattr(self, key) < 1:
                raise ConfigError(f"tapt.{key} must be >= 1, got {getattr(self, key)}")
        if self.num_clusters < 2:
            raise ConfigError(f"tapt.num_clusters must be >= 2, got {self.num_clusters}")
        if self.diversity_loss_weight < 0:
            raise ConfigError(f"tapt.diversity_loss_weight must be >= 0, got {self.diversity_loss_weight}")
        if self.mask_time_prob is not None and not 0 < self.mask_time_prob <= 1:
            raise ConfigError(f"tapt.mask_time_prob must be in (0, 1] or null, got {self.mask_time_prob}")
        if self.mask_time_length is not None and self.mask_time_length < 1:
            raise ConfigError(f"tapt.mask_time_length must be >= 1 or null, got {self.mask_time_length}")
        if self.num_negatives is not None and self.num_negatives < 1:
            raise ConfigError(f"tapt.num_negatives must be >= 1 or null, got {self.num_negatives}")
        if not 0 < self.gumbel_temperature_end <= self.gumbel_temperature_start:
            raise ConfigError("tapt.gumbel_temperature_end must be > 0 and <= tapt.gumbel_temperature_start")
        if not 0 < self.gumbel_temperature_decay <= 1:
            raise ConfigError(f"tapt.gumbel_temperature_decay must be in (0, 1], got {self.gumbel_temperature_decay}")
        if self.cluster_layer is not None and self.cluster_layer < 0:
            raise ConfigError(f"tapt.cluster_layer must be >= 0 or null, got {self.cluster_layer}")

    def resolve_targets(self, pretrained: bool, num_hidden_states: int) -> TaptConfig:
        """A copy with ``cluster_features`` and ``cluster_layer`` made concrete for one encoder.

        Args:
            pretrained: the encoder's weights were learnt (a checkpoint or hub/local model), not random.
            num_hidden_states: the encoder's hidden-state count (CNN projection + transformer layers).
        """
        features = self.cluster_features
        if features == "auto":
            features = "layer" if pretrained else "mfcc"
        layer = self.cluster_layer if self.cluster_layer is not None else num_hidden_states // 2
        return dataclasses.replace(self, cluster_features=features, cluster_layer=layer)

    def resolve_objective(self, family: str, frozen: bool = False) -> str:
        """The objective to run for an encoder ``family`` (``auto`` resolved).

        Args:
            family: the encoder family.
            frozen: the model keeps the encoder frozen (``model.adapter.kind=frozen``) under a WAP adapter
                (``model.wap.enabled``): ``auto`` then pre-trains that adapter on the pool (``adapter``), as it
                always does for Whisper.

        Raises:
            ConfigError: ``masked_prediction`` is fine for the waveform families; ``contrastive`` needs
                wav2vec2's quantizer, which HuBERT and WavLM checkpoints do not have; Whisper has no TAPT
                objective (its encoder was trained through a text decoder, and masked prediction on log-mel
                frames is not built: see docs/encoders.md, "Whisper encoders").
        """
        if self.objective == "adapter" or (self.objective == "auto" and (frozen or family == "whisper")):
            return "adapter"
        if family == "whisper":
            raise ConfigError(f"tapt.objective={self.objective} is not available for Whisper encoders (they were "
                              "pre-trained through a text decoder, not with a self-supervised objective TAPT could "
                              "continue): use tapt.objective=adapter (or auto), which pre-trains the WAP adapter "
                              "on the pool's frames with the encoder frozen")
        if self.objective == "auto":
            if family not in OBJECTIVE_BY_FAMILY:
                raise ConfigError(f"tapt.objective=auto: unknown encoder family {family!r}")
            return OBJECTIVE_BY_FAMILY[family]
        if self.objective == "contrastive" and family != "wav2vec2":
            raise ConfigError(f"tapt.objective=contrastive needs a wav2vec2 encoder (it has the quantizer); "
                              f"this encoder is {family}: use masked_prediction or auto")
        return self.objective


@dataclass
class TaptJobConfig:
    """Config of ``python -m jobs.tapt``: which pool, which encoder, how to pre-train, where to write."""

    pool_dir: str = field("???", effect=LOCATION, path=PATH, help="prepared pool folder (written by jobs.prepare_pool); required")
    output_dir: str = field("???", effect=LOCATION,
                            path=PATH, help="where encoder/encoder.safetensors, tapt_metrics.json and the loss "
                                 "curve go; rerunning with the same folder resumes or reuses the run")
    split: str = field("train", effect=RESULT, help="pool split pre-trained on; only 'train' is allowed")
    encoder: EncoderConfig = field(default_factory=EncoderConfig, help="the encoder to adapt")
    tapt: TaptConfig = field(default_factory=TaptConfig, help="objective and optimisation")
    scaling: ScalingConfig = field(default_factory=ScalingConfig, help="Ray Train workers and retries")

    def __post_init__(self) -> None:
        for key in ("pool_dir", "output_dir"):
            if not getattr(self, key) or getattr(self, key) == "???":
                raise ConfigError(f"{key} is required")
        if self.split != "train":
            raise ConfigError(f"split must be 'train', got {self.split!r}: TAPT must never see dev or test "
                              "audio, or the encoder adapts to the very clips it is later evaluated on and "
                              "the reported accuracy is optimistic")

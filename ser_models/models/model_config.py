"""``ModelConfig``: what an ``EmotionModel`` is made of (``model`` in every job config), checked when parsed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ser_models.adapters import AdapterConfig
from ser_models.adapters.config import WapConfig
from ser_models.config import PATH, RESULT, field
from ser_models.data.inputs import ModelInputs, ModelTargets
from ser_models.encoders import EncoderConfig
from ser_models.encoders.functionals import AUTO_FUNCTIONALS, FUNCTIONAL_SETS, reads_functionals
from ser_models.encoders.text import TextConfig
from ser_models.exceptions import ConfigError
from ser_models.heads import POOLINGS, check_dimensions

#: ``model.feature_norm`` choices.
FEATURE_NORMS = ("none", "pool", "speaker", "auto")
#: What ``model.feature_norm=auto`` chooses between, by cross-validation on the labelled clips.
AUTO_NORMS = ("pool", "speaker")
#: ``model.labels`` when a config does not set it; a job that opens a pool then takes the pool's (resolve_labels).
DEFAULT_LABELS = ("neutral", "happy", "angry", "sad")


@dataclass
class ModelConfig:
    """The whole emotion model (``model`` in every job config)."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig, help="speech encoder")
    adapter: AdapterConfig = field(default_factory=AdapterConfig, help="how the encoder is adapted")
    featurizer_layer: int | None = field(None, effect=RESULT, help="hidden state to use (0 = CNN projection, negative from the "
                                         "end); null = learned softmax-weighted sum of all layers")
    pooling: str = field("mean", effect=RESULT, help="mean | attentive_stats (only mean allows the frozen-encoder cache)")
    feature_norm: str = field("none", effect=RESULT, help="none | pool: standardise every dimension of every hidden state with "
                              "the unlabelled pool's mean and std (no labels used; the AL loop computes them from "
                              "its feature cache and sets model.feature_stats) | speaker: with each clip's "
                              "speaker's mean and std, shrunk toward the pool's (model.speaker_stats) | auto: pool or "
                              "speaker, whichever scores better by k-fold CV on the labelled clips (train.solver=lbfgs; "
                              "chosen with train.l2_c=auto, at every fit)")
    feature_norm_choice: str | None = field(None, effect=RESULT, help="what model.feature_norm=auto chose (pool | speaker); "
                                            "written by the fit into the checkpoint, never set by hand")
    feature_stats: str | None = field(None, effect=RESULT, path=PATH, help="safetensors file of the pool statistics (mean, std [L, D]) that "
                                      "model.feature_norm=pool uses; written and set by the AL loop")
    speaker_stats: str | None = field(None, effect=RESULT, path=PATH, help="safetensors file of per-speaker statistics "
                                      "(ser_models.encoders.speaker_norm) that model.feature_norm=speaker uses; "
                                      "written and set by the AL loop and jobs.predict")
    speaker_shrinkage: float = field(10.0, effect=RESULT, help="k of the shrinkage rule of model.feature_norm=speaker: a "
                                     "speaker with n clips weighs their own statistics n / (n + k), the pool's "
                                     "the rest")
    functionals: str = field("none", effect=RESULT, help="none | egemaps: the 88 eGeMAPS v02 prosodic functionals of openSMILE "
                             "(the optional [opensmile] extra, audEERING's research licence: no commercial use "
                             "without theirs) beside the encoder's hidden state in front of the head, standardised "
                             "on their own (needs the frozen-encoder feature cache, which then holds them) | auto: "
                             "with or without them, whichever scores better by k-fold CV on the labelled clips "
                             "(train.solver=lbfgs; chosen with model.feature_norm and train.l2_c, at every fit)")
    functionals_choice: str | None = field(None, effect=RESULT, help="what model.functionals=auto chose (none | egemaps); "
                                           "written by the fit into the checkpoint, never set by hand")
    functionals_stats: str | None = field(None, effect=RESULT, path=PATH, help="safetensors file of the pool statistics of the "
                                          "functionals (mean, std [1, 88]); written and set by the AL loop and "
                                          "jobs.finetune")
    functionals_speaker_stats: str | None = field(None, effect=RESULT, path=PATH, help="per-speaker statistics of the "
                                                  "functionals (model.feature_norm=speaker | auto); written and "
                                                  "set by the AL loop, jobs.finetune and jobs.predict")
    head_hidden: int = field(128, effect=RESULT, help="width of the head's penultimate layer (the embedding E); 0 = a linear "
                             "head (logits straight from the pooled vector, which is then the embedding)")
    head_dropout: float = field(0.1, effect=RESULT, help="head dropout; also the rate used for MC-dropout scoring")
    head_input_norm: bool = field(True, effect=RESULT, help="LayerNorm on the pooled vector before the head (pretrained "
                                  "encoders' outlier dimensions otherwise swamp a small head)")
    labels: list[str] = field(effect=RESULT, default_factory=lambda: list(DEFAULT_LABELS),
                              help="class names, in logit order ([] = no categorical output: dimensions alone). "
                                   "Unset (left at the default [neutral, happy, angry, sad]), a job takes the "
                                   "labels its pool was prepared with (prepare_pool labels=); set, it must name "
                                   "the same classes as the pool's")
    dimensions: list[str] = field(effect=RESULT, default_factory=list,
                                  help="dimensional outputs, a subset of [arousal, valence, dominance] "
                                       "(regression next to, or instead of, the classes)")
    dimension_range: list[float] = field(effect=RESULT, default_factory=lambda: [1.0, 5.0],
                                         help="[low, high] of the dimensional rating scale: predictions stay "
                                              "inside it, labels outside it are refused")
    text: TextConfig = field(default_factory=TextConfig, help="text branch over the pool's transcripts, fused "
                             "with the pooled audio in front of the head (source '' = audio only)")
    wap: WapConfig = field(default_factory=WapConfig, help="WAP-Transformer adapter over the encoder's frames, "
                           "pre-trainable on the unlabelled pool (docs/methods.md)")

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ConfigError(f"model.pooling must be one of {list(POOLINGS)}, got {self.pooling!r}")
        if isinstance(self.head_hidden, bool) or not isinstance(self.head_hidden, int) or self.head_hidden < 0:
            raise ConfigError(f"model.head_hidden must be >= 0 (0 = linear head), got {self.head_hidden!r}")
        if self.feature_norm not in FEATURE_NORMS:
            raise ConfigError(f"model.feature_norm must be one of {list(FEATURE_NORMS)}, got {self.feature_norm!r}")
        if self.feature_stats is not None and self.feature_norm not in ("pool", "auto"):
            raise ConfigError("model.feature_stats is set but model.feature_norm is not 'pool' (or 'auto')")
        if self.feature_norm_choice not in (None, *AUTO_NORMS) or (self.feature_norm_choice is not None
                                                                   and self.feature_norm != "auto"):
            raise ConfigError(f"model.feature_norm_choice is what model.feature_norm=auto chose ({list(AUTO_NORMS)}); "
                              f"got {self.feature_norm_choice!r} with model.feature_norm={self.feature_norm!r}")
        if self.feature_norm in ("speaker", "auto") and (self.pooling != "mean" or self.wap.enabled):
            raise ConfigError(f"model.feature_norm={self.feature_norm} standardises per-layer utterance means: it "
                              "needs model.pooling=mean and no model.wap")
        if self.speaker_stats is not None and self.feature_norm not in ("speaker", "auto"):
            raise ConfigError("model.speaker_stats is set but model.feature_norm is not 'speaker' (or 'auto')")
        self._check_functionals()
        if isinstance(self.speaker_shrinkage, bool) or not isinstance(self.speaker_shrinkage, (int, float)) \
                or self.speaker_shrinkage < 0:
            raise ConfigError(f"model.speaker_shrinkage must be a number of clips >= 0, got {self.speaker_shrinkage!r}")
        if not isinstance(self.head_input_norm, bool):
            raise ConfigError(f"model.head_input_norm must be true or false, got {self.head_input_norm!r}")
        if not 0.0 <= float(self.head_dropout) < 1.0:
            raise ConfigError(f"model.head_dropout must be in [0, 1), got {self.head_dropout!r}")
        if self.featurizer_layer is not None and (isinstance(self.featurizer_layer, bool)
                                                  or not isinstance(self.featurizer_layer, int)):
            raise ConfigError(f"model.featurizer_layer must be an int or null, got {self.featurizer_layer!r}")
        self.dimensions = check_dimensions(self.dimensions)
        labels = list(self.labels)
        if not labels and not self.dimensions:
            raise ConfigError("model.labels is empty and model.dimensions too: the model would predict nothing")
        if labels and (len(labels) < 2 or len(set(labels)) != len(labels)
                       or not all(isinstance(x, str) and x for x in labels)):
            raise ConfigError(f"model.labels must be >= 2 distinct non-empty names (or [] with model.dimensions), "
                              f"got {labels!r}")
        rng = list(self.dimension_range)
        if len(rng) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rng) \
                or not rng[1] > rng[0]:
            raise ConfigError(f"model.dimension_range must be [low, high] with high > low, got {rng!r}")
        self.dimension_range = [float(v) for v in rng]
        if self.wap.enabled:
            if self.feature_norm != "none":
                raise ConfigError("model.wap.enabled standardises its input itself (pool statistics fitted at "
                                  "adapter pre-training, stored in its checkpoint): set model.feature_norm=none")
            if self.featurizer_layer is not None:
                raise ConfigError("model.wap.enabled learns its own weighting of the hidden states: set "
                                  "model.featurizer_layer=null")
            ckpt = self.wap.checkpoint
            if ckpt and "://" not in ckpt and Path(ckpt).exists():  # Ray workers run elsewhere
                self.wap.checkpoint = str(Path(ckpt).resolve())


    @property
    def targets(self) -> ModelTargets:
        """What the model predicts, as the data layer checks a pool against it (``Pool.check_targets``)."""
        return ModelTargets(list(self.labels), list(self.dimensions), tuple(self.dimension_range))

    def inputs(self, shape: Sequence[int] | None = None) -> ModelInputs:
        """What a model of this config reads: audio (``shape`` None) or the feature cache's features of
        ``shape`` (``(L, D)`` pooled, ``(-1, L, D)`` frames), with the side inputs the config asks for
        (transcripts with a text branch, speakers with per-speaker standardisation, the cache's functionals).
        The one place they are derived; :func:`~ser_models.scoring.feature_cache.model_inputs` passes a cache's
        shape."""
        source = ModelInputs.of(shape)
        return replace(source, transcripts=source.is_audio and self.text.enabled, speakers=reads_speakers(self),
                       functionals=source.is_cached and reads_functionals(self))

    def _check_functionals(self) -> None:
        if self.functionals not in FUNCTIONAL_SETS:
            raise ConfigError(f"model.functionals must be one of {list(FUNCTIONAL_SETS)}, got {self.functionals!r}")
        if self.functionals_choice not in (None, *AUTO_FUNCTIONALS) or (self.functionals_choice is not None
                                                                        and self.functionals != "auto"):
            raise ConfigError(f"model.functionals_choice is what model.functionals=auto chose "
                              f"({list(AUTO_FUNCTIONALS)}); got {self.functionals_choice!r} with "
                              f"model.functionals={self.functionals!r}")
        if self.functionals == "none" and (self.functionals_stats or self.functionals_speaker_stats):
            raise ConfigError("model.functionals_stats / functionals_speaker_stats are set but model.functionals=none")
        if self.functionals != "none" and (self.adapter.kind != "frozen" or self.adapter.add or self.pooling != "mean"
                                           or self.wap.enabled):
            raise ConfigError(f"model.functionals={self.functionals} reads the eGeMAPS functionals from the "
                              "frozen-encoder feature cache: it needs model.adapter.kind=frozen (no adapter.add), "
                              "model.pooling=mean and no model.wap")


def reads_speakers(cfg: ModelConfig) -> bool:
    """Whether a model of ``cfg`` needs each clip's speaker (``model.feature_norm=speaker`` or ``auto``: every fit
    of ``auto`` compares both standardisations)."""
    return cfg.feature_norm in ("speaker", "auto")


def resolve_labels(cfg: ModelConfig, pool) -> ModelConfig:
    """``cfg`` with the label set of ``pool``: labels are declared once, when the pool is prepared.

    The pool's labels are those ``prepare_pool`` validated against (``labels`` in its ``summary.json`` config).
    Rules, in order: a pool prepared with ``labels: []`` (any label accepted) names no set, so ``cfg`` is
    returned as it is (``Pool.check_targets`` then checks its clips against ``model.labels``); ``model.labels:
    []`` (dimensions alone) stays; ``model.labels`` left at :data:`DEFAULT_LABELS` (unset) becomes the pool's
    list; ``model.labels`` naming the pool's classes (in any order: the order is the model's logit order)
    stays; any other ``model.labels`` is a conflict.

    Args:
        cfg: the job's model config.
        pool: an open :class:`~ser_models.data.Pool` (reads ``pool.summary`` and ``pool.root``).

    Returns:
        ``cfg`` itself, or a copy with ``labels`` replaced.

    Raises:
        ConfigError: ``model.labels`` and the pool's labels name different classes (both lists named).
    """
    pool_labels = list((pool.summary.get("config") or {}).get("labels") or [])
    labels = list(cfg.labels)
    if not pool_labels or not labels:
        return cfg
    # Unset first: a pool declared with the default four classes in another order keeps its declared order.
    if labels == list(DEFAULT_LABELS):  # not set: the pool's list, in the pool's order
        return cfg if labels == pool_labels else replace(cfg, labels=pool_labels)
    if set(labels) == set(pool_labels):
        return cfg
    raise ConfigError(f"model.labels={labels} but pool {pool.root} was prepared with labels={pool_labels}: "
                      "leave model.labels unset to use the pool's, or set it to the same classes")

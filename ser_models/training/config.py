"""Training and Ray scaling configs (no torch/peft imports: Ray workers and drivers import this cheaply)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ser_models.config import RESULT, SPEED, field
from ser_models.exceptions import ConfigError
from ser_models.precision import check_flag, check_precision

#: ``train.freeze`` parts -> the parameter-name prefix of each in an ``EmotionModel``.
FREEZABLE_PARTS = {"adapter": "encoder.", "featurizer": "featurizer.", "pooling": "pooling.", "head": "head."}
#: ``train.select_metric`` choices.
SELECT_METRICS = ("auto", "ua", "ccc", "ua_plus_ccc")
#: ``train.solver`` choices.
SOLVERS = ("adamw", "lbfgs")


@dataclass
class OptimConfig:
    """The optimiser of a training loop (``optim`` in ``train``, ``tapt``, ``tapt.adapter`` and ``distill``): AdamW
    with a tri-stage schedule (warm up, hold, decay) over ``epochs`` passes of randomly cropped clips.

    Each owner keeps its own defaults (TAPT's rate is ten times lower than fine-tuning's, for one), so the class
    defaults here are fine-tuning's; the other owners build theirs through ``default_factory``.
    """

    epochs: int = field(10, effect=RESULT, help="passes over the training clips (at most: early stopping may end "
                        "fine-tuning sooner)")
    batch_size: int = field(8, effect=RESULT, help="clips per batch per worker")
    lr: float = field(5e-4, effect=RESULT, help="peak AdamW learning rate (in train: that of the encoder-side "
                      "trainable weights, adapters or all under full; train.lr_head is the head's)")
    weight_decay: float = field(0.01, effect=RESULT, help="AdamW weight decay")
    warmup_ratio: float = field(0.1, effect=RESULT, help="tri-stage schedule: fraction of steps warming up")
    hold_ratio: float = field(0.4, effect=RESULT, help="tri-stage schedule: fraction of steps at the peak rate")
    grad_clip: float = field(1.0, effect=RESULT, help="max gradient norm (0 = off)")
    seed: int = field(0, effect=RESULT, help="seed of shuffling, crops, masks, dropout and initialisation")
    max_crop_seconds: float = field(4.0, effect=RESULT, help="training clips longer than this are randomly cropped "
                                    "each epoch (s)")

    def __post_init__(self):
        # the owner (train, tapt, ...) is not known here: messages name the key inside the optim node
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"optim.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("lr", "max_crop_seconds"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"optim.{key} must be > 0, got {getattr(self, key)}")
        for key in ("weight_decay", "grad_clip"):
            if not getattr(self, key) >= 0:
                raise ConfigError(f"optim.{key} must be >= 0, got {getattr(self, key)}")
        if min(self.warmup_ratio, self.hold_ratio) < 0 or self.warmup_ratio + self.hold_ratio > 1:
            raise ConfigError(f"optim.warmup_ratio and optim.hold_ratio must be >= 0 and sum to <= 1, got "
                              f"{self.warmup_ratio} and {self.hold_ratio}")


#: ``RENAMED`` of a config whose optimiser keys moved into its ``optim`` node (an old key is refused, naming
#: the new one).
OPTIM_RENAMED = {key: f"optim.{key}" for key in ("epochs", "batch_size", "lr", "weight_decay", "warmup_ratio",
                                                 "hold_ratio", "grad_clip", "seed", "max_crop_seconds")}


@dataclass
class TrainConfig:
    """How to fine-tune adapters + head on labelled clips."""

    optim: OptimConfig = field(effect=RESULT, default_factory=OptimConfig,
                               help="the optimiser: epochs, batch size, AdamW, schedule, crops, seed; optim.lr is "
                                    "the rate of the encoder-side trainable weights (adapters, or all under full)")
    lr_head: float = field(1e-3, effect=RESULT, help="learning rate of the featurizer, pooling and head (optim.lr is "
                           "the encoder side's: they train at different rates)")
    max_eval_seconds: float = field(20.0, effect=RESULT, help="evaluation clips longer than this are centre-cropped (s)")
    early_stopping_patience: int = field(3, effect=RESULT, help="stop after this many epochs without a better dev score "
                                         "(train.select_metric; 0 = off)")
    class_weighted: bool = field(True, effect=RESULT, help="weight cross-entropy by inverse class frequency of the labelled set")
    dimensional_loss: str = field("ccc", effect=RESULT, help="loss of the arousal/valence/dominance outputs: ccc (1 - CCC per "
                                  "dimension, averaged) | mse")
    dimensional_weight: float = field(1.0, effect=RESULT, help="weight of the dimensional loss next to the categorical one "
                                      "(multi-task; cross-entropy weighs 1)")
    freeze: list[str] = field(effect=RESULT, default_factory=list,
                              help=f"parts kept as they are (left out of the optimizer, still saved in checkpoints): "
                                   f"any of {list(FREEZABLE_PARTS)}; for stage 2 of jobs.adapt and other warm starts")
    select_metric: str = field("auto", effect=RESULT, help="dev metric that picks the best epoch and drives early stopping: ua | "
                               "ccc (mean over model.dimensions) | ua_plus_ccc | auto (ua with classes, else ccc)")
    eval_batch_size: int = field(16, effect=SPEED, help="clips per batch when evaluating")
    solver: str = field("adamw", effect=RESULT, help="adamw: minibatch epochs with early stopping on dev | lbfgs: the whole "
                        "labelled set in one batch, solved to convergence with an L2 penalty (heads over cached "
                        "frozen features only; no epochs, no learning rate, no dev split needed)")
    l2_c: float | str = field(1.0, effect=RESULT, help="lbfgs: inverse L2 strength, as scikit-learn's C: the penalty is "
                              "||W||^2 / (2 C n) for n labelled clips, so it grows as the labelled set shrinks; "
                              "auto = chosen from l2_c_grid by stratified k-fold cross-validation on the labelled "
                              "clips alone (UA; no dev or test clip is read)")
    l2_c_grid: list[float] = field(effect=RESULT, default_factory=lambda: [0.01, 0.03, 0.1, 0.3, 1.0],
                                   help="lbfgs with l2_c=auto: the C values tried")
    cv_folds: int = field(5, effect=RESULT, help="lbfgs with l2_c=auto: folds (fewer when a class has fewer labelled clips)")
    lbfgs_max_iter: int = field(500, effect=RESULT, help="lbfgs: most objective evaluations")
    precision: str = field("fp32", effect=RESULT, help="forward passes of training and dev evaluation: fp32 | bf16 "
                           "(torch.autocast with bfloat16, on a GPU or a CPU; parameters, gradients and AdamW "
                           "states stay float32, the loss is computed in float32, no loss scaling). "
                           "train.solver=lbfgs always solves in float32")
    allow_tf32: bool = field(True, effect=RESULT, help="on a GPU, float32 matmuls and convolutions use TF32 tensor cores "
                             "(2.4x strict fp32 for a wav2vec2-base LoRA step on an H100); false = strict "
                             "float32. No effect on a CPU")

    #: The optimiser's keys moved into ``train.optim`` (one vocabulary with tapt and distill); the head's own
    #: rate stays ``train.lr_head``.
    RENAMED: ClassVar[dict[str, str]] = {**{k: v for k, v in OPTIM_RENAMED.items() if k != "lr"},
                                         "lr_adapter": "optim.lr"}

    def __post_init__(self):
        if self.eval_batch_size < 1:
            raise ConfigError(f"train.eval_batch_size must be >= 1, got {self.eval_batch_size}")
        if self.lr_head <= 0:
            raise ConfigError(f"train.lr_head must be > 0, got {self.lr_head}")
        if self.early_stopping_patience < 0:
            raise ConfigError("train.early_stopping_patience must be >= 0")
        if self.dimensional_loss not in ("ccc", "mse"):
            raise ConfigError(f"train.dimensional_loss must be ccc or mse, got {self.dimensional_loss!r}")
        if not self.dimensional_weight >= 0:
            raise ConfigError(f"train.dimensional_weight must be >= 0, got {self.dimensional_weight!r}")
        bad = [p for p in self.freeze if p not in FREEZABLE_PARTS]
        if bad or len(set(self.freeze)) != len(self.freeze):
            raise ConfigError(f"train.freeze must be distinct names from {list(FREEZABLE_PARTS)}, got {self.freeze!r}")
        if self.solver not in SOLVERS:
            raise ConfigError(f"train.solver must be one of {list(SOLVERS)}, got {self.solver!r}")
        if isinstance(self.l2_c, str) and self.l2_c != "auto":
            try:  # a dotted override or YAML may hand a number over as text
                self.l2_c = float(self.l2_c)
            except ValueError:
                raise ConfigError(f"train.l2_c must be a number > 0 or 'auto', got {self.l2_c!r}") from None
        if self.l2_c != "auto" and not (isinstance(self.l2_c, (int, float)) and self.l2_c > 0):
            raise ConfigError(f"train.l2_c must be a number > 0 or 'auto', got {self.l2_c!r}")
        if not self.l2_c_grid or any(not (isinstance(c, (int, float)) and c > 0) for c in self.l2_c_grid):
            raise ConfigError(f"train.l2_c_grid must be a non-empty list of numbers > 0, got {self.l2_c_grid!r}")
        if self.cv_folds < 2:
            raise ConfigError(f"train.cv_folds must be >= 2, got {self.cv_folds}")
        if self.lbfgs_max_iter < 1:
            raise ConfigError(f"train.lbfgs_max_iter must be >= 1, got {self.lbfgs_max_iter}")
        check_precision(self.precision, "train.precision")
        check_flag(self.allow_tf32, "train.allow_tf32")
        if self.select_metric not in SELECT_METRICS:
            raise ConfigError(f"train.select_metric must be one of {list(SELECT_METRICS)}, got {self.select_metric!r}")

    def selection_metric(self, categorical: bool, dimensional: bool) -> str:
        """The dev metric key (``ua``, ``ccc`` or ``ua_plus_ccc``) for a model with these outputs.

        Raises:
            ConfigError: the metric needs an output the model lacks.
        """
        name = self.select_metric if self.select_metric != "auto" else ("ua" if categorical else "ccc")
        if ("ua" in name and not categorical) or ("ccc" in name and not dimensional):
            raise ConfigError(f"train.select_metric={self.select_metric!r} needs "
                              f"{'model.labels' if 'ua' in name and not categorical else 'model.dimensions'}")
        return name


@dataclass
class ScalingConfig:
    """Where training runs (``scaling`` in every job that trains; maps onto Ray Train's ``ScalingConfig`` and
    ``FailureConfig``)."""

    num_workers: int = field(1, effect=RESULT, help="Ray Train workers (data-parallel DDP replicas)")
    use_gpu: bool = field(False, effect=RESULT, help="one GPU per worker")
    cpus_per_worker: int = field(1, effect=SPEED, help="CPUs reserved per worker (also its torch thread count)")
    max_failures: int = field(1, effect=SPEED,
                              help="worker-group restarts from the last checkpoint before giving up")
    backend: str = field("ray_train", effect=SPEED,
                         help="'ray_train' (workers, DDP, fault tolerance) or 'in_process' (the "
                              "same fit in the driver: for quick local runs and sweeps of tiny fits)")
    stream_above_clips: int = field(2000, effect=RESULT, help="a worker whose share of the training set is larger (about 2 h of "
                                    "3-s clips, ~200 MB decoded) reads it, and rank 0 its dev/test splits, from Ray "
                                    "Data every epoch, one decoded window at a time, instead of holding them "
                                    "(0 = always stream)")
    stream_window: int = field(256, effect=RESULT, help="clips a streaming worker decodes and length-buckets at a time")

    def __post_init__(self):
        if self.num_workers < 1:
            raise ConfigError(f"scaling.num_workers must be >= 1, got {self.num_workers}")
        if self.cpus_per_worker < 1:
            raise ConfigError(f"scaling.cpus_per_worker must be >= 1, got {self.cpus_per_worker}")
        if self.backend not in ("ray_train", "in_process"):
            raise ConfigError(f"scaling.backend must be 'ray_train' or 'in_process', got {self.backend!r}")
        if self.stream_above_clips < 0 or self.stream_window < 1:
            raise ConfigError("scaling.stream_above_clips must be >= 0 and scaling.stream_window >= 1")
        if self.max_failures < -1:
            raise ConfigError("scaling.max_failures must be >= -1 (-1 = retry forever)")

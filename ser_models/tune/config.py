"""The sweep job's config: a base job with its full config, a search block, and how to search it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ser_models.config import LOCATION, PATH, RESULT, SPEED, field
from ser_models.exceptions import ConfigError

SEARCH_ALGS = ("random", "grid", "optuna")
SCHEDULERS = ("asha", "fifo", "pbt")
#: Keys Population Based Training may change in the middle of a fit: the fit reads them afresh when it takes
#: over another trial's state (``fitting._apply_hyperparameters`` re-applies the rates and weight decay).
PBT_MUTABLE = ("train.optim.lr", "train.lr_head", "train.optim.weight_decay", "train.optim.grad_clip")


@dataclass
class SchedulerConfig:
    """Trial scheduling (Ray Tune's ``ASHAScheduler``, FIFO, or ``PopulationBasedTraining``)."""

    name: str = field("asha", effect=RESULT, help="asha (stop weak trials early at rungs of the time unit) | fifo (run all) | "
                                                  "pbt (in-process finetune trials copy better trials' state and perturb)")
    grace_period: int = field(1, effect=RESULT, help="asha: time units (epochs or rounds) every trial runs before it can stop")
    reduction_factor: float = field(2.0, effect=RESULT, help="asha: 1/this of the trials at a rung go on to the next one")
    max_t: int = field(0, effect=RESULT, help="asha: the longest a trial runs, in time units (0 = the most the space allows)")
    metric: str = field("", effect=RESULT, help="asha: what it stops trials on ('' = the sweep's metric); e.g. dev_nll, smooth "
                                                "where an early epoch's dev_ua on a small dev set is mostly noise. Trials are "
                                                "still ranked by the sweep's metric")
    mode: str = field("", effect=RESULT, help="asha: max | min for scheduler.metric (needed with it; '' = the sweep's mode)")
    perturbation_interval: int = field(1, effect=RESULT, help="pbt: epochs between two exploit/explore decisions of a trial")
    quantile_fraction: float = field(0.25, effect=RESULT, help="pbt: the bottom fraction of trials copies the top fraction")
    resample_probability: float = field(0.25, effect=RESULT, help="pbt: chance a mutated key is drawn anew from its search "
                                                                  "range instead of scaled by 0.8 or 1.2")
    synch: bool = field(False, effect=RESULT, help="pbt: every trial waits for the whole population at each perturbation "
                                                   "(else each decides on the others' latest scores)")
    mutate: list[str] = field(effect=RESULT, default_factory=list, help="pbt: swept keys changed during a run (empty = every "
                              f"swept key among {', '.join(PBT_MUTABLE)})")

    def __post_init__(self):
        if self.name not in SCHEDULERS:
            raise ConfigError(f"scheduler.name must be one of {SCHEDULERS}, got {self.name!r}")
        if self.grace_period < 1 or self.reduction_factor <= 1 or self.max_t < 0:
            raise ConfigError("scheduler.grace_period must be >= 1, scheduler.reduction_factor > 1 and "
                              "scheduler.max_t >= 0")
        if self.perturbation_interval < 1 or not 0 < self.quantile_fraction <= 0.5 or not (
                0 <= self.resample_probability <= 1):
            raise ConfigError("scheduler.perturbation_interval must be >= 1, scheduler.quantile_fraction in "
                              "(0, 0.5] and scheduler.resample_probability in [0, 1]")
        if self.mode not in ("", "max", "min"):
            raise ConfigError(f"scheduler.mode must be 'max', 'min' or '' (the sweep's mode), got {self.mode!r}")
        if self.metric and not self.mode:
            raise ConfigError(f"scheduler.metric={self.metric!r} needs scheduler.mode (max or min): its direction "
                              "is not the sweep's by default (dev_nll and losses are lower-is-better)")
        if (self.metric or self.mode) and self.name != "asha":
            raise ConfigError(f"scheduler.metric and scheduler.mode apply to scheduler.name=asha only (here "
                              f"{self.name!r}): remove them or switch the scheduler")
        if self.mutate and self.name != "pbt":
            raise ConfigError(f"scheduler.mutate applies to scheduler.name=pbt only (here {self.name!r}): "
                              "remove it or switch the scheduler")
        bad = [k for k in self.mutate if k not in PBT_MUTABLE]
        if bad:
            raise ConfigError(f"scheduler.mutate: {bad} cannot change in the middle of a fit; PBT may mutate "
                              f"{list(PBT_MUTABLE)}")


@dataclass
class TrackingConfig:
    """Experiment tracking of every trial's reports."""

    tensorboard: bool = field(True, effect=RESULT, help="TensorBoard event files per trial (tensorboardX) in the sweep folder")
    mlflow: bool = field(True, effect=RESULT, help="one MLflow run per trial (Ray Tune's MLflowLoggerCallback)")
    tracking_uri: str = field("", effect=RESULT, help="MLflow tracking URI ('' = sqlite:///<output_dir>/mlflow.db when "
                                                      "output_dir is local; set it, e.g. http://mlflow:5000, for a URI)")
    experiment_name: str = field("", effect=RESULT, help="MLflow experiment ('' = the sweep's name)")


@dataclass
class SweepConfig:
    """A Ray Tune sweep over any keys of a base job's config."""

    base: str = field(effect=RESULT, help="the job each trial runs: finetune | anchor (cross-lingual layer anchoring) | after")
    output_dir: str = field(effect=LOCATION,
                            path=PATH, help="sweep folder (local path or s3://, gs://); rerun the same command to resume")
    config: dict[str, Any] = field(effect=RESULT, default_factory=dict, help="the base job's full config (as in its own YAML)")
    search: dict[str, Any] = field(effect=RESULT, default_factory=dict, help="dotted key of `config` -> {choice|grid|uniform|"
                                   "loguniform|randint|qrandint: [...], when: {other.key: value}}")
    name: str = field("sweep", effect=LOCATION, help="experiment name (folder under output_dir/tune, MLflow experiment)")
    metric: str = field("", effect=RESULT, help="what trials are ranked by, always on dev ('' = dev_ua for finetune, alc_dev_ua "
                                                  "for after: the mean dev UA over the rounds; dev_ccc / alc_dev_ccc when the "
                                                  "model has no classes)")
    mode: str = field("max", effect=RESULT, help="max | min")
    num_samples: int = field(8, effect=RESULT, help="sampled configurations (each repeated over every grid combination)")
    max_concurrent_trials: int = field(0, effect=RESULT,
                                       help="0 = as many as the cluster's CPUs/GPUs hold, one CPU kept free "
                                            "for Ray Data reads (pbt: unused; trials run as resources allow)")
    search_alg: str = field("random", effect=RESULT, help="random | grid (every choice/grid combination) | optuna (TPE)")
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig, help="early stopping of weak trials")
    seed: int = field(0, effect=RESULT, help="seed of the search algorithm (the trials keep their own train.optim.seed)")
    max_failures: int = field(1, effect=SPEED,
                              help="Tune retries of a failed trial (Ray Train retries inside a trial too)")
    tracking: TrackingConfig = field(default_factory=TrackingConfig, effect=SPEED, help="TensorBoard and MLflow")
    top_k: int = field(5, effect=SPEED, help="trials printed in the leaderboard")

    def __post_init__(self):
        if self.base not in ("finetune", "anchor", "after"):
            raise ConfigError(f"base must be 'finetune', 'anchor' or 'after', got {self.base!r}")
        if self.mode not in ("max", "min"):
            raise ConfigError(f"mode must be 'max' or 'min', got {self.mode!r}")
        if self.search_alg not in SEARCH_ALGS:
            raise ConfigError(f"search_alg must be one of {SEARCH_ALGS}, got {self.search_alg!r}")
        if self.num_samples < 1 or self.max_concurrent_trials < 0 or self.max_failures < 0 or self.top_k < 1:
            raise ConfigError("num_samples and top_k must be >= 1; max_concurrent_trials and max_failures >= 0")
        if not self.output_dir:
            raise ConfigError("output_dir must be set")


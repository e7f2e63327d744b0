"""Two-stage adaptation: fine-tune on a source pool (acted speech), then go on on a target pool (natural).

    python -m jobs.adapt jobs/configs/adapt_demo.yaml [key.sub=value ...]
    platform/submit.sh adapt jobs/configs/adapt_demo.yaml output_dir=s3://bucket/runs/adapt1

Stage 1 is a ``jobs.finetune`` run on ``source_pool_dir`` with ``train``; stage 2 is one on
``target_pool_dir`` with ``target_train``, warm-started from stage 1's adapters and head
(``target_train.freeze`` names the parts stage 2 leaves as they are). Both run on Ray Train (or in process),
each in its own folder, so a rerun skips a finished stage and resumes an interrupted one from its last
epoch. The job ends with the cross-corpus matrix of both stages' checkpoints on both pools' test splits
(``jobs.evaluate``)::

    output_dir/
      stage1_source/   jobs.finetune run on the source pool (checkpoint/, metrics.json, ...)
      stage2_target/   jobs.finetune run on the target pool, from stage1_source/checkpoint
      cross_corpus/    matrix.csv, matrix.png, evaluations.json (jobs.evaluate)

References:
    Lashkarashvili et al., "Parameter Efficient Finetuning for Speech Emotion Recognition and Domain
    Adaptation", arXiv 2402.11747 (the two-stage acted-to-natural strategy).
"""

import sys
from dataclasses import dataclass

from ser_models.config import LOCATION, PATH, RESULT, field, parse_job_args, to_yaml
from ser_models.data import Pool
from ser_models.encoders.pretrained import resolve_encoder_names
from ser_models.exceptions import ConfigError
from ser_models.io import storage_path
from ser_models.models.model import ModelConfig
from ser_models.models.model_config import resolve_labels
from ser_models.ownership import check_output, claim_output, recognise_files
from ser_models.runs.evaluate import cross_corpus
from ser_models.runs.finetune import FinetuneJobConfig, run_finetune
from ser_models.training.config import OptimConfig, ScalingConfig, TrainConfig

STAGE1_DIR, STAGE2_DIR, MATRIX_DIR = "stage1_source", "stage2_target", "cross_corpus"


def _stage2_defaults() -> TrainConfig:
    # Stage 2 adapts, it does not relearn: a lower encoder-side rate than stage 1's default.
    return TrainConfig(optim=OptimConfig(lr=2e-4))


@dataclass
class AdaptJobConfig:
    source_pool_dir: str = field(effect=LOCATION, path=PATH, help="prepared pool of the source domain (stage 1, e.g. acted)")
    target_pool_dir: str = field(effect=LOCATION, path=PATH, help="prepared pool of the target domain (stage 2, e.g. natural)")
    output_dir: str = field(effect=LOCATION, path=PATH, help="run folder: stage1_source/, stage2_target/, cross_corpus/")
    model: ModelConfig = field(default_factory=ModelConfig, help="encoder, adapters and head (both stages)")
    train: TrainConfig = field(default_factory=TrainConfig, help="stage 1 optimisation (source pool)")
    target_train: TrainConfig = field(effect=RESULT, default_factory=_stage2_defaults,
                                      help="stage 2 optimisation (target pool); target_train.freeze names the "
                                           "parts stage 2 keeps from stage 1 (adapter, featurizer, pooling, head)")
    scaling: ScalingConfig = field(default_factory=ScalingConfig, help="Ray Train workers and retries")
    evaluate_split: str = field("test", effect=RESULT, help="split of both pools the cross-corpus matrix is computed on "
                                "('' = no matrix)")
    names: list[str] = field(effect=RESULT, default_factory=lambda: ["source", "target"],
                             help="names of the source and target domains in the matrix")

    def __post_init__(self):
        if len(self.names) != 2 or len(set(self.names)) != 2:
            raise ConfigError(f"names must be two distinct names (source, target), got {self.names!r}")
        if self.source_pool_dir.rstrip("/") == self.target_pool_dir.rstrip("/"):
            raise ConfigError("source_pool_dir and target_pool_dir are the same pool: two-stage adaptation needs "
                              "two domains")


def stage_configs(cfg: AdaptJobConfig):
    """The two ``jobs.finetune`` configs the stages run (stage 2 warm-starts from stage 1's checkpoint)."""

    out = storage_path(cfg.output_dir)
    stage1 = FinetuneJobConfig(pool_dir=cfg.source_pool_dir, output_dir=str(out / STAGE1_DIR), model=cfg.model,
                               train=cfg.train, scaling=cfg.scaling)
    stage2 = FinetuneJobConfig(pool_dir=cfg.target_pool_dir, output_dir=str(out / STAGE2_DIR), model=cfg.model,
                               train=cfg.target_train, scaling=cfg.scaling,
                               init_checkpoint=str(out / STAGE1_DIR / "checkpoint"))
    return stage1, stage2


def check_pools(cfg: AdaptJobConfig) -> None:
    """Open both pools and check the model's labels on each (``cfg.model.labels`` resolved from them): a wrong
    path fails in a second, before any training and before the output folder is claimed.

    Raises:
        PoolError: a pool is missing or lacks the targets.
        ConfigError: the labels do not match a pool's.
    """
    for key in ("source_pool_dir", "target_pool_dir"):
        pool = Pool.open(getattr(cfg, key))
        cfg.model = resolve_labels(cfg.model, pool)  # labels are declared once, at prepare_pool
        pool.check_targets(cfg.model.targets, key=f"model.labels (pool {key})")


def run_adapt(cfg: AdaptJobConfig, verbose: bool = True) -> dict:
    """Both stages, then the cross-corpus matrix.

    Returns:
        ``{"stage1": metrics, "stage2": metrics, "matrix": DataFrame | None}``.
    """

    check_pools(cfg)
    stage1, stage2 = stage_configs(cfg)
    if verbose:
        print(to_yaml(cfg))
        print(f"== stage 1: {cfg.names[0]} ({cfg.source_pool_dir}) -> {stage1.output_dir}")
    first = run_finetune(stage1, verbose=verbose, run_name="stage1")
    if verbose:
        print(f"\n== stage 2: {cfg.names[1]} ({cfg.target_pool_dir}) from stage 1, freezing "
              f"{list(cfg.target_train.freeze) or 'nothing'} -> {stage2.output_dir}")
    second = run_finetune(stage2, verbose=verbose, run_name="stage2")
    matrix = None
    if cfg.evaluate_split:
        if verbose:
            print(f"\n== cross-corpus matrix on the {cfg.evaluate_split} splits")
        matrix = cross_corpus(
            {f"{cfg.names[0]} (stage 1)": str(first.checkpoint_dir),
             f"{cfg.names[0]}->{cfg.names[1]} (stage 2)": str(second.checkpoint_dir)},
            {cfg.names[0]: cfg.source_pool_dir, cfg.names[1]: cfg.target_pool_dir},
            split=cfg.evaluate_split, output_dir=f"{str(cfg.output_dir).rstrip('/')}/{MATRIX_DIR}",
            scaling=cfg.scaling, verbose=verbose)
    return {"stage1": first.metrics, "stage2": second.metrics, "matrix": matrix}


def main(argv: list[str] | None = None) -> dict:
    cfg = resolve_encoder_names(parse_job_args(AdaptJobConfig, sys.argv[1:] if argv is None else argv, "jobs.adapt"))

    # an earlier version's folder (no marker): adopted when its stages are fine-tuning runs of ours
    earlier = recognise_files({STAGE1_DIR: "run:jobs.finetune", STAGE2_DIR: "run:jobs.finetune",
                               MATRIX_DIR: "dir"})
    inputs = {"source_pool_dir": cfg.source_pool_dir, "target_pool_dir": cfg.target_pool_dir}
    check_output(cfg.output_dir, "run", job="jobs.adapt", recognise=earlier, inputs=inputs)
    check_pools(cfg)  # a missing pool or wrong labels: refused before the folder is claimed
    with claim_output(cfg.output_dir, "run", job="jobs.adapt", recognise=earlier, inputs=inputs):
        return run_adapt(cfg)

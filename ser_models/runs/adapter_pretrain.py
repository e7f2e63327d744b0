"""What ``python -m jobs.adapter_pretrain`` runs: the frame cache, then the WAP adapter's pre-training on the pool.

``AdapterPretrainJobConfig`` is the job's config and ``run_adapter_pretrain_job`` runs it; the job's module
docstring has the commands.

Encodes every clip once into the frame cache, then trains the teacher-student adapter on Ray Train with
per-epoch checkpoints. Writes ``output_dir/adapter/wap.safetensors``: point ``model.wap.checkpoint`` of a
fine-tuning or AFTER job at it (``jobs.after`` and ``jobs.finetune`` can also run this stage themselves).
Rerunning with the same ``output_dir`` resumes an interrupted run or reuses a finished one.
"""

# No `from __future__ import annotations`: OmegaConf resolves these annotations at run time.
import sys
from dataclasses import dataclass

from ser_models.adapters import AdapterConfig
from ser_models.adapters.config import WapConfig
from ser_models.config import LOCATION, PATH, RESULT, field, parse_job_args, to_yaml
from ser_models.data import Pool
from ser_models.encoders.pretrained import resolve_encoder_names
from ser_models.exceptions import ConfigError
from ser_models.models.model import ModelConfig
from ser_models.ownership import check_apart, deferred_claim
from ser_models.pretraining.adapter_stage import pretrain_adapter_stage
from ser_models.pretraining.tapt_config import AdapterPretrainConfig
from ser_models.provenance import check_run
from ser_models.runtime import connect_ray
from ser_models.scoring.scorer import ScorerConfig
from ser_models.training.config import ScalingConfig


def _default_model() -> ModelConfig:
    return ModelConfig(adapter=AdapterConfig(kind="frozen"), pooling="attentive_stats", wap=WapConfig(enabled=True))


@dataclass
class AdapterPretrainJobConfig:
    pool_dir: str = field(effect=LOCATION, path=PATH, help="prepared pool folder (written by jobs.prepare_pool)")
    output_dir: str = field(effect=LOCATION, path=PATH, help="run folder: adapter/wap.safetensors, adapter_metrics.json, "
                            "adapter_loss.png (rerun to resume or reuse)")
    model: ModelConfig = field(effect=RESULT, default_factory=_default_model, help="the frozen encoder (model.encoder) and the "
                               "adapter's architecture (model.wap); pooling and head are not used here")
    pretrain: AdapterPretrainConfig = field(default_factory=AdapterPretrainConfig, help="the objective")
    scaling: ScalingConfig = field(default_factory=ScalingConfig, help="Ray Train workers and retries")
    scorer: ScorerConfig = field(default_factory=ScorerConfig, help="Ray Data actors that build the frame cache")
    feature_cache_dir: str = field("", effect=LOCATION, path=PATH, help="frame cache root ('' = output_dir/feature_cache); "
                                   "give jobs.after's active.feature_cache_dir to share it")

    def __post_init__(self):
        if not self.model.wap.enabled:
            raise ConfigError("jobs.adapter_pretrain pre-trains model.wap: set model.wap.enabled=true")


#: What the job writes into its ``output_dir`` besides ``run.json`` and ``config.yaml`` (an earlier
#: version's folder holding a ``run.json`` of this job and only these names is adopted).
ADAPTER_PRETRAIN_LAYOUT = ('adapter', 'adapter_metrics.json', 'adapter_loss.png', 'feature_cache', 'ray_train')


def run_adapter_pretrain_job(cfg: AdapterPretrainJobConfig, *, verbose: bool = True):
    """Pre-train the adapter on a parsed config (see :func:`_run_adapter_pretrain_job`)."""

    # Refused now, before anything is read, if the folder is not this job's or overlaps an input; claimed
    # (marked and locked) right before the job's first write, so a config error leaves no folder behind.
    inputs = {"pool_dir": cfg.pool_dir, "model.encoder.source": cfg.model.encoder.source,
              "model.encoder.checkpoint": cfg.model.encoder.checkpoint}
    if cfg.feature_cache_dir:  # a second output: never an input, inside one or around one either
        check_apart(cfg.feature_cache_dir, inputs, key="feature_cache_dir")
    with deferred_claim(cfg.output_dir, "run", job="jobs.adapter_pretrain", layout=ADAPTER_PRETRAIN_LAYOUT,
                        inputs=inputs) as claim:
        return _run_adapter_pretrain_job(cfg, verbose=verbose, claim=claim)


def _run_adapter_pretrain_job(cfg: AdapterPretrainJobConfig, *, verbose: bool = True, claim=lambda: None):
    """The job's work on a parsed config; returns the ``AdapterPretrainResult``."""

    pool = Pool.open(cfg.pool_dir)  # checked before Ray starts: a wrong path fails in a second
    claim()  # the output folder: marked and locked before the first byte
    check_run(cfg.output_dir, "jobs.adapter_pretrain", cfg, inputs={"pool": pool.lineage},
              config_yaml=to_yaml(cfg))
    connect_ray()
    if verbose:
        print(to_yaml(cfg))
    _, result = pretrain_adapter_stage(pool, cfg.model, cfg.pretrain, cfg.scaling, cfg.output_dir,
                                       cfg.feature_cache_dir or f"{cfg.output_dir}/feature_cache", cfg.scorer,
                                       verbose=verbose)
    return result


def main(argv: list[str] | None = None) -> dict:
    cfg = resolve_encoder_names(parse_job_args(AdapterPretrainJobConfig, sys.argv[1:] if argv is None else argv, "jobs.adapter_pretrain"))
    result = run_adapter_pretrain_job(cfg)
    h = result.metrics["history"]
    print(f"\nadapter pre-training: {len(h)} epochs, loss {h[0]['loss']:.4f} -> {h[-1]['loss']:.4f}"
          + (" (reused)" if result.reused else f" in {result.seconds:.1f}s"))
    print(f"use it with: model.wap.enabled=true model.wap.checkpoint={result.checkpoint}")
    return result.metrics

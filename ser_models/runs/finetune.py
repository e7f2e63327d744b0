"""What ``python -m jobs.finetune`` runs: fine-tuning adapters and an emotion head on a prepared pool with Ray Train.

``FinetuneJobConfig`` is the job's config and ``run_finetune`` runs it; the job's module docstring has the commands.

Rerunning with the same ``output_dir`` resumes an interrupted run, or reuses a finished one.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import pyarrow as pa

from ser_models.config import LOCATION, PATH, RESULT, field, parse_job_args, to_dict, to_yaml
from ser_models.data import Pool
from ser_models.data.inputs import ModelInputs
from ser_models.encoders import build_encoder
from ser_models.encoders.functionals import reads_functionals
from ser_models.encoders.pretrained import resolve_encoder_names
from ser_models.exceptions import CheckpointError, ConfigError
from ser_models.io import exists, read_json, storage_path
from ser_models.metrics import metrics_table
from ser_models.models.model import ModelConfig
from ser_models.models.model_config import resolve_labels
from ser_models.ownership import check_apart, deferred_claim
from ser_models.pretraining.adapter_stage import pretrain_adapter_stage
from ser_models.pretraining.tapt_config import AdapterPretrainConfig
from ser_models.provenance import check_run
from ser_models.runtime import connect_ray
from ser_models.scoring.cache_keys import cache_kind, cache_supported, feature_cache_key
from ser_models.scoring.feature_cache import FeatureCache, model_inputs
from ser_models.scoring.feature_stats import write_run_statistics
from ser_models.training import train_model
from ser_models.training.config import ScalingConfig, TrainConfig


@dataclass
class FinetuneJobConfig:
    pool_dir: str = field(effect=LOCATION, path=PATH, help="prepared pool folder (written by jobs.prepare_pool)")
    output_dir: str = field(effect=LOCATION, path=PATH, help="where checkpoints, metrics.json and confusion.png go")
    model: ModelConfig = field(default_factory=ModelConfig, help="encoder, adapter, pooling, head")
    train: TrainConfig = field(default_factory=TrainConfig, help="optimisation")
    scaling: ScalingConfig = field(default_factory=ScalingConfig, help="Ray Train workers and retries")
    train_split: str = field("train", effect=RESULT, help="pool split to train on")
    dev_split: str = field("dev", effect=RESULT, help="pool split for model selection (early stopping)")
    test_split: str = field("test", effect=RESULT, help="pool split reported at the end ('' = none)")
    init_checkpoint: str = field("", effect=RESULT, path=PATH, help="warm start from this model checkpoint's trainable weights (a model "
                                 "folder with model.json; '' = none); jobs.adapt's stage 2 sets it to stage 1's")

    feature_cache_dir: str = field("", effect=LOCATION, path=PATH, help="train and evaluate from the frozen encoder's cache in "
                                   "this folder (per-layer means, or frames for model.wap / attentive_stats), "
                                   "encoding each clip once; '' = from audio every epoch")
    pretrain_adapter: bool = field(False, effect=RESULT, help="first pre-train the WAP adapter (model.wap) on the training split's "
                                   "cached frames (adapter_pretrain settings); needs feature_cache_dir")
    adapter_pretrain: AdapterPretrainConfig = field(default_factory=AdapterPretrainConfig,
                                                    help="the adapter pre-training stage (pretrain_adapter=true)")

    def __post_init__(self):
        if not self.train_split:
            raise ConfigError("train_split must not be empty")
        if self.pretrain_adapter and not self.feature_cache_dir:
            raise ConfigError("pretrain_adapter=true learns from cached frames: set feature_cache_dir")
        if self.model.functionals != "none" and not self.feature_cache_dir:
            raise ConfigError(f"model.functionals={self.model.functionals} reads the eGeMAPS functionals from the "
                              "feature cache: set feature_cache_dir")
        if self.pretrain_adapter and self.train_split != "train":
            raise ConfigError("pretrain_adapter=true learns from the 'train' split only (never dev or test): "
                              f"train_split={self.train_split!r}")



#: What the job writes into its ``output_dir`` besides ``run.json`` and ``config.yaml`` (an earlier
#: version's folder holding a ``run.json`` of this job and only these names is adopted).
FINETUNE_LAYOUT = ("checkpoint", "in_process", "metrics.json", "confusion.png", "ray_train", "feature_cache",
                   "adapter_pretrain", "statistics", "feature_stats.safetensors", "speaker_stats.safetensors",
                   "functionals_stats.safetensors", "functionals_speaker_stats.safetensors", "learning_curve.png")


def run_finetune(cfg: FinetuneJobConfig, *, verbose: bool = True, run_name: str = "finetune", report=None,
                 callbacks: list | None = None):
    """The job's work on a parsed config (``main`` and every sweep trial of ``base: finetune`` call it); see
    :func:`_run_finetune`."""

    # Refused now, before anything is read, if the folder is not this job's or overlaps an input; claimed
    # (marked and locked) right before the job's first write, so a config error leaves no folder behind.
    inputs = {"pool_dir": cfg.pool_dir, "init_checkpoint": cfg.init_checkpoint,
              "model.encoder.source": cfg.model.encoder.source, "model.encoder.checkpoint": cfg.model.encoder.checkpoint}
    if cfg.feature_cache_dir:  # a second output: never an input, inside one or around one either
        check_apart(cfg.feature_cache_dir, inputs, key="feature_cache_dir")
    with deferred_claim(cfg.output_dir, "run", job="jobs.finetune", layout=FINETUNE_LAYOUT, inputs=inputs) as claim:
        return _run_finetune(cfg, verbose=verbose, run_name=run_name, report=report, callbacks=callbacks, claim=claim)


def _run_finetune(cfg: FinetuneJobConfig, *, verbose: bool = True, run_name: str = "finetune", report=None,
                 callbacks: list | None = None, claim=lambda: None):
    """The job's work on a parsed config (``main`` and every sweep trial of ``base: finetune`` call it).

    Args:
        cfg: the job config.
        verbose: print the config, per-epoch lines and the metrics table.
        run_name: Ray Train run name under ``output_dir/ray_train`` (a sweep trial uses its trial id).
        report / callbacks: see :func:`ser_models.training.train_model`.

    Returns:
        The :class:`~ser_models.training.trainer.TrainResult`.
    """
    t0 = time.perf_counter()
    # Config, pool and labels are checked before Ray starts: a wrong path or label fails in a second.
    pool = Pool.open(cfg.pool_dir)
    if cfg.init_checkpoint:
        _check_init_checkpoint(cfg)
    cfg.model = resolve_labels(cfg.model, pool)
    pool.check_targets(cfg.model.targets, (cfg.train_split, cfg.dev_split, cfg.test_split))
    claim()  # the output folder: marked and locked before the first byte
    check_run(cfg.output_dir, "jobs.finetune", cfg, inputs={"pool": pool.lineage},
              config_yaml=to_yaml(cfg))
    connect_ray()  # RAY_ADDRESS (set by `ray job submit`) or a local instance
    labels = pool.metadata(columns=["label"], split=cfg.train_split)["label"]
    counts = [int((labels == name).sum()) for name in cfg.model.labels] or None
    inputs = describe_inputs(cfg.model, pool, cfg.train_split)
    if verbose:
        print(f"inputs: {inputs['inputs']}" + (f" ({inputs['note']})" if inputs.get("note") else ""))
        print(f"pool {cfg.pool_dir}: {len(labels)} training clips"
              + (", per class " + ", ".join(f"{n}={c}" for n, c in zip(cfg.model.labels, counts)) if counts else "")
              + (f"; dimensions {', '.join(cfg.model.dimensions)}" if cfg.model.dimensions else ""))
        print(to_yaml(cfg))
    splits = {"train": cfg.train_split, "dev": cfg.dev_split, "test": cfg.test_split}
    model_in = cfg.model.inputs()
    if cfg.feature_cache_dir:
        if cfg.pretrain_adapter:

            cfg.model, _ = pretrain_adapter_stage(pool, cfg.model, cfg.adapter_pretrain, cfg.scaling,
                                                  f"{cfg.output_dir}/adapter_pretrain", cfg.feature_cache_dir,
                                                  verbose=verbose)
        datasets, model_in, cache, num_layers = cached_datasets(
            pool, cfg.model, cfg.feature_cache_dir, splits, in_process=cfg.scaling.backend == "in_process",
            verbose=verbose)
        # Statistics the model standardises with and the config does not give: from the cache, no label read.

        train_ids = pool.metadata(columns=["utt_id"], split=cfg.train_split)["utt_id"].tolist()
        cfg.model, _ = write_run_statistics(cache, pool, storage_path(cfg.output_dir), train_ids, num_layers,
                                            cfg.model, print if verbose else (lambda *_: None), only_missing=True)
    else:
        datasets = {name: pool.dataset(split) for name, split in splits.items() if split}
    result = train_model(cfg.model, cfg.train, cfg.scaling, datasets, cfg.output_dir, class_counts=counts,
                         train_rows=len(labels), run_name=run_name, verbose=verbose, report=report,
                         callbacks=callbacks, init_checkpoint=cfg.init_checkpoint or None,
                         inputs=model_in)
    result.metrics.update(inputs)
    if not verbose:
        return result
    m = result.metrics
    print("\n" + metrics_table({split: m.get(split) for split in ("dev", "test")}))
    print(f"best epoch {m['best_epoch']}; checkpoint {result.checkpoint_dir}; "
          f"total {time.perf_counter() - t0:.1f}s")
    return result


def cached_datasets(pool, model_cfg, cache_dir: str, splits: dict[str, str], *, in_process: bool = False,
                    verbose: bool = True) -> tuple[dict, ModelInputs, object, int]:
    """Training and evaluation feeds read from the frozen encoder's cache (built over every split if missing):
    ``({"train" | "dev" | "test": Ray Dataset of utt_id, features (and functionals) and the targets},
    the ModelInputs of the cache, the FeatureCache, the encoder's hidden states L)``.

    Raises:
        ConfigError: the model changes the encoder (no cache can serve it).
    """


    reason = cache_supported(model_cfg)
    if reason:
        raise ConfigError(f"feature_cache_dir is set but {reason}")
    encoder = build_encoder(model_cfg.encoder)
    cache = FeatureCache(cache_dir, feature_cache_key(pool, encoder), kind=cache_kind(model_cfg),
                         functionals="egemaps" if reads_functionals(model_cfg) else None)
    cache.build(pool.dataset(None), model_cfg, encoder.num_layers, verbose=verbose, in_process=in_process)

    columns = ["utt_id", *(["label"] if model_cfg.labels else []), *model_cfg.dimensions,
               *(["speaker"] if model_cfg.inputs().speakers else [])]
    feeds = {}
    for name, split in splits.items():
        if split:
            meta = pool.metadata(columns=columns, split=split)
            feeds[name] = cache.dataset(targets=pa.Table.from_pandas(meta[columns], preserve_index=False))
    return feeds, model_inputs(cache, model_cfg), cache, encoder.num_layers


def describe_inputs(model_cfg, pool, split: str) -> dict:
    """Which inputs the model reads: ``{"inputs": "audio" | "audio+text", "note"}``; with a text branch, how many
    of the split's clips have a transcript (the others read as empty text)."""
    if not model_cfg.text.enabled:
        return {"inputs": "audio"}
    texts = pool.metadata(columns=["transcript"], split=split)["transcript"]
    have = int(texts.fillna("").astype(str).str.strip().astype(bool).sum())
    note = f"text branch {model_cfg.text.source}: {have} of {len(texts)} {split} clips have a transcript"
    return {"inputs": "audio+text" if have else "audio (no transcripts; the text branch reads empty text)",
            "note": note, "transcribed_clips": have}


def _check_init_checkpoint(cfg: FinetuneJobConfig) -> None:
    """Refuse, before Ray starts, a warm start from a checkpoint of another architecture.

    Raises:
        CheckpointError: the file is missing, or its model differs from ``cfg.model`` in a way that changes the
            trainable weights (encoder, adapter, head, labels, dimensions), naming the differing keys.
    """

    meta_path = f"{cfg.init_checkpoint.rstrip('/')}/model.json"
    if not exists(meta_path):
        raise CheckpointError(f"init_checkpoint={cfg.init_checkpoint!r} holds no model.json (expected a model "
                              "checkpoint folder, e.g. <run>/checkpoint)")
    mine = to_dict(cfg.model)
    stored = {**to_dict(ModelConfig()), **read_json(meta_path)["config"]}  # keys added since: their defaults
    # Head dropout, input norm and the like change no weight shape but do change what the weights mean.
    differ = [k for k in ("encoder", "adapter", "featurizer_layer", "pooling", "head_hidden", "head_input_norm",
                          "labels", "dimensions", "text") if stored.get(k) != mine.get(k)]
    if differ:
        raise CheckpointError(f"init_checkpoint={cfg.init_checkpoint!r} was trained with another model: "
                              + ", ".join(f"model.{k} {stored.get(k)!r} there, {mine.get(k)!r} here" for k in differ))


def main(argv: list[str] | None = None) -> dict:
    cfg = resolve_encoder_names(parse_job_args(FinetuneJobConfig, sys.argv[1:] if argv is None else argv, "jobs.finetune"))
    # run_finetune claims the folder first: one fine-tuning per folder, and a folder that is not this job's
    # is refused before anything is written
    return run_finetune(cfg).metrics

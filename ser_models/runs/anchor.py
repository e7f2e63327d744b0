"""What ``python -m jobs.anchor`` runs: fine-tuning with cross-lingual layer anchoring (CORAL between source and target clips).

``AnchorJobConfig`` is the job's config and ``run_anchor`` runs it; the job's module docstring has the commands.

The pool's ``group_column`` (``language``, or ``corpus`` for cross-corpus work) tells the two apart. Training
clips are the source's labelled ``train_split``; every step also encodes unlabelled target ``train_split``
clips and adds ``anchoring.weight`` x a CORAL loss at the anchor layers (one layer, a group of layers, or the
top-k most / least similar layers by CKA with ``anchoring.auto``). The epoch is picked on ``dev_on``'s dev
clips; UA/CCC are reported on both languages' test clips (``cross_lingual.json``). ``anchoring.weight=0`` is
the no-anchoring baseline. Rerunning with the same ``output_dir`` resumes.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from ser_models.analysis.anchoring import AnchoringConfig, anchor_groups, resolve_anchors, sample_target_ids
from ser_models.config import LOCATION, PATH, RESULT, field, parse_job_args, to_yaml
from ser_models.data import Pool
from ser_models.encoders import build_encoder
from ser_models.encoders.pretrained import resolve_encoder_names
from ser_models.exceptions import ConfigError
from ser_models.io import exists, read_json, storage_path, write_json_atomic
from ser_models.metrics import metrics_table
from ser_models.models.model import ModelConfig
from ser_models.models.model_config import resolve_labels
from ser_models.ownership import deferred_claim
from ser_models.provenance import check_run
from ser_models.runs.finetune import FINETUNE_LAYOUT
from ser_models.runtime import connect_ray
from ser_models.scoring.evaluation import evaluate_checkpoint
from ser_models.training import train_model
from ser_models.training.config import ScalingConfig, TrainConfig


@dataclass
class AnchorJobConfig:
    pool_dir: str = field(effect=LOCATION, path=PATH, help="prepared pool holding both languages (jobs.prepare_pool)")
    output_dir: str = field(effect=LOCATION, path=PATH, help="where the checkpoint, metrics and anchors go")
    model: ModelConfig = field(default_factory=ModelConfig, help="encoder, adapter (not frozen), pooling, head")
    train: TrainConfig = field(default_factory=TrainConfig, help="optimisation")
    scaling: ScalingConfig = field(default_factory=ScalingConfig, help="Ray Train workers and retries")
    anchoring: AnchoringConfig = field(default_factory=AnchoringConfig, help="anchor layers and CORAL weight")
    group_column: str = field("language", effect=RESULT, help="pool column that tells source from target (language | corpus)")
    source: str = field("en", effect=RESULT, help="value of group_column of the labelled source clips")
    target: str = field("xx", effect=RESULT, help="value of group_column of the target clips (their labels are never trained on)")
    dev_on: str = field("target", effect=RESULT, help="whose dev clips pick the best epoch: target (a small labelled target dev "
                        "set, the usual protocol) | source (no target labels at all)")
    train_split: str = field("train", effect=RESULT, help="pool split of the training (source) and anchoring (target) clips")
    dev_split: str = field("dev", effect=RESULT, help="pool split for model selection")
    test_split: str = field("test", effect=RESULT, help="pool split reported for both languages")

    def __post_init__(self):
        if self.dev_on not in ("target", "source"):
            raise ConfigError(f"dev_on must be 'target' or 'source', got {self.dev_on!r}")
        if self.source == self.target:
            raise ConfigError(f"source and target are both {self.source!r}: anchoring aligns two groups")



#: What the job writes into its ``output_dir`` besides ``run.json`` and ``config.yaml`` (an earlier
#: version's folder holding a ``run.json`` of this job and only these names is adopted).
ANCHOR_LAYOUT = (*FINETUNE_LAYOUT, "anchors.json", "cross_lingual.json")


def run_anchor(cfg: AnchorJobConfig, *, verbose: bool = True, run_name: str = "anchor", report=None,
               callbacks: list | None = None):
    """The job's work on a parsed config (see :func:`_run_anchor`)."""

    # Refused now, before anything is read, if the folder is not this job's or overlaps an input; claimed
    # (marked and locked) right before the job's first write, so a config error leaves no folder behind.
    with deferred_claim(cfg.output_dir, "run", job="jobs.anchor", layout=ANCHOR_LAYOUT,
                      inputs={"pool_dir": cfg.pool_dir, "model.encoder.source": cfg.model.encoder.source, "model.encoder.checkpoint": cfg.model.encoder.checkpoint}) as claim:
        return _run_anchor(cfg, verbose=verbose, run_name=run_name, report=report, callbacks=callbacks, claim=claim)


def _run_anchor(cfg: AnchorJobConfig, *, verbose: bool = True, run_name: str = "anchor", report=None,
               callbacks: list | None = None, claim=lambda: None):
    """The job's work on a parsed config (``main`` and every ``base: anchor`` sweep trial call it).

    Returns:
        The :class:`~ser_models.training.trainer.TrainResult`; its ``metrics`` gain ``test_source`` and
        ``test_target`` (the evaluation of each language's test clips) and ``anchors``.
    """
    t0 = time.perf_counter()
    log = print if verbose else (lambda _: None)
    pool = Pool.open(cfg.pool_dir)
    _check_groups(cfg, pool)
    cfg.model = resolve_labels(cfg.model, pool)
    pool.check_targets(cfg.model.targets, (cfg.train_split, cfg.dev_split, cfg.test_split))
    num_layers = build_encoder(cfg.model.encoder).num_layers
    if cfg.anchoring.auto == "off":
        anchor_groups(cfg.anchoring.layers, cfg.anchoring.group_size, num_layers)  # a bad layer fails here
    claim()  # the output folder: marked and locked before the first byte
    check_run(cfg.output_dir, "jobs.anchor", cfg, inputs={"pool": pool.lineage},
              config_yaml=to_yaml(cfg))
    out = storage_path(cfg.output_dir)
    source, target = {cfg.group_column: cfg.source}, {cfg.group_column: cfg.target}
    # Before Ray: a measured choice encodes a small sample in this process.
    anchors = resolve_anchors(pool, cfg.anchoring, cfg.model, cfg.train_split, cfg.group_column, cfg.source,
                              cfg.target, out / "anchors.json", num_layers, seed=cfg.train.optim.seed, log=log)
    connect_ray()
    labels = pool.metadata(columns=["label"], split=cfg.train_split, where=source)["label"]
    counts = [int((labels == name).sum()) for name in cfg.model.labels] or None
    targets = sample_target_ids(pool.metadata(columns=["utt_id"], split=cfg.train_split, where=target)["utt_id"],
                                cfg.anchoring.max_target_clips, cfg.train.optim.seed)
    log(f"pool {cfg.pool_dir}: {len(labels)} labelled {cfg.source} training clips, {len(targets)} unlabelled "
        f"{cfg.target} clips for anchoring; anchor groups {anchors['groups']}, weight {cfg.anchoring.weight}")
    datasets = {"train": pool.dataset(cfg.train_split, where=source),
                "dev": pool.dataset(cfg.dev_split, where=source if cfg.dev_on == "source" else target),
                "test": pool.dataset(cfg.test_split, where=target),
                "anchor_target": pool.dataset(cfg.train_split, where={**target, "utt_id": targets})}
    anchoring = ({"groups": anchors["groups"], "weight": cfg.anchoring.weight,
                  "batch_size": cfg.anchoring.target_batch_size or max(cfg.train.optim.batch_size, 2)}
                 if cfg.anchoring.weight > 0 else None)
    result = train_model(cfg.model, cfg.train, cfg.scaling, datasets, out, class_counts=counts,
                         train_rows=len(labels), run_name=run_name, verbose=verbose, report=report,
                         callbacks=callbacks, anchoring=anchoring)
    summary_path = out / "cross_lingual.json"
    if exists(summary_path):
        summary = read_json(summary_path)
    else:
        summary = {"anchors": anchors, "test_target": result.metrics.get("test"),
                   "test_source": evaluate_checkpoint(str(result.checkpoint_dir), cfg.pool_dir, cfg.test_split,
                                                      in_process=cfg.scaling.backend == "in_process", where=source)}
        write_json_atomic(summary_path, summary)
    result.metrics.update(summary)
    if verbose:
        print("\n" + metrics_table({f"dev ({cfg.dev_on})": result.metrics.get("dev"),
                                    f"test {cfg.target} (target)": summary["test_target"],
                                    f"test {cfg.source} (source)": summary["test_source"]}))
        print(f"best epoch {result.metrics['best_epoch']}; checkpoint {result.checkpoint_dir}; "
              f"total {time.perf_counter() - t0:.1f}s")
    return result


def _check_groups(cfg: AnchorJobConfig, pool) -> None:
    """Refuse, before Ray starts, a group column or value the pool lacks, and anchoring without trainable
    encoder weights."""
    if cfg.anchoring.weight > 0 and cfg.model.adapter.kind == "frozen" and not cfg.model.adapter.add:
        raise ConfigError("anchoring.weight > 0 needs trainable encoder weights (model.adapter.kind lora, ia3, "
                          "full, or model.adapter.add): with a frozen encoder the anchor layers cannot move")
    meta = pool.metadata(columns=[cfg.group_column, "split"])
    for key, value in (("source", cfg.source), ("target", cfg.target)):
        for split in (cfg.train_split, cfg.test_split):
            if not ((meta[cfg.group_column] == value) & (meta["split"] == split)).any():
                found = sorted(meta.loc[meta["split"] == split, cfg.group_column].dropna().unique().tolist())
                raise ConfigError(f"{key}={value!r}: split {split!r} of pool {cfg.pool_dir} has no clip with "
                                  f"{cfg.group_column}={value!r} (it has {found})")


def main(argv: list[str] | None = None) -> dict:
    cfg = resolve_encoder_names(parse_job_args(AnchorJobConfig, sys.argv[1:] if argv is None else argv, "jobs.anchor"))
    return run_anchor(cfg).metrics

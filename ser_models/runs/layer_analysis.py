"""Layer-wise analysis of a frozen encoder: a probe per layer and task, learned layer weights, layer CKA.

    python -m jobs.layer_analysis jobs/configs/layer_analysis_demo.yaml [key.sub=value ...]
    platform/submit.sh layer_analysis jobs/configs/layer_analysis_demo.yaml output_dir=/mnt/outputs/layers

The pool is encoded once into the per-layer feature cache; every probe (one Ray task per layer x task x
seed) trains the emotion head on one layer of the cached train split, picks its epoch on dev and reports test.
Outputs in ``output_dir``: ``probes.parquet``, ``layer_weights.parquet``, ``layers.md``,
``metric_vs_layer.png``, ``layer_weights.png``, and per compared group pair (languages, corpora)
``cka_<column>_<a>_vs_<b>.png`` with ``similarity.json`` / ``similarity.md`` (the suggested anchor layers).
"""


import sys
import time
from dataclasses import dataclass

import pyarrow as pa

from ser_models.analysis.features import split_features
from ser_models.analysis.layer_report import probe_layers, probe_table, similarity_by_group, write_similarity
from ser_models.analysis.plots import plot_layer_weights, plot_metric_vs_layer
from ser_models.analysis.probes import probe_tasks
from ser_models.config import LOCATION, PATH, RESULT, SPEED, field, parse_job_args, to_yaml
from ser_models.data import Pool
from ser_models.encoders import build_encoder
from ser_models.encoders.pretrained import resolve_encoder_names
from ser_models.exceptions import ConfigError
from ser_models.io import storage_path, write_bytes_atomic, write_parquet_atomic
from ser_models.models.model import ModelConfig
from ser_models.models.model_config import resolve_labels
from ser_models.ownership import check_apart, deferred_claim
from ser_models.provenance import check_run
from ser_models.runtime import connect_ray
from ser_models.scoring.cache_keys import cache_supported, feature_cache_key
from ser_models.scoring.feature_cache import FeatureCache
from ser_models.scoring.scorer import ScorerConfig
from ser_models.training.config import TrainConfig


@dataclass
class SimilarityConfig:
    group_by: list[str] = field(effect=RESULT, default_factory=lambda: ["language", "corpus"],
                                help="pool columns whose values are compared pairwise (linear CKA per layer)")
    split: str = field("train", effect=RESULT, help="pool split whose labelled clips are compared")
    clips_per_class: int = field(0, effect=RESULT, help="class-matched pairs per class in each pairing (0 = all the smaller "
                                 "side has)")
    repeats: int = field(5, effect=RESULT, help="random class-matched pairings averaged")
    top_k: int = field(2, effect=RESULT, help="anchor layers suggested (most and least similar)")


@dataclass
class LayerAnalysisJobConfig:
    pool_dir: str = field(effect=LOCATION, path=PATH, help="prepared pool folder (written by jobs.prepare_pool)")
    output_dir: str = field(effect=LOCATION, path=PATH, help="where the tables and plots go")
    model: ModelConfig = field(default_factory=ModelConfig, help="encoder (frozen, mean pooling) and the probe head")
    train: TrainConfig = field(default_factory=TrainConfig, help="how each probe trains")
    tasks: list[str] = field(effect=RESULT, default_factory=list, help="tasks probed: categorical and/or dimension names ([] = "
                             "every output of the model)")
    seeds: list[int] = field(effect=RESULT, default_factory=lambda: [0, 1, 2], help="probe seeds (the spread drawn as a band)")
    weighted_sum: bool = field(True, effect=RESULT, help="also train a learned weighted-sum head per task and seed")
    train_split: str = field("train", effect=RESULT, help="split the probes train on")
    dev_split: str = field("dev", effect=RESULT, help="split that picks each probe's epoch")
    test_split: str = field("test", effect=RESULT, help="split reported")
    max_clips_per_split: int = field(5000, effect=RESULT, help="labelled clips gathered per split at most (a seeded sample)")
    similarity: SimilarityConfig = field(default_factory=SimilarityConfig, help="layer similarity across groups")
    feature_cache_dir: str = field("", effect=LOCATION, path=PATH, help="feature cache root ('' = output_dir/feature_cache); "
                                   "share it with jobs.after runs over the same pool and encoder")
    scorer: ScorerConfig = field(default_factory=ScorerConfig, help="actor pool that builds the feature cache")
    cpus_per_probe: float = field(1.0, effect=SPEED, help="CPUs Ray reserves per probe task")

    def __post_init__(self):
        if not self.seeds:
            raise ConfigError("seeds must name at least one seed")


def main(argv: list[str] | None = None) -> dict:
    cfg = resolve_encoder_names(parse_job_args(LayerAnalysisJobConfig, sys.argv[1:] if argv is None else argv, "jobs.layer_analysis"))
    return run_layer_analysis(cfg)


#: What the job writes into its ``output_dir`` besides ``run.json`` and ``config.yaml`` (an earlier
#: version's folder holding a ``run.json`` of this job and only these names is adopted).
LAYER_ANALYSIS_LAYOUT = ('feature_cache', 'probes.parquet', 'layer_weights.parquet', 'layers.md', 'metric_vs_layer.png', 'layer_weights.png', 'similarity.parquet', 'similarity.png')


def run_layer_analysis(cfg: LayerAnalysisJobConfig, verbose: bool = True) -> dict:
    """Probe every layer on a parsed config (see :func:`_run_layer_analysis`)."""

    # Refused now, before anything is read, if the folder is not this job's or overlaps an input; claimed
    # (marked and locked) right before the job's first write, so a config error leaves no folder behind.
    inputs = {"pool_dir": cfg.pool_dir, "model.encoder.source": cfg.model.encoder.source,
              "model.encoder.checkpoint": cfg.model.encoder.checkpoint}
    if cfg.feature_cache_dir:  # a second output: never an input, inside one or around one either
        check_apart(cfg.feature_cache_dir, inputs, key="feature_cache_dir")
    with deferred_claim(cfg.output_dir, "run", job="jobs.layer_analysis", layout=LAYER_ANALYSIS_LAYOUT,
                        inputs=inputs) as claim:
        return _run_layer_analysis(cfg, verbose, claim=claim)


def _run_layer_analysis(cfg: LayerAnalysisJobConfig, verbose: bool = True, claim=lambda: None) -> dict:


    t0 = time.perf_counter()
    log = print if verbose else (lambda _: None)
    reason = cache_supported(cfg.model)
    if reason:
        raise ConfigError(f"layer analysis probes a frozen encoder's cached layers: {reason}")
    tasks = probe_tasks(cfg.model, cfg.tasks)
    pool = Pool.open(cfg.pool_dir)
    splits = {"train": cfg.train_split, "dev": cfg.dev_split, "test": cfg.test_split}
    cfg.model = resolve_labels(cfg.model, pool)
    pool.check_targets(cfg.model.targets, tuple(s for s in splits.values() if s))
    claim()  # the output folder: marked and locked before the first byte
    check_run(cfg.output_dir, "jobs.layer_analysis", cfg, inputs={"pool": pool.lineage},
              config_yaml=to_yaml(cfg))
    connect_ray()
    out = storage_path(cfg.output_dir)
    encoder = build_encoder(cfg.model.encoder)
    cache = FeatureCache(cfg.feature_cache_dir or out / "feature_cache", feature_cache_key(pool, encoder, cfg.scorer))
    cache.build(pool.dataset(), cfg.model, encoder.num_layers, cfg.scorer, verbose=verbose)
    data, metas = {}, {}
    for name, split in splits.items():
        if split:
            data[name], metas[name] = split_features(cache, pool, split, cfg.model, max_clips=cfg.max_clips_per_split)
    log("features [clips, layers, width]: " + ", ".join(f"{n} {list(d.features.shape)}" for n, d in data.items()))
    rows, weights = probe_layers(data, cfg.model, cfg.train, tasks, list(cfg.seeds), weighted_sum=cfg.weighted_sum,
                                 cpus_per_probe=cfg.cpus_per_probe, log=log)
    write_parquet_atomic(out / "probes.parquet", pa.Table.from_pandas(rows, preserve_index=False))
    write_parquet_atomic(out / "layer_weights.parquet", pa.Table.from_pandas(weights, preserve_index=False))
    report_split = "test" if "test" in data else "dev"
    table = probe_table(rows, weights, report_split)
    plot_metric_vs_layer(rows, out / "metric_vs_layer.png", report_split)
    if len(weights):
        plot_layer_weights(weights, out / "layer_weights.png")
    sim_cfg = cfg.similarity
    sim_features, sim_meta = ((data["train"], metas["train"]) if sim_cfg.split == cfg.train_split else
                              split_features(cache, pool, sim_cfg.split, cfg.model, max_clips=cfg.max_clips_per_split))
    similarity = []
    if cfg.model.labels:
        for column in sim_cfg.group_by:
            similarity += similarity_by_group(sim_features, sim_meta, column, list(cfg.model.labels), out,
                                              per_class=sim_cfg.clips_per_class, repeats=sim_cfg.repeats,
                                              top_k=sim_cfg.top_k, log=log)
    else:
        log("  similarity: skipped (class-matched CKA needs model.labels)")
    write_similarity(similarity, out)
    write_bytes_atomic(out / "layers.md", (f"# Probe per layer ({report_split})\n\n{table}").encode())
    log("\n" + table)
    log(f"layer analysis written to {out} in {time.perf_counter() - t0:.1f}s")
    return {"probes": rows, "weights": weights, "similarity": similarity}

"""What ``python -m jobs.predict`` runs: a trained checkpoint applied to a prepared pool or a raw manifest.

The input's Parquet files are grouped into shards of about ``shard_rows`` clips (the plan is stored with the
run); each shard is scored on a Ray Data actor pool and written as one Parquet file, atomically, so a rerun
skips finished shards and a kill loses at most the shard in flight. Nothing holds the pool: the driver holds
one shard's predictions at a time.

    output_dir/
      pool/                         the manifest, prepared on the fly (manifest input only)
      plan.json                     shards: which input files each one reads (fixed at the first run)
      feature_cache/, speaker_stats.safetensors [, functionals_speaker_stats.safetensors]
                                    a model.feature_norm=speaker checkpoint with speaker_stats=input: the
                                    input's per-layer means (and eGeMAPS functionals, with model.functionals),
                                    and its speakers' statistics of each (the pass before)
      predictions/part-00000.parquet utt_id, predicted, confidence, probs [C], <dimensions>, embedding [E]
      summary.json                  clips, counts per class, mean confidence, seconds (written last)

Writes ``output_dir/predictions/part-*.parquet`` (utt_id, predicted class, confidence, probabilities, A/V/D
when the model has them, optional embedding) and ``summary.json`` (clips per class). Rerunning with the
same ``output_dir`` skips the shards already written.
"""

# No `from __future__ import annotations`: OmegaConf resolves these annotations at run time.
import dataclasses
import sys
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ser_models.config import LOCATION, PATH, PATH_OR_NAME, RESULT, SPEED, field, parse_job_args, to_yaml
from ser_models.data.config import PoolConfig
from ser_models.data.speakers import fill_speaker_keys, speaker_sources
from ser_models.encoders import build_encoder
from ser_models.encoders.content_hash import ALL_FILES, hash_files
from ser_models.encoders.functionals import FUNCTIONALS_SPEAKER_STATS_FILE, reads_functionals
from ser_models.encoders.pretrained import resolve_encoder_names
from ser_models.exceptions import CheckpointError, ConfigError
from ser_models.failpoints import failpoint
from ser_models.io import (
    complete_dir,
    exists,
    filesystem,
    list_dir,
    parquet_problem,
    read_json,
    read_parquet,
    storage_path,
    write_json_atomic,
    write_parquet_atomic,
)
from ser_models.names import safe_child
from ser_models.ownership import deferred_claim
from ser_models.provenance import check_run
from ser_models.runtime import connect_ray
from ser_models.scoring.cache_keys import cache_states, feature_cache_key
from ser_models.scoring.feature_cache import FeatureCache
from ser_models.scoring.predictions import prediction_table
from ser_models.scoring.scorer import PoolScorer, ScorerConfig, run_on_actor_pool

PLAN_FILE = "plan.json"
SUMMARY_FILE = "summary.json"
PREDICTIONS_DIR = "predictions"


@dataclass
class PredictJobConfig:
    checkpoint: str = field(effect=RESULT, path=PATH, help="a model checkpoint folder (model.json), or a run that holds one: a jobs.finetune "
                            "output (checkpoint/), an AL run (its last round's train/checkpoint), a sweep trial")
    output_dir: str = field(effect=LOCATION, path=PATH, help="where predictions/, plan.json and summary.json go (rerun to "
                            "resume)")
    encoder_source: str = field("", effect=LOCATION, path=PATH_OR_NAME,
                                help="where the checkpoint's encoder lives now, when it moved without keeping its "
                                     "place relative to the checkpoint ('' = the places model.json records; the "
                                     "encoder's fingerprint is checked either way)")
    pool_dir: str = field("", effect=LOCATION, path=PATH, help="a prepared pool to predict (or set manifest)")
    manifest: str = field("", effect=RESULT, path=PATH, help="a raw manifest (CSV / Parquet / JSONL) prepared on the fly into output_dir/pool "
                          "with jobs/configs/prepare_pool_demo.yaml's settings (or set pool_dir)")
    recordings: str = field("", effect=RESULT, path=PATH, help="a recordings manifest of long files (or set pool_dir / manifest): "
                            "segmented into output_dir/segments, prepared, predicted, and laid out as "
                            "timeline.parquet with a timeline plot")
    segment_preset: str = field("turns", effect=RESULT, help="recordings: the segmentation preset (see jobs.segment)")
    channels: str = field("split", effect=RESULT, help="recordings: 'split' (one stream per channel), 'mix' or a channel number")
    timeline_plot: str = field("", effect=RESULT, help="recordings: the recording whose timeline is drawn (default: the first)")
    split: str = field("all", effect=RESULT, help="pool split to predict: all | train | dev | test")
    shard_rows: int = field(4096, effect=SPEED, help="clips per output shard (a kill loses at most one shard's work)")
    embedding: bool = field(False, effect=RESULT, help="also write the head's embedding [E] per clip")
    scorer: ScorerConfig = field(default_factory=ScorerConfig, help="Ray Data actors: count, CPUs, GPUs, batch sizes")
    speaker_stats: str = field("input", effect=RESULT, path=PATH_OR_NAME,
                               help="checkpoints with model.feature_norm=speaker: input = each speaker's statistics "
                                    "over this input's clips (an encoder pass before predicting); checkpoint = "
                                    "those of the pool it was trained on (unknown speakers use its pool "
                                    "statistics); or a speaker_stats.safetensors file (the encoder's features; the "
                                    "functionals' then come from the checkpoint)")
    backend: str = field("ray", effect=SPEED,
                         help="ray: Ray Data actors (scorer.*; a cluster, several GPUs); in_process: one model in "
                              "this process reading the shards' Parquet files batch by batch, no Ray (one machine: "
                              "no start-up, and the model gets every core; scorer.threads, batch sizes still apply). "
                              "ray stays the default although in_process measured faster on one machine "
                              "(BENCHMARKS.md, batch inference): jobs are submitted to clusters, where in_process "
                              "would score the whole input on the driver's node alone")

    def __post_init__(self):
        if self.backend not in ("ray", "in_process"):
            raise ConfigError(f"backend must be ray or in_process, got {self.backend!r}")
        if sum(map(bool, (self.pool_dir, self.manifest, self.recordings))) != 1:
            raise ConfigError("set exactly one of pool_dir (a prepared pool), manifest (prepared on the fly) and "
                              "recordings (long files: segmented, prepared, predicted as a timeline)")
        if self.shard_rows < 1:
            raise ConfigError(f"shard_rows must be >= 1, got {self.shard_rows}")
        if self.split not in ("all", "train", "dev", "test"):
            raise ConfigError(f"split must be all, train, dev or test, got {self.split!r}")


def resolve_checkpoint(path: str) -> str:
    """The model folder ``path`` names: itself, its ``checkpoint/``, or an AL run's last round's checkpoint.

    Raises:
        CheckpointError: none of those holds a ``model.json``, naming what was tried.
    """

    base = str(path).rstrip("/")
    tried = [base, f"{base}/checkpoint"]
    for candidate in tried:
        if exists(f"{candidate}/model.json"):
            return candidate
    if exists(f"{base}/rounds"):
        rounds = sorted(n for n in list_dir(f"{base}/rounds") if n.startswith("round="))
        for name in reversed(rounds):
            candidate = f"{base}/rounds/{name}/train/checkpoint"
            tried.append(candidate)
            if exists(f"{candidate}/model.json"):
                return candidate
    raise CheckpointError(f"checkpoint={path!r}: no model.json in " + ", ".join(tried))


def checkpoint_identity(checkpoint: str) -> str:
    """What a rerun's resume check knows the checkpoint by: its files by content (``model.json``, the weights,
    speaker statistics: every file at the top of the folder but hidden ones), never its path. A checkpoint moved
    elsewhere keeps its identity; new weights saved into the same folder change it, and the rerun is refused.

    Hashed without the sidecar cache (the folder belongs to the run that trained it); predict reads it whole
    anyway.
    """

    folder = complete_dir(checkpoint, "model.json") or checkpoint  # the version load_checkpoint reads
    return "sha256:" + hash_files(folder, ALL_FILES, cache=False)


def plan_shards(pool, split: str, shard_rows: int) -> list[list[str]]:
    """Group the pool's Parquet files (of ``split``, or all) into shards of about ``shard_rows`` clips, in a
    fixed order (file names sorted): ``[[file, ...], ...]`` as full paths on the pool's filesystem."""


    fs, _ = filesystem(pool.data_dir)
    files = pool.files(None if split == "all" else split)
    shards, current, rows = [], [], 0
    for path in files:
        with fs.open_input_file(path) as fh:
            n = pq.ParquetFile(fh).metadata.num_rows
        current.append(path)
        rows += n
        if rows >= shard_rows:
            shards.append(current)
            current, rows = [], 0
    if current:
        shards.append(current)
    return shards


def _score_files(files: list[str], fs, scorer, batch_size: int, columns: list[str]):
    """``backend=in_process``: ``scorer``'s output batches over ``files``, read ``batch_size`` rows at a time
    (one batch of audio in memory)."""


    read = columns + [c for c in speaker_sources(columns) if c not in columns]
    for path in files:
        with fs.open_input_file(path) as fh:
            for rb in pq.ParquetFile(fh).iter_batches(batch_size=batch_size, columns=read):
                if rb.num_rows:
                    table = fill_speaker_keys(pa.Table.from_batches([rb]))  # as the pool's readers give it
                    yield scorer({c: table.column(c).to_numpy(zero_copy_only=False) for c in columns})


def _speaker_statistics(cfg: PredictJobConfig, pool, checkpoint: str, model_cfg, out, say) -> tuple[dict, dict]:
    """The speaker statistics a ``model.feature_norm=speaker`` checkpoint predicts with, and what they cover.

    ``speaker_stats=input``: each clip's per-layer means are encoded once into ``output_dir/feature_cache``
    (resumable, like the AL loop's cache), and each speaker's statistics over this input's clips are written
    to ``output_dir/speaker_stats.safetensors``. ``checkpoint``: the training pool's, stored with the weights.
    A path: that file. Clips without a speaker, or whose speaker the statistics do not hold, use the
    statistics' pool part; their count is reported.

    Returns:
        ``(scorer arguments, info)``: ``speaker_stats`` (and, with ``model.functionals``,
        ``functionals_speaker_stats``) files, and ``{"statistics", "speakers", "fallback_clips", "clips"}``.
    """
    from ser_models.encoders.speaker_norm import SpeakerStatistics
    from ser_models.models.model import SPEAKER_STATS_FILE

    split = None if cfg.split == "all" else cfg.split
    meta = pool.metadata(columns=["utt_id", "speaker"], split=split)  # speaker_key: a segment's stream if none
    pool.log_stream_speakers(say, split)
    functionals = reads_functionals(model_cfg)
    if cfg.speaker_stats == "input":
        path, fpath = out / SPEAKER_STATS_FILE, out / FUNCTIONALS_SPEAKER_STATS_FILE
        if not exists(path) or (functionals and not exists(fpath)):
            encoder = build_encoder(model_cfg.encoder)
            cache = FeatureCache(out / "feature_cache", feature_cache_key(pool, encoder, cfg.scorer), kind="pooled",
                                 states=cache_states(model_cfg, encoder), functionals="egemaps" if functionals else None)
            t0 = time.perf_counter()
            cache.build(pool.dataset(split), model_cfg, encoder.num_layers, cfg.scorer, verbose=False,
                        in_process=cfg.backend == "in_process", total=len(meta))
            cache.attach(pa.Table.from_pandas(meta[["utt_id", "speaker"]], preserve_index=False))
            if functionals:  # first: the features' file marks both done
                cache.speaker_statistics(model_cfg.speaker_shrinkage, "functionals")[0].save(fpath)
            stats, _ = cache.speaker_statistics(model_cfg.speaker_shrinkage)
            stats.save(path)
            say(f"speaker statistics over this input: {len(stats.speakers)} speakers, {len(meta)} clips "
                f"({time.perf_counter() - t0:.1f}s, an encoder pass before predicting) -> {path}")
    else:
        fpath = f"{checkpoint}/{FUNCTIONALS_SPEAKER_STATS_FILE}"
        path = f"{checkpoint}/{SPEAKER_STATS_FILE}" if cfg.speaker_stats == "checkpoint" else cfg.speaker_stats
        for p in ([path] if cfg.speaker_stats == "checkpoint" else []) + ([fpath] if functionals else []):
            if not exists(p):
                raise CheckpointError(f"speaker_stats={cfg.speaker_stats} but {p} does not exist: the checkpoint "
                                      "carries no speaker statistics; use speaker_stats=input")
    stats = SpeakerStatistics.load(path)
    fallback = int((stats.index(meta["speaker"].tolist()) < 0).sum())
    info = {"statistics": cfg.speaker_stats, "speakers": len(stats.speakers), "clips": len(meta),
            "fallback_clips": fallback}
    say(f"speaker normalisation ({cfg.speaker_stats}): {fallback} of {len(meta)} clips have no speaker the "
        "statistics know and use their pool statistics")
    return {"speaker_stats": str(path), **({"functionals_speaker_stats": str(fpath)} if functionals else {})}, info


def _segment_recordings(cfg: PredictJobConfig, out, say) -> str:
    """``recordings=``: segment them into ``output_dir/segments`` (resumable); the segments manifest's path."""
    from ser_models.segment import SegmentConfig, segment_archive

    seg_cfg = SegmentConfig(recordings=cfg.recordings, output_dir=str(out / "segments"), preset=cfg.segment_preset,
                            channels=cfg.channels, num_workers=cfg.scorer.num_actors)
    summary = segment_archive(seg_cfg, verbose=False)
    say(f"segmented {cfg.recordings}: {summary.segments} segments from {summary.segmented} / "
        f"{summary.recordings} recordings")
    return str(out / "segments" / "segments.parquet")


def _write_timeline(cfg: PredictJobConfig, out, n_shards: int, labels: list[str], say) -> dict:
    """``timeline.parquet`` (every segment's prediction on its recording's time axis) and one plot."""
    import pandas as pd

    from ser_models.segment.timeline import TIMELINE_KEYS, build_timeline, plot_timeline

    segments = read_parquet(out / "segments" / "segments.parquet", columns=["utt_id", *TIMELINE_KEYS]).to_pandas()
    preds = pd.concat([read_parquet(out / PREDICTIONS_DIR / f"part-{k:05d}.parquet").to_pandas()
                       for k in range(n_shards)], ignore_index=True)
    timeline = build_timeline(preds, segments)
    write_parquet_atomic(out / "timeline.parquet", pa.Table.from_pandas(timeline, preserve_index=False))
    recording = cfg.timeline_plot or (str(timeline["recording"].iloc[0]) if len(timeline) else "")
    plot = None
    if recording and labels:
        if recording not in set(timeline["recording"]):
            raise ConfigError(f"timeline_plot={recording!r}: no predicted segment of that recording")

        plot = safe_child(out, f"timeline_{recording}.png")  # a recording id from data names this file
        plot_timeline(timeline, recording, labels, plot)
    say(f"timeline: {len(timeline)} segments of {timeline['recording'].nunique()} recordings -> "
        f"{out / 'timeline.parquet'}" + (f"; plot {plot}" if plot else ""))
    return {"segments": len(timeline), "recordings": int(timeline["recording"].nunique()), "plot": plot}


#: What the job writes into its ``output_dir`` besides ``run.json`` and ``config.yaml`` (an earlier
#: version's folder holding a ``run.json`` of this job and only these names is adopted).
PREDICT_LAYOUT = ('predictions', 'plan.json', 'summary.json', 'pool', 'segments', 'feature_cache', 'timeline.parquet', 'speaker_stats.safetensors', 'predictions.parquet')


def run_predict(cfg: PredictJobConfig, *, verbose: bool = True) -> dict:
    """The job's work on a parsed config; returns the summary (see :func:`_run_predict`)."""

    # Refused now, before anything is read, if the folder is not this job's or overlaps an input; claimed
    # (marked and locked) right before the job's first write, so a config error leaves no folder behind.
    # speaker_stats names a file the job reads unless it is one of the two words
    stats = cfg.speaker_stats if cfg.speaker_stats not in ("input", "checkpoint") else None
    inputs = {"pool_dir": cfg.pool_dir, "checkpoint": cfg.checkpoint, "manifest": cfg.manifest,
              "recordings": cfg.recordings, "encoder_source": cfg.encoder_source, "speaker_stats": stats}
    with deferred_claim(cfg.output_dir, "run", job="jobs.predict", layout=PREDICT_LAYOUT, inputs=inputs) as claim:
        return _run_predict(cfg, verbose=verbose, claim=claim)


def _run_predict(cfg: PredictJobConfig, *, verbose: bool = True, claim=lambda: None) -> dict:
    """The job's work on a parsed config; returns the summary.

    Raises:
        CheckpointError: the checkpoint cannot be found or loaded.
        ConfigError / PoolError: a bad input; a rerun whose plan no longer matches the pool.
    """
    from ser_models.data import Pool
    from ser_models.models.model import EmotionModel

    say = print if verbose else (lambda *_: None)
    t0 = time.perf_counter()
    out = storage_path(cfg.output_dir)
    checkpoint = resolve_checkpoint(cfg.checkpoint)
    encoder_source = cfg.encoder_source or None
    # Fails here, before Ray, on a bad checkpoint or an encoder found nowhere.
    model = EmotionModel.load_checkpoint(checkpoint, encoder_source=encoder_source)
    labels, dimensions = list(model.cfg.labels), list(model.cfg.dimensions)
    if model.cfg.text.enabled:
        raise ConfigError("jobs.predict reads audio only; this checkpoint has a text branch (model.text)")
    model_cfg = model.cfg
    # Audio, with each clip's speaker for a model that standardises per speaker: the fitted one (an auto model
    # reads speakers only when its fit chose them).
    inputs = dataclasses.replace(model_cfg.inputs(), speakers=model.norm == "speaker")
    del model
    claim()  # the output folder: marked and locked before the first byte
    if cfg.backend == "ray" or cfg.manifest or cfg.recordings:  # segmenting and preparing run on Ray Data
        connect_ray()
    manifest = cfg.manifest
    if cfg.recordings:
        manifest = _segment_recordings(cfg, out, say)
    if manifest:
        from ser_models.data.prepare import pool_fingerprint, prepare_pool

        # The pool's defaults (16 kHz mono, validation, quarantine), with the checkpoint's class names so that
        # a labelled manifest keeps its labels; a re-run finds the pool up to date and reuses it.
        pool_cfg = PoolConfig(manifest=manifest, output_dir=str(out / "pool"),
                              **({"labels": labels} if labels else {}))
        summary = prepare_pool(pool_cfg, pool_fingerprint(pool_cfg))
        say(f"prepared {manifest}: kept {summary.kept} / {summary.clips_in} clips, quarantined "
            f"{summary.quarantined} (see {out / 'pool'}/quarantine.parquet)")
        pool_dir = str(out / "pool")
    else:
        pool_dir = cfg.pool_dir
    pool = Pool.open(pool_dir)
    check_run(cfg.output_dir, "jobs.predict", cfg, inputs={"pool": pool.lineage,
                                                           "checkpoint": checkpoint_identity(checkpoint)},
              config_yaml=to_yaml(cfg))
    plan_path = out / PLAN_FILE
    if exists(plan_path):
        plan = read_json(plan_path)
        if plan["pool"] != pool.summary.get("fingerprint"):
            # A grown or relabelled pool rewrites files the plan names: predictions of its new version are a
            # new run (the finished shards stay where they are).
            raise ConfigError(f"{plan_path} was planned on another version of the pool (it grew, changed labels "
                              f"or was rebuilt since; now version {pool.version}): use a new output_dir")
        shards = plan["shards"]
    else:
        shards = plan_shards(pool, cfg.split, cfg.shard_rows)
        write_json_atomic(plan_path, {"pool": pool.summary.get("fingerprint"), "shards": shards,
                                      "checkpoint": checkpoint})

    fs, _ = filesystem(pool.data_dir)
    columns, speaker_info = inputs.columns(), None
    kwargs = dict(checkpoint_dir=checkpoint, model_cfg=None, inputs=inputs, mc_samples=0,
                  micro_batch_size=cfg.scorer.micro_batch_size, max_seconds=cfg.scorer.max_seconds,
                  threads=cfg.scorer.torch_threads(), seed=0, encoder_source=encoder_source,
                  num_gpus=cfg.scorer.num_gpus, precision=cfg.scorer.precision, allow_tf32=cfg.scorer.allow_tf32)
    if inputs.speakers:
        stats_paths, speaker_info = _speaker_statistics(cfg, pool, checkpoint, model_cfg, out, say)
        kwargs.update(stats_paths)
    local_scorer = None
    # A shard counts as finished only when its file reads back whole (footer and extents), never on existence.
    finished = {k for k in range(len(shards))
                if parquet_problem(out / PREDICTIONS_DIR / f"part-{k:05d}.parquet") is None}
    done = len(finished)
    say(f"predicting {pool_dir} ({cfg.split}) with {checkpoint}: {len(shards)} shards"
        + (f", {done} already finished (skipped)" if done else ""))
    for k, files in enumerate(shards):
        part = out / PREDICTIONS_DIR / f"part-{k:05d}.parquet"
        if k in finished:
            continue
        if exists(part):
            say(f"  shard {k + 1}: {part} is incomplete ({parquet_problem(part)}); predicting it again")
        t1 = time.perf_counter()
        if cfg.backend == "in_process":
            local_scorer = local_scorer or PoolScorer(**kwargs)
            batches = list(_score_files(files, fs, local_scorer, cfg.scorer.batch_size, columns))
        else:
            ds = pool.dataset(columns=columns, files=files)
            batches = [b for b in run_on_actor_pool(ds, PoolScorer, kwargs, cfg.scorer) if len(b["utt_id"])]
        table = prediction_table(batches, labels, dimensions, cfg.embedding) if batches else None
        if table is None:
            raise ConfigError(f"shard {k} ({files[0]}, ...) holds no clips")
        write_parquet_atomic(part, table)  # the shard is finished once this file exists
        secs = time.perf_counter() - t1
        say(f"  shard {k + 1}/{len(shards)}: {table.num_rows} clips in {secs:.1f}s "
            f"({table.num_rows / max(secs, 1e-9):.1f} clips/s) -> {part}")
        failpoint("predict_after_shard")
    counts: dict[str, int] = {name: 0 for name in labels}
    clips, confidence = 0, 0.0
    for k in range(len(shards)):  # one shard's labels at a time
        t = read_parquet(out / PREDICTIONS_DIR / f"part-{k:05d}.parquet",
                         columns=["utt_id", *(["predicted", "confidence"] if labels else [])])
        clips += t.num_rows
        if labels:
            for name, n in zip(*np.unique(np.asarray(t.column("predicted").to_pylist()), return_counts=True)):
                counts[str(name)] += int(n)
            confidence += float(np.sum(t.column("confidence").to_numpy()))
    summary = {"clips": clips, "shards": len(shards), "checkpoint": checkpoint, "pool": pool_dir,
               "split": cfg.split, "labels": labels, "dimensions": dimensions,
               "per_class": counts if labels else None,
               "mean_confidence": confidence / clips if labels and clips else None,
               "speaker_norm": speaker_info, "seconds": time.perf_counter() - t0}
    if cfg.recordings:
        summary["timeline"] = _write_timeline(cfg, out, len(shards), labels, say)
    write_json_atomic(out / SUMMARY_FILE, summary)  # last: marks the run finished
    if verbose and labels:
        say("predicted per class: " + ", ".join(f"{n} {c}" for n, c in counts.items())
            + f"; mean confidence {summary['mean_confidence']:.3f}")
    say(f"{clips} clips in {summary['seconds']:.1f}s -> {out / PREDICTIONS_DIR}")
    return summary


def main(argv: list[str] | None = None) -> dict:
    cfg = resolve_encoder_names(parse_job_args(PredictJobConfig, sys.argv[1:] if argv is None else argv, "jobs.predict"))
    return run_predict(cfg)

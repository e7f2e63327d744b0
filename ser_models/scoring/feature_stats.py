"""Per-run feature statistics from the frozen-encoder feature cache, computed once and read by every model the
run builds: the pool's (``model.feature_norm=pool|auto``) and each speaker's (``speaker|auto``), of the
encoder's features and, with ``model.functionals``, of the eGeMAPS functionals (each block standardised on its
own). No label is read: every clip counts, labelled or not."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from ser_models.io import StoragePath, exists

#: The statistics files of each cached column, in a run's folder: (pool, per speaker).
STATISTICS_FILES = {"features": ("feature_stats.safetensors", "speaker_stats.safetensors"),
                    "functionals": ("functionals_stats.safetensors", "functionals_speaker_stats.safetensors")}


def write_run_statistics(cache, pool, out: StoragePath, train_ids: list[str], num_layers: int, model_cfg,
                         log: Callable[[str], None] = print, only_missing: bool = False):
    """Every statistic ``model_cfg`` standardises with, written once into ``out`` (a resumed run reads them
    again) and set in the returned config: the pool's and the speakers' of the encoder's features
    (``model.feature_norm``) and of the functionals (``model.functionals``: the pool's always, the speakers'
    under ``feature_norm=speaker | auto``). ``only_missing``: a file the config already names is kept
    (``jobs.finetune`` takes given statistics).

    Returns:
        ``(model_cfg with feature_stats / speaker_stats / functionals_stats / functionals_speaker_stats set,
        the speaker summary or None)``.
    """
    from ser_models.encoders.functionals import reads_functionals
    from ser_models.models.model import reads_speakers

    def wanted(key: str) -> bool:
        return not (only_missing and getattr(model_cfg, key))

    updates, summary = {}, None
    if model_cfg.feature_norm in ("pool", "auto") and wanted("feature_stats"):
        updates["feature_stats"] = str(write_pool_statistics(cache, out, train_ids, num_layers, log))
    if reads_speakers(model_cfg) and (wanted("speaker_stats") or wanted("functionals_speaker_stats")):
        pool.log_stream_speakers(log)  # segments without a speaker: each stream is one
    if reads_speakers(model_cfg) and wanted("speaker_stats"):
        path, summary = write_speaker_statistics(cache, pool, out, model_cfg.speaker_shrinkage, log)
        updates["speaker_stats"] = str(path)
    if reads_functionals(model_cfg):
        if wanted("functionals_stats"):
            updates["functionals_stats"] = str(write_pool_statistics(cache, out, train_ids, 1, log, "functionals"))
        if reads_speakers(model_cfg) and wanted("functionals_speaker_stats"):
            path, _ = write_speaker_statistics(cache, pool, out, model_cfg.speaker_shrinkage, log, "functionals")
            updates["functionals_speaker_stats"] = str(path)
    return dataclasses.replace(model_cfg, **updates), summary


def write_pool_statistics(cache, out: StoragePath, train_ids: list[str], num_layers: int,
                          log: Callable[[str], None] = print, column: str = "features") -> StoragePath:
    """Mean and std of every cached feature over the training split's clips, in ``feature_stats.safetensors``.

    Args:
        cache: the run's :class:`~ser_models.scoring.feature_cache.FeatureCache` (built).
        out: the run folder.
        train_ids: the training split's clips.
        num_layers: the encoder's hidden states; a cache of the first states is padded to this many.
        column: ``features``, or ``functionals`` (``[1, 88]``, in ``functionals_stats.safetensors``).

    Returns:
        The statistics file (kept: a resumed run reads it again).
    """
    from ser_models.encoders.standardizer import save_statistics

    path = out / STATISTICS_FILES[column][0]
    if not exists(path):
        t0 = time.perf_counter()
        mean, std, clips = cache.statistics(train_ids, column)
        if len(mean) < num_layers:  # a cache of the first states: the model's layer is among them
            pad = num_layers - len(mean)
            mean = np.concatenate([mean, np.zeros((pad, mean.shape[1]))])
            std = np.concatenate([std, np.ones((pad, std.shape[1]))])
        save_statistics(path, mean, std, clips)
        log(f"  pool statistics: mean and std of {clips} training clips' {column} in "
            f"{time.perf_counter() - t0:.1f}s -> {path}")
    return path


def write_speaker_statistics(cache, pool, out: StoragePath, shrinkage: float,
                             log: Callable[[str], None] = print, column: str = "features") -> tuple[StoragePath, dict]:
    """Each speaker's feature statistics, shrunk toward the pool's, in ``speaker_stats.safetensors``.

    The pool's ``speaker`` column is joined into every cached row the run reads (models standardise each clip
    by its speaker); the statistics cover all of a speaker's clips in the pool, every split. A segment without
    a speaker counts as its stream's (:func:`~ser_models.data.speakers.speaker_key`: the pool gives it so).

    Args:
        cache: the run's feature cache (built).
        pool: the opened pool.
        out: the run folder.
        shrinkage: ``model.speaker_shrinkage`` (clips of pool weight).
        column: ``features``, or ``functionals`` (in ``functionals_speaker_stats.safetensors``).

    Returns:
        ``(the statistics file, its summary: speakers, clips per speaker, shrinkage)``.
    """
    from ser_models.encoders.speaker_norm import SpeakerStatistics

    speakers = pool.metadata(columns=["utt_id", "speaker"])
    cache.attach(pa.Table.from_pandas(speakers, preserve_index=False))
    path = out / STATISTICS_FILES[column][1]
    if not exists(path):
        t0 = time.perf_counter()
        stats, without = cache.speaker_statistics(shrinkage, column)
        stats.save(path)
        info = stats.summary()
        log(f"  speaker statistics of the {column}: {info['speakers']} speakers ({info['clips_min']}-{info['clips_max']} "
            f"clips each, shrunk toward the pool with k={info['shrink_clips']:g}); {without} clips without "
            f"a speaker use the pool's, in {time.perf_counter() - t0:.1f}s -> {path}")
    else:
        stats = SpeakerStatistics.load(path)
    return path, stats.summary()

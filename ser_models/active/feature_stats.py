"""Per-run feature statistics from the frozen-encoder feature cache, computed once and read by every model the
run builds: the pool's (``model.feature_norm=pool|auto``) and each speaker's (``speaker|auto``). No label is
read: every clip counts, labelled or not."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from ser_models.io import StoragePath, exists


def write_pool_statistics(cache, out: StoragePath, train_ids: list[str], num_layers: int,
                          log: Callable[[str], None] = print) -> StoragePath:
    """Mean and std of every cached feature over the training split's clips, in ``feature_stats.safetensors``.

    Args:
        cache: the run's :class:`~ser_models.active.feature_cache.FeatureCache` (built).
        out: the run folder.
        train_ids: the training split's clips.
        num_layers: the encoder's hidden states; a cache of the first states is padded to this many.

    Returns:
        The statistics file (kept: a resumed run reads it again).
    """
    from ser_models.encoders.standardizer import save_statistics

    path = out / "feature_stats.safetensors"
    if not exists(path):
        t0 = time.perf_counter()
        mean, std, clips = cache.statistics(train_ids)
        if len(mean) < num_layers:  # a cache of the first states: the model's layer is among them
            pad = num_layers - len(mean)
            mean = np.concatenate([mean, np.zeros((pad, mean.shape[1]))])
            std = np.concatenate([std, np.ones((pad, std.shape[1]))])
        save_statistics(path, mean, std, clips)
        log(f"  pool statistics: mean and std of {clips} training clips' features in "
            f"{time.perf_counter() - t0:.1f}s -> {path}")
    return path


def write_speaker_statistics(cache, pool, out: StoragePath, shrinkage: float,
                             log: Callable[[str], None] = print) -> tuple[StoragePath, dict]:
    """Each speaker's feature statistics, shrunk toward the pool's, in ``speaker_stats.safetensors``.

    The pool's ``speaker`` column is joined into every cached row the run reads (models standardise each clip
    by its speaker); the statistics cover all of a speaker's clips in the pool, every split.

    Args:
        cache: the run's feature cache (built).
        pool: the opened pool.
        out: the run folder.
        shrinkage: ``model.speaker_shrinkage`` (clips of pool weight).

    Returns:
        ``(the statistics file, its summary: speakers, clips per speaker, shrinkage)``.
    """
    from ser_models.encoders.speaker_norm import SpeakerStatistics

    speakers = pool.metadata(columns=["utt_id", "speaker"])
    cache.attach(pa.Table.from_pandas(speakers, preserve_index=False))
    path = out / "speaker_stats.safetensors"
    if not exists(path):
        t0 = time.perf_counter()
        stats, without = cache.speaker_statistics(shrinkage)
        stats.save(path)
        info = stats.summary()
        log(f"  speaker statistics: {info['speakers']} speakers ({info['clips_min']}-{info['clips_max']} "
            f"clips each, shrunk toward the pool with k={info['shrink_clips']:g}); {without} clips without "
            f"a speaker use the pool's, in {time.perf_counter() - t0:.1f}s -> {path}")
    else:
        stats = SpeakerStatistics.load(path)
    return path, stats.summary()

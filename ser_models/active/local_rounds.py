"""Rounds without Ray: what a run's rounds need Ray for, and the feature cache they read in this process.

A round that trains a head on cached features and scores the pool from the same cache does all its work in
the driver already (``scaling.backend=in_process``, the in-process scorer): Ray only carries its reads. Such a
run can skip Ray altogether (``runtime.ray``), reading the cache file by file with pyarrow
(:class:`~ser_models.data.local_rows.LocalRows`): the same rows in the same order, the same model code, so
the same scores, picks and files. What only Ray does is listed by :func:`rounds_need_ray`.
"""

from __future__ import annotations

from ser_models.encoders.functionals import reads_functionals
from ser_models.exceptions import ConfigError
from ser_models.models.encoder_reuse import base_encoder
from ser_models.scoring.cache_keys import cache_kind, cache_states, cache_supported, feature_cache_key
from ser_models.scoring.feature_cache import FeatureCache

__all__ = ["check_cache_whole", "open_run_cache", "rounds_need_ray"]


def open_run_cache(pool, model_cfg, active, out, cross_lingual: bool, local: bool = False):
    """The run's frozen-encoder feature cache, or None when the rounds read audio.

    Args:
        pool: the opened pool.
        model_cfg: the run's ``ModelConfig``.
        active: the run's ``ActiveConfig`` (``feature_cache``, its folder, the scorer).
        out: the run folder (the cache's default home is ``out/feature_cache``).
        cross_lingual: the run trains on a source group's audio (no cache).
        local: readers get rows read in this process, never a Ray Dataset.

    Returns:
        ``(cache or None, the encoder's hidden-state count or None)``.

    Raises:
        ConfigError: ``active.feature_cache=on`` for a model the cache cannot serve, naming why.
    """
    mode = active.feature_cache
    reason = cache_supported(model_cfg) or (
        "cross_lingual trains on the source group's audio next to the ledger's" if cross_lingual else None)
    if mode == "off" or (mode == "auto" and reason):
        return None, None
    if reason:
        raise ConfigError(f"active.feature_cache=on but {reason}")
    encoder = base_encoder(model_cfg.encoder)
    cache = FeatureCache(active.feature_cache_dir or out / "feature_cache",
                         feature_cache_key(pool, encoder, active.scorer), kind=cache_kind(model_cfg),
                         states=cache_states(model_cfg, encoder, active.feature_cache_layers),
                         functionals="egemaps" if reads_functionals(model_cfg) else None, local=local)
    return cache, encoder.num_layers


def rounds_need_ray(pool, cache, scaling, most_training_rows: int) -> list[str]:
    """Why a run's rounds need Ray: each reason names what only Ray does and the keys behind it (empty: every
    round can run in this process).

    Args:
        pool: the opened pool.
        cache: the run's feature cache (:func:`open_run_cache`), or None.
        scaling: the run's ``ScalingConfig``.
        most_training_rows: the most clips one round may train on (the budget's last target in clips, else the
            training clips).
    """
    needs = []
    if scaling.backend != "in_process":
        needs.append("scaling.backend=ray_train fits on Ray Train workers")
    if cache is None:
        needs.append("the rounds read the pool's audio through Ray Data (no frozen-encoder feature cache: "
                     "active.feature_cache, model.adapter.kind)")
    else:
        missing = cache.missing_clips(pool)
        if missing:
            needs.append(f"{missing} clips of the pool are not in the feature cache {cache.dir} yet: encoding them "
                         "runs on Ray Data")
    if most_training_rows > scaling.stream_above_clips:
        needs.append(f"up to {most_training_rows} training clips a round, above scaling.stream_above_clips="
                     f"{scaling.stream_above_clips}: the fit streams them from Ray Data")
    return needs


def check_cache_whole(cache, pool) -> None:
    """Refuse a round without Ray when the cache lacks clips of the pool (it grew since the run decided).

    Raises:
        ConfigError: naming the clips, the cache and ``runtime.ray``.
    """
    missing = cache.missing_clips(pool)
    if missing:
        raise ConfigError(f"{missing} clips of pool {pool.root} are not in the feature cache {cache.dir} (the pool "
                          "grew), and this run does not start Ray (runtime.ray), which encodes them: rerun the "
                          "same command with runtime.ray=auto or runtime.ray=on")

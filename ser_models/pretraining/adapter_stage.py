"""The adapter pre-training stage shared by ``jobs.adapter_pretrain``, ``jobs.after`` and ``jobs.finetune``:
build (or reuse) the pool's frame cache, pre-train the WAP-Transformer on the training split's frames, and
point ``model.wap.checkpoint`` at the result."""

from __future__ import annotations

import dataclasses
import time

from ser_models.exceptions import ConfigError
from ser_models.scoring.cache_keys import cache_supported, feature_cache_key
from ser_models.scoring.feature_cache import FeatureCache


def frame_cache(pool, model_cfg, cache_dir: str, scorer_cfg=None, *, in_process: bool = False, verbose: bool = True):
    """The pool's frame cache under ``model_cfg.encoder``, built over every split when missing.

    Args:
        pool: the prepared :class:`~ser_models.data.Pool`.
        model_cfg: the model (its encoder must be frozen: ``model.adapter.kind=frozen``, no ``add``).
        cache_dir: the cache root (shared with the AL loop's ``active.feature_cache_dir``).
        scorer_cfg: actor-pool settings of the build (``ScorerConfig``; None = its defaults).

    Returns:
        A ready ``FeatureCache(kind="frames")``.
    """
    from ser_models.adapters import AdapterConfig
    from ser_models.encoders import build_encoder

    reason = cache_supported(model_cfg)
    if reason:
        raise ConfigError(f"the adapter trains on the frozen encoder's cached frames, but {reason}")
    encoder = build_encoder(model_cfg.encoder)
    cache = FeatureCache(cache_dir, feature_cache_key(pool, encoder, scorer_cfg), kind="frames")
    frozen = dataclasses.replace(model_cfg, adapter=AdapterConfig(kind="frozen"), wap=dataclasses.replace(
        model_cfg.wap, checkpoint=None))
    cache.build(pool.dataset(None), frozen, encoder.num_layers, scorer_cfg, verbose=verbose, in_process=in_process)
    return cache


def pretrain_adapter_stage(pool, model_cfg, pretrain_cfg, scaling, output_dir: str, cache_dir: str,
                           scorer_cfg=None, *, verbose: bool = True):
    """Pre-train the adapter on the pool's training split and return ``model_cfg`` pointing at it.

    Args:
        pool: the prepared pool (only its ``train`` split is learnt from: never dev or test).
        model_cfg: the model; ``model.wap.enabled`` must be true (its architecture is pre-trained).
        pretrain_cfg: ``AdapterPretrainConfig``.
        scaling: Ray Train settings.
        output_dir: the stage's folder (rerun = resume or reuse).
        cache_dir: frame cache root.

    Returns:
        ``(model_cfg with model.wap.checkpoint set, AdapterPretrainResult)``.

    Raises:
        ConfigError: ``model.wap.enabled`` is false, or the encoder is not frozen.
    """
    from ser_models.pretraining.adapter_pretrain import run_adapter_pretrain

    if not model_cfg.wap.enabled:
        raise ConfigError("adapter pre-training (tapt.objective=adapter; auto for a frozen or Whisper encoder) "
                          "pre-trains the WAP-Transformer: set model.wap.enabled=true (and model.pooling="
                          "attentive_stats for SAP), or tapt_enabled=false")
    t0 = time.perf_counter()
    cache = frame_cache(pool, model_cfg, cache_dir, scorer_cfg, in_process=scaling.backend == "in_process",
                        verbose=verbose)
    train_ids = sorted(pool.metadata(columns=["utt_id"], split="train")["utt_id"].astype(str))
    result = run_adapter_pretrain(cache, train_ids, model_cfg.wap, pretrain_cfg, scaling, output_dir,
                                  verbose=verbose)
    if verbose:
        print(f"adapter stage: {time.perf_counter() - t0:.0f}s; model.wap.checkpoint={result.checkpoint}")
    wap = dataclasses.replace(model_cfg.wap, checkpoint=str(result.checkpoint))
    return dataclasses.replace(model_cfg, wap=wap), result


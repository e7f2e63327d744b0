"""What a frozen-encoder feature cache is keyed by: the kind of cache a model needs (per-layer means or frames),
whether it can train from one at all, how many hidden states it holds, and the key that names a cache folder
(the pool's lineage, the encoder's weights by content, the feature code's version and the scorer's
result-changing settings).
"""

from __future__ import annotations

import hashlib
import json


def cache_kind(model_cfg) -> str:
    """``pooled`` when the model only sees per-layer means (mean pooling, no WAP adapter), else ``frames``."""
    return "pooled" if model_cfg.pooling == "mean" and not model_cfg.wap.enabled else "frames"



def cache_supported(model_cfg) -> str | None:
    """None when ``model_cfg`` can train from a cache (:func:`cache_kind` says which), else the reason it cannot."""
    if model_cfg.adapter.kind != "frozen":
        return f"model.adapter.kind={model_cfg.adapter.kind!r} changes the encoder (the cache needs 'frozen')"
    if model_cfg.adapter.add:
        return f"model.adapter.add={list(model_cfg.adapter.add)} changes the encoder (the cache needs none)"
    if model_cfg.text.enabled:
        return f"model.text.source={model_cfg.text.source!r} needs transcripts next to the features (the cache " \
               "holds audio features only)"
    return None



def cache_states(model_cfg, encoder, layers: str = "auto") -> int | None:
    """Hidden states a pooled cache needs to hold: ``0 .. featurizer_layer`` when ``layers`` is ``auto``, the
    model reads one fixed layer below the top, and the encoder can stop there (:meth:`Encoder.limit_depth`,
    Whisper: layer 1 of Whisper-tiny costs 30 % of the whole forward); None = every state."""
    from ser_models.encoders.encoder import Encoder

    if layers == "all" or model_cfg.featurizer_layer is None or cache_kind(model_cfg) != "pooled":
        return None
    states = int(model_cfg.featurizer_layer) % encoder.num_layers + 1
    if states >= encoder.num_layers or type(encoder).limit_depth is Encoder.limit_depth:
        return None
    return states



def pool_lineage(pool) -> str:
    """``pool``'s lineage (``Pool.lineage``; the fingerprint of a pool that has none): what names its caches."""
    lineage = getattr(pool, "lineage", None)
    return str(lineage if lineage is not None else pool.summary.get("fingerprint"))



#: Result-changing keys of ``ScorerConfig`` that never reach the cached features: the cache holds the encoder's
#: output, and MC dropout runs in the adapters and head when a round scores. Every other ``effect=RESULT`` key
#: of ``ScorerConfig`` is part of :func:`feature_cache_key` (``tests/unit/test_config_keys.py`` checks both).
SCORER_KEYS_NOT_IN_FEATURES = ("mc_samples",)



def feature_settings(scorer_cfg=None) -> dict:
    """The scorer settings a cached clip's features depend on: every ``effect=RESULT`` key of ``ScorerConfig``
    (``precision``, ``allow_tf32``, ``max_seconds``, ``num_gpus``, ...) but :data:`SCORER_KEYS_NOT_IN_FEATURES`;
    ``num_gpus`` enters as the device it picks (``cuda`` / ``cpu``), since a share of a GPU changes no number.
    Speed-only keys (batch sizes, actors, threads) stay out: a cache built with other ones is reused.
    ``scorer_cfg``: the ``ScorerConfig`` of the build (None = its defaults)."""
    from ser_models.config import RESULT, keys_with_effect
    from ser_models.scoring.scorer import ScorerConfig

    sc = scorer_cfg or ScorerConfig()
    settings = {k: getattr(sc, k) for k in keys_with_effect(ScorerConfig, RESULT) if k not in SCORER_KEYS_NOT_IN_FEATURES}
    if "num_gpus" in settings:
        settings["num_gpus"] = "cuda" if sc.num_gpus > 0 else "cpu"  # actor_device picks the device from it
    return settings



def feature_cache_key(pool, encoder, scorer_cfg=None) -> str:
    """sha256 naming the cached features of ``pool`` (its lineage: the same while it grows or is relabelled,
    new after a rebuild) under ``encoder`` (:meth:`~ser_models.encoders.Encoder.fingerprint`: its config and
    weights by content) computed by this version of the feature code (``FEATURE_CODE_VERSION``, which the
    fingerprint holds too) made with ``scorer_cfg``'s result keys (:func:`feature_settings`; None = the defaults,
    as :meth:`FeatureCache.build` takes None: pass both the same config): a shared cache folder never serves one
    pool's features to another, nor bf16 or cropped features to a run with other settings, nor features the
    code computed differently before, and a grown pool's cache only encodes its new clips."""
    from ser_models.encoders.encoder import FEATURE_CODE_VERSION

    settings = json.dumps(feature_settings(scorer_cfg), sort_keys=True)
    return hashlib.sha256(f"{pool_lineage(pool)}:{encoder.fingerprint()}:feature_code={FEATURE_CODE_VERSION}:"
                          f"{settings}".encode()).hexdigest()


__all__ = ["cache_kind", "cache_states", "cache_supported", "feature_cache_key", "feature_settings", "pool_lineage", "SCORER_KEYS_NOT_IN_FEATURES"]

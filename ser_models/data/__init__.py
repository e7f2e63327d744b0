"""Data: manifests, audio decode/validation, the prepared pool (Ray Data), the label ledger, a demo corpus.

The names below are imported on first use: ``import ser_models.data.audio`` (what serving needs) stays free of
pandas, Ray and the pool's machinery, so the serving install (``ser-models-serve``) can decode audio without
them.
"""

from __future__ import annotations

import importlib

#: public name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(("REASONS", "decode_batch", "decode_pool_audio", "encode_pool_audio", "load_clip", "validate"),
                    "ser_models.data.audio"),
    **dict.fromkeys(("POOL_SAMPLE_RATE", "PoolConfig"), "ser_models.data.config"),
    "LabelLedger": "ser_models.data.ledger",
    **dict.fromkeys(("MANIFEST_COLUMNS", "SPLITS", "read_manifest"), "ser_models.data.manifest"),
    **dict.fromkeys(("POOL_COLUMNS", "POOL_SCHEMA", "Pool"), "ser_models.data.pool"),
    **dict.fromkeys(("PoolSummary", "SourceChangedError", "prepare_pool"), "ser_models.data.prepare"),
    **dict.fromkeys(("EMOTIONS", "generate_corpus", "write_bad_clips"), "ser_models.data.synth"),
}

__all__ = [
    "EMOTIONS",
    "MANIFEST_COLUMNS",
    "POOL_COLUMNS",
    "POOL_SAMPLE_RATE",
    "POOL_SCHEMA",
    "REASONS",
    "SPLITS",
    "LabelLedger",
    "Pool",
    "PoolConfig",
    "PoolSummary",
    "SourceChangedError",
    "decode_batch",
    "decode_pool_audio",
    "encode_pool_audio",
    "generate_corpus",
    "load_clip",
    "prepare_pool",
    "read_manifest",
    "validate",
    "write_bad_clips",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ser_models.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

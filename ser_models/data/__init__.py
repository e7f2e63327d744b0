"""Data: manifests, audio decode/validation, the prepared pool (Ray Data), the label ledger, a demo corpus."""

from ser_models.data.audio import (
    REASONS,
    decode_batch,
    decode_pool_audio,
    encode_pool_audio,
    load_clip,
    validate,
)
from ser_models.data.config import POOL_SAMPLE_RATE, PoolConfig
from ser_models.data.ledger import LabelLedger
from ser_models.data.manifest import MANIFEST_COLUMNS, SPLITS, read_manifest
from ser_models.data.pool import POOL_COLUMNS, POOL_SCHEMA, Pool
from ser_models.data.prepare import PoolSummary, SourceChangedError, prepare_pool
from ser_models.data.synth import EMOTIONS, generate_corpus, write_bad_clips

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

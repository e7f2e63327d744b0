"""Long recordings -> speech segments: streamed decode, batched Silero VAD, rules, quality, labels by overlap.

A segment is metadata over its recording (``recording, channel, start, end``, a deterministic id); the source
file is never rewritten. ``jobs.segment`` writes ``segments.parquet``, a manifest ``jobs.prepare_pool`` reads.
"""

from ser_models.segment.config import SegmentConfig
from ser_models.segment.overlap import labels_by_overlap
from ser_models.segment.quality import QUALITY_COLUMNS, QualityGate
from ser_models.segment.recordings import read_recordings
from ser_models.segment.rules import PRESETS, SegmentRules, segment_probs
from ser_models.segment.run import SegmentSummary, segment_archive
from ser_models.segment.silero import SileroVAD
from ser_models.segment.streams import segment_id, vad_pass

__all__ = ["PRESETS", "QUALITY_COLUMNS", "QualityGate", "SegmentConfig", "SegmentRules", "SegmentSummary",
           "SileroVAD", "labels_by_overlap", "read_recordings", "segment_archive", "segment_id", "segment_probs",
           "vad_pass"]

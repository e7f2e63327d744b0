"""Configuration of ``jobs.segment``: recordings in, speech segments out."""

from __future__ import annotations

import dataclasses

from ser_models.config import LOCATION, PATH, RESULT, SPEED, field
from ser_models.exceptions import ConfigError
from ser_models.segment.overlap import DEFAULT_MIN_SHARE
from ser_models.segment.quality import QualityGate
from ser_models.segment.rules import PRESETS, SegmentRules
from ser_models.segment.streams import check_channels


@dataclasses.dataclass
class SegmentConfig:
    """How ``jobs.segment`` finds speech in long recordings and writes a segments manifest.

    Only ``channels`` (and the model) change the VAD pass; the rules, the gate and the annotations only change
    how its stored frame probabilities become segments, so changing them reruns no model.
    """

    recordings: str = field("???", effect=RESULT, path=PATH, help="recordings manifest: ours (CSV, Parquet or JSONL "
                                                                  "with a 'path' column; see docs/recordings.md) or a "
                                                                  "Lhotse recordings manifest; required")
    output_dir: str = field("outputs/segments", effect=LOCATION, path=PATH, help="folder for segments.parquet, the frame "
                                                                                "probabilities, quarantine.parquet and summary.json")
    preset: str = field("turns", effect=RESULT, help=f"segmentation rules preset: {', '.join(sorted(PRESETS))}")
    rules: SegmentRules = field(default_factory=SegmentRules, help="rule overrides of the preset (seconds)")
    channels: str = field("split", effect=RESULT, help="'split' (each channel its own stream: one speaker per channel), 'mix' "
                                                       "(their mean), or a channel number; a manifest 'channel' column wins")
    gate: QualityGate = field(default_factory=QualityGate, help="quality gate: failing segments go to "
                                                                "rejected_segments.parquet with the reason")
    annotations: str | None = field(None, effect=RESULT, path=PATH, help="time-stamped labels (recording, [channel,] start, "
                                                                         "end, label): each segment takes the label covering most of it")
    label_min_share: float = field(DEFAULT_MIN_SHARE, effect=RESULT, help="share of a segment its label must cover; below it "
                                                                          "the segment gets no label")
    drop_unlabelled: str = field("eval", effect=RESULT, help="with annotations: segments that get no label go to "
                                                             "rejected_segments.parquet (reason no_label): 'eval' only those of "
                                                             "dev / test recordings (evaluation needs a label on every clip), "
                                                             "'all', or 'none'")
    max_recording_hours: float = field(12.0, effect=RESULT, help="longer recordings are quarantined (too_long)")
    block_seconds: float = field(30.0, effect=SPEED, help="decode block length (s): memory per worker is a few blocks")
    num_workers: int = field(2, effect=SPEED, help="VAD actors (one CPU each; the model is loaded once per actor)")

    def __post_init__(self) -> None:
        if not self.recordings or self.recordings == "???":
            raise ConfigError("recordings is required (the recordings manifest)")
        if self.preset not in PRESETS:
            raise ConfigError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        self.channels = check_channels(self.channels)
        self.rules.resolve(self.preset)  # a bad combination of preset and overrides fails here, before Ray
        if not 0 < self.label_min_share <= 1:
            raise ConfigError(f"label_min_share must be in (0, 1], got {self.label_min_share}")
        if self.drop_unlabelled not in ("eval", "all", "none"):
            raise ConfigError(f"drop_unlabelled must be eval, all or none, got {self.drop_unlabelled!r}")
        if not self.max_recording_hours > 0:
            raise ConfigError(f"max_recording_hours must be > 0, got {self.max_recording_hours}")
        if not self.block_seconds >= 1:
            raise ConfigError(f"block_seconds must be >= 1 second, got {self.block_seconds}")
        if self.num_workers < 1:
            raise ConfigError(f"num_workers must be >= 1, got {self.num_workers}")


__all__ = ["SegmentConfig"]

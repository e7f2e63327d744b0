"""Configuration of the data package: how a manifest becomes a prepared pool."""

from __future__ import annotations

import dataclasses

from ser_models.config import LOCATION, PATH, RESULT, SPEED, field
from ser_models.exceptions import ConfigError

#: Sample rate of every clip in a prepared pool (Hz). Speech encoders (wav2vec2, HuBERT, WavLM) expect it.
POOL_SAMPLE_RATE = 16000
LONG_POLICIES = ("crop", "reject")
AUDIO_FORMATS = ("pcm16", "flac")
#: What ``prepare_pool`` does with clips of a pool that are no longer in its manifest.
REMOVED_POLICIES = ("drop", "keep")


@dataclasses.dataclass
class PoolConfig:
    """How ``prepare_pool`` decodes, validates and stores a manifest's clips.

    It is also the whole config of ``jobs.prepare_pool`` (top-level YAML keys ``manifest``, ``output_dir``,
    ...). Only the fields that change the pool's content enter its fingerprint (see
    :meth:`content_fields`); ``batch_size``, ``num_workers``, ``rows_per_file`` and ``grow`` only change speed
    and file layout. Of those, the fields that change decoded audio (:meth:`audio_fields`) decide whether an
    existing pool can grow in place: a change there rebuilds it.
    """

    manifest: str = field("???", effect=RESULT, path=PATH, help="the clips: our manifest (CSV, Parquet, JSON lines, EmoBox's), Lhotse, NeMo, a Hugging "
                                "Face dataset or a corpus's root folder (IEMOCAP, MSP-Podcast, CREMA-D, RAVDESS; "
                                "foreign ones are imported into output_dir/imported). Required")
    output_dir: str = field("outputs/pool", effect=LOCATION, path=PATH, help="folder the pool is written to (replaced atomically)")
    labels: list[str] = field(
        effect=RESULT, default_factory=lambda: ["neutral", "happy", "angry", "sad"],
        help="allowed categorical labels; an empty list accepts any label",
    )
    label_map: str | None = field(None, effect=RESULT, path=PATH, help="optional file mapping corpus labels to `labels` (see read_manifest)")
    target_sample_rate: int = field(POOL_SAMPLE_RATE, effect=RESULT, help="sample rate of the pool in Hz (fixed: 16000)")
    min_duration: float = field(0.5, effect=RESULT, help="clips shorter than this many seconds are quarantined (too_short)")
    max_duration: float = field(20.0, effect=RESULT, help="longer clips are cropped or rejected, see long_policy (seconds)")
    long_policy: str = field("crop", effect=RESULT, help="'crop' keeps the first max_duration seconds; 'reject' quarantines")
    silence_db: float = field(-60.0, effect=RESULT, help="clips whose RMS level is below this (dBFS) are quarantined (silent)")
    audio_format: str = field("pcm16", effect=RESULT, help="'pcm16' (int16 LE bytes, fast) or 'flac' (about half the size)")
    batch_size: int = field(32, effect=SPEED, help="clips per map_batches call")
    num_workers: int = field(2, effect=SPEED, help="concurrent decode tasks (each takes one CPU)")
    # Every reader holds about one file's worth of decoded rows: bounding the file bounds the memory of every
    # pool read however long the pool is (bench.scale: 2000-row files, ~190 MB at 16 h, cost +0.4-0.6 GiB).
    rows_per_file: int = field(128, effect=SPEED, help="most rows per Parquet file (~13 MB of 3 s pcm16 clips; also the "
                                                       "most clips one read task decodes)")
    grow: bool = field(True, effect=SPEED, help="update an existing pool in place: decode only new clips, rewrite changed "
                                                "labels / splits / metadata without decoding (false: rebuild from scratch)")
    removed: str = field("drop", effect=RESULT, help="clips in the pool but gone from the manifest: 'drop' removes them from "
                                                     "the pool (logged), 'keep' keeps them")

    def __post_init__(self) -> None:
        if not self.manifest or self.manifest == "???":
            raise ConfigError("manifest is required (path to the clip table)")
        if not self.output_dir:
            raise ConfigError("output_dir must not be empty")
        if self.target_sample_rate != POOL_SAMPLE_RATE:
            raise ConfigError(
                f"target_sample_rate must be {POOL_SAMPLE_RATE} (the encoders' rate), got {self.target_sample_rate}"
            )
        if not self.min_duration >= 0:
            raise ConfigError(f"min_duration must be >= 0 seconds, got {self.min_duration}")
        if not self.max_duration > self.min_duration:
            raise ConfigError(
                f"max_duration must be > min_duration ({self.min_duration}), got {self.max_duration}"
            )
        if self.long_policy not in LONG_POLICIES:
            raise ConfigError(f"long_policy must be one of {LONG_POLICIES}, got {self.long_policy!r}")
        if self.audio_format not in AUDIO_FORMATS:
            raise ConfigError(f"audio_format must be one of {AUDIO_FORMATS}, got {self.audio_format!r}")
        if not self.silence_db < 0:
            raise ConfigError(f"silence_db must be < 0 dBFS, got {self.silence_db}")
        if self.removed not in REMOVED_POLICIES:
            raise ConfigError(f"removed must be one of {REMOVED_POLICIES}, got {self.removed!r}")
        for key in ("batch_size", "num_workers", "rows_per_file"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")

    def content_fields(self) -> dict:
        """The fields that change which clips are kept and their bytes (the fingerprint's config part)."""
        keys = ("labels", "target_sample_rate", "min_duration", "max_duration", "long_policy", "silence_db",
                "audio_format", "removed")
        return {k: (list(getattr(self, k)) if k == "labels" else getattr(self, k)) for k in keys}

    def audio_fields(self) -> dict:
        """The fields that change a clip's decoded bytes or whether it is kept: a pool grows in place only
        while these stay the same (``labels`` and ``removed`` change metadata, never audio)."""
        keys = ("target_sample_rate", "min_duration", "max_duration", "long_policy", "silence_db", "audio_format")
        return {k: getattr(self, k) for k in keys}

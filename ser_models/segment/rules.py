"""Segmentation rules: frame speech probabilities -> segments, in integer samples at 16 kHz.

Pure numpy, no model: the segmenter stores every stream's frame probabilities, so segmenting again with other
rules never reruns the VAD. Two modes:

* ``turns`` (speech turns, the natural-corpus recipe): hysteresis on the probabilities (enter at
  ``threshold``, leave after ``min_silence`` seconds below ``neg_threshold``), speech shorter than
  ``min_speech`` dropped, gaps shorter than ``merge_gap`` bridged (while the result stays within
  ``max_length``), over-long speech cut at its least speech-like frame (the lowest probability inside the
  part that leaves both halves at least ``min_length``), segments shorter than ``min_length`` dropped, then
  ``pad`` seconds added on each side without ever overlapping a neighbour (a shared gap is split at its
  middle) or leaving the recording.
* ``windows``: fixed windows of ``window`` seconds every ``hop`` seconds, kept where at least
  ``min_speech_ratio`` of their frames are speech.

Segments of MSP-Podcast, a natural corpus built this way, are 2.75-11 s long (Lotfian & Busso, 2019); the
``turns`` preset uses 1.5-11 s so that short turns of conversation are kept.

References:
    R. Lotfian and C. Busso, "Building naturalistic emotionally balanced speech corpus by retrieving
    emotional speech from existing podcast recordings", IEEE Trans. Affective Computing 10(4), 2019.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ser_models.config import RESULT, field
from ser_models.exceptions import ConfigError
from ser_models.segment.silero import FRAME_SAMPLES, VAD_SAMPLE_RATE

MODES = ("turns", "windows")


@dataclasses.dataclass
class SegmentRules:
    """How speech frames become segments (seconds; see the module docstring).

    In a job config every field defaults to ``None``, "the preset's value" (:data:`PRESETS`); :meth:`resolve`
    fills them in. The functions of this module take resolved rules.
    """

    mode: str | None = field(None, effect=RESULT, help="'turns' (VAD speech turns) or 'windows' (fixed windows over speech)")
    threshold: float | None = field(None, effect=RESULT, help="a frame with speech probability >= this starts speech (0.5)")
    neg_threshold: float | None = field(None, effect=RESULT, help="speech ends below this probability (threshold - 0.15)")
    min_speech: float | None = field(None, effect=RESULT, help="speech shorter than this (s) is dropped before merging (0.25)")
    min_silence: float | None = field(None, effect=RESULT, help="silence must last this long (s) to end speech (turns 0.3)")
    merge_gap: float | None = field(None, effect=RESULT, help="gaps shorter than this (s) are bridged (turns 0.5)")
    min_length: float | None = field(None, effect=RESULT, help="shorter segments (s) are dropped (turns 1.5)")
    max_length: float | None = field(None, effect=RESULT, help="longer speech (s) is cut at its least speech-like frame (turns 11)")
    pad: float | None = field(None, effect=RESULT, help="seconds added on each side, never overlapping a neighbour (turns 0.2)")
    window: float | None = field(None, effect=RESULT, help="window length (s) in 'windows' mode (4)")
    hop: float | None = field(None, effect=RESULT, help="window step (s) in 'windows' mode (4)")
    min_speech_ratio: float | None = field(None, effect=RESULT, help="a window is kept if this share of it is speech (0.5)")

    def __post_init__(self) -> None:
        if any(getattr(self, f.name) is None for f in dataclasses.fields(self) if f.name != "neg_threshold"):
            return  # overrides of a preset: checked once resolved
        if self.mode not in MODES:
            raise ConfigError(f"segment.rules.mode must be one of {MODES}, got {self.mode!r}")
        if not 0 < self.threshold < 1:
            raise ConfigError(f"segment.rules.threshold must be in (0, 1), got {self.threshold}")
        if self.neg_threshold is not None and not 0 < self.neg_threshold <= self.threshold:
            raise ConfigError(f"segment.rules.neg_threshold must be in (0, threshold], got {self.neg_threshold}")
        for key in ("min_speech", "min_silence", "merge_gap", "min_length", "pad"):
            if getattr(self, key) < 0:
                raise ConfigError(f"segment.rules.{key} must be >= 0 seconds, got {getattr(self, key)}")
        if self.max_length < max(2 * self.min_length, 2 * FRAME_SAMPLES / VAD_SAMPLE_RATE):
            raise ConfigError(f"segment.rules.max_length ({self.max_length} s) must be at least twice "
                              f"min_length ({self.min_length} s) so that a cut leaves two valid halves")
        if self.window <= 0 or self.hop <= 0:
            raise ConfigError("segment.rules.window and segment.rules.hop must be > 0 seconds")
        if not 0 <= self.min_speech_ratio <= 1:
            raise ConfigError(f"segment.rules.min_speech_ratio must be in [0, 1], got {self.min_speech_ratio}")

    def resolve(self, preset: str) -> SegmentRules:
        """The rules of ``preset`` with every field set here replacing the preset's value."""
        if preset not in PRESETS:
            raise ConfigError(f"segment preset must be one of {sorted(PRESETS)}, got {preset!r}")
        given = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return SegmentRules(**{**PRESETS[preset], **given})

    @property
    def leave_threshold(self) -> float:
        """The probability below which speech ends (hysteresis)."""
        return self.neg_threshold if self.neg_threshold is not None else max(0.01, self.threshold - 0.15)


_TURNS = dict(mode="turns", threshold=0.5, neg_threshold=None, min_speech=0.25, min_silence=0.3, merge_gap=0.5,
              min_length=1.5, max_length=11.0, pad=0.2, window=4.0, hop=4.0, min_speech_ratio=0.5)
#: Documented presets (``preset=``); any rule can still be overridden (``rules.pad=0.1``).
PRESETS: dict[str, dict] = {
    # Natural-corpus turns: short gaps bridged, 1.5-11 s, cut at the least speech-like point, 0.2 s padding.
    "turns": _TURNS,
    # Silero's own defaults: every speech stretch as found, unbounded, 30 ms padding.
    "vad": {**_TURNS, "min_silence": 0.1, "merge_gap": 0.0, "min_length": 0.0, "max_length": 3600.0, "pad": 0.03},
    # Fixed 4 s windows over the speech (a model input of constant length; no turn structure).
    "windows": {**_TURNS, "mode": "windows"},
}


def frames_of(seconds: float) -> int:
    """Whole VAD frames (32 ms) in ``seconds``, rounded."""
    return int(round(seconds * VAD_SAMPLE_RATE / FRAME_SAMPLES))


def hysteresis(probs: np.ndarray, enter: float, leave: float, min_silence_frames: int) -> np.ndarray:
    """Speech regions ``[K, 2]`` (frame start, frame end exclusive) found with two thresholds.

    Speech starts at the first frame ``>= enter``; it ends at the first frame of a run of at least
    ``min_silence_frames`` frames ``< leave`` (a shorter dip keeps the region open). A region open at the end
    closes at the last frame.
    """
    regions = []
    start = None
    low_since = None
    for i, p in enumerate(np.asarray(probs, dtype=np.float64)):
        if start is None:
            if p >= enter:
                start, low_since = i, None
            continue
        if p < leave:
            if low_since is None:
                low_since = i
            if i - low_since + 1 >= max(1, min_silence_frames):
                regions.append((start, low_since))
                start = low_since = None
        elif p >= enter:
            # Between the two thresholds a frame neither ends a silence nor starts one (as in Silero).
            low_since = None
    if start is not None:
        regions.append((start, low_since if low_since is not None else len(probs)))
    return np.asarray(regions, dtype=np.int64).reshape(-1, 2)


def merge_gaps(regions: np.ndarray, max_gap: int, max_len: int) -> np.ndarray:
    """Bridge gaps of fewer than ``max_gap`` frames while the merged region stays within ``max_len`` frames."""
    out: list[list[int]] = []
    for s, e in regions.tolist():
        if out and s - out[-1][1] < max_gap and e - out[-1][0] <= max_len:
            out[-1][1] = e
        else:
            out.append([s, e])
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def split_long(regions: np.ndarray, probs: np.ndarray, max_len: int, min_len: int) -> np.ndarray:
    """Cut regions longer than ``max_len`` frames at their least speech-like frame, recursively.

    The cut frame is the lowest probability (averaged over 3 frames, so one odd frame does not decide; values
    within 0.01 tie, and ties go to the middle) among the frames that leave both parts at least
    ``max(min_len, 1)`` frames long; the cut frame itself is dropped as the boundary's silence.
    """
    smooth = np.convolve(np.asarray(probs, dtype=np.float64), np.ones(3) / 3.0, mode="same")
    out: list[tuple[int, int]] = []
    todo = [tuple(r) for r in regions.tolist()][::-1]
    while todo:
        s, e = todo.pop()
        if e - s <= max_len:
            out.append((s, e))
            continue
        lo, hi = s + max(min_len, 1), e - max(min_len, 1)
        if hi > lo:
            # Probabilities within 0.01 of each other are a tie, broken towards the middle: a flat stretch is
            # cut in half rather than into min_len pieces from its start.
            idx = np.arange(lo, hi)
            score = np.round(smooth[lo:hi], 2) + 1e-3 * np.abs(idx - (s + e) / 2) / (e - s)
            cut = lo + int(np.argmin(score))
        else:
            cut = (s + e) // 2
        todo.extend([(cut + 1, e), (s, cut)])
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def pad_regions(spans: np.ndarray, pad: int, total: int) -> np.ndarray:
    """Widen sample spans ``[K, 2]`` by ``pad`` samples each side, within ``[0, total]``, never overlapping."""
    if len(spans) == 0:
        return spans
    starts = spans[:, 0] - pad
    ends = spans[:, 1] + pad
    # Where two padded spans would overlap, both stop at the middle of the gap between them.
    gap_mid = (spans[1:, 0] + spans[:-1, 1]) // 2
    ends[:-1] = np.minimum(ends[:-1], np.maximum(gap_mid, spans[:-1, 1]))
    starts[1:] = np.maximum(starts[1:], np.minimum(gap_mid, spans[1:, 0]))
    return np.stack([np.clip(starts, 0, total), np.clip(ends, 0, total)], axis=1)


def segment_probs(probs: np.ndarray, rules: SegmentRules, total_samples: int) -> np.ndarray:
    """Segments of one stream.

    Args:
        probs: ``[F]`` speech probabilities of consecutive 32 ms frames (512 samples at 16 kHz).
        rules: the rules.
        total_samples: the stream's length in 16 kHz samples (segments never pass it).

    Returns:
        ``[K, 2]`` int64 ``(start, end)`` in 16 kHz samples, sorted, non-overlapping.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if rules.mode == "windows":
        return _windows(probs, rules, total_samples)
    regions = hysteresis(probs, rules.threshold, rules.leave_threshold, frames_of(rules.min_silence))
    regions = regions[regions[:, 1] - regions[:, 0] >= max(1, frames_of(rules.min_speech))]
    max_len = frames_of(rules.max_length)
    regions = merge_gaps(regions, frames_of(rules.merge_gap), max_len)
    regions = split_long(regions, probs, max_len, frames_of(rules.min_length))
    regions = regions[regions[:, 1] - regions[:, 0] >= max(1, frames_of(rules.min_length))]
    spans = np.minimum(regions * FRAME_SAMPLES, total_samples)
    spans = spans[spans[:, 1] > spans[:, 0]]
    return pad_regions(spans, int(round(rules.pad * VAD_SAMPLE_RATE)), total_samples)


def _windows(probs: np.ndarray, rules: SegmentRules, total_samples: int) -> np.ndarray:
    win, hop = max(1, frames_of(rules.window)), max(1, frames_of(rules.hop))
    speech = (probs >= rules.threshold).astype(np.float64)
    if len(speech) < win:
        starts = np.zeros(1 if len(speech) else 0, dtype=np.int64)
    else:
        starts = np.arange(0, len(speech) - win + 1, hop, dtype=np.int64)
    csum = np.concatenate([[0.0], np.cumsum(speech)])
    ends = np.minimum(starts + win, len(speech))
    ratio = (csum[ends] - csum[starts]) / np.maximum(ends - starts, 1)
    keep = ratio >= max(rules.min_speech_ratio, 1e-9)
    spans = np.stack([starts[keep], ends[keep]], axis=1) * FRAME_SAMPLES
    return np.minimum(spans, total_samples).astype(np.int64).reshape(-1, 2)


__all__ = ["MODES", "PRESETS", "SegmentRules", "frames_of", "hysteresis", "merge_gaps", "pad_regions",
           "segment_probs", "split_long"]

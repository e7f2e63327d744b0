"""Quality columns of a segment, from per-frame statistics the segmenter keeps (never from the audio again).

Per 32 ms VAD frame of a stream the segmenter stores the speech probability, the mean square of the 16 kHz
samples and the number of clipped samples (``|x| >= 0.999``). A segment's columns:

* ``speech_ratio``: share of its frames with probability ``>= threshold``.
* ``level_dbfs``: RMS level over the segment, dB relative to full scale.
* ``snr_db``: **VAD-gated SNR** (the estimator is named because figures from different estimators are not
  comparable): the mean power of the segment's speech frames over the stream's noise floor, the median power
  of the stream's frames below the leave threshold (the 10th percentile of all frames where the stream has
  fewer than 10 such frames); ``10 log10((P_speech - P_noise) / P_noise)``, clipped to [-20, 80] dB.
* ``clipping``: share of the segment's samples at full scale.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ser_models.config import RESULT, field
from ser_models.exceptions import ConfigError
from ser_models.segment.silero import FRAME_SAMPLES

SNR_ESTIMATOR = "vad_gated"
QUALITY_COLUMNS = ("speech_ratio", "snr_db", "level_dbfs", "clipping")
_SNR_RANGE = (-20.0, 80.0)
_TINY = 1e-12


@dataclasses.dataclass
class QualityGate:
    """Segments outside these bounds go to ``rejected_segments.parquet`` with the reason, not to the pool."""

    min_snr_db: float | None = field(None, effect=RESULT, help="reject segments whose VAD-gated SNR is below this (dB)")
    min_speech_ratio: float = field(0.0, effect=RESULT, help="reject segments with a smaller share of speech frames")
    max_clipping: float = field(0.01, effect=RESULT, help="reject segments with a larger share of clipped samples")
    min_level_dbfs: float = field(-60.0, effect=RESULT, help="reject segments quieter than this RMS level (dBFS)")

    def __post_init__(self) -> None:
        if not 0 <= self.min_speech_ratio <= 1:
            raise ConfigError(f"segment.gate.min_speech_ratio must be in [0, 1], got {self.min_speech_ratio}")
        if not 0 <= self.max_clipping <= 1:
            raise ConfigError(f"segment.gate.max_clipping must be in [0, 1], got {self.max_clipping}")

    def reasons(self, q: dict[str, np.ndarray]) -> np.ndarray:
        """``[K]`` object array: ``None`` for a segment that passes, else the first failed rule."""
        n = len(q["snr_db"])
        out = np.full(n, None, dtype=object)
        checks = [("low_speech_ratio", q["speech_ratio"] < self.min_speech_ratio),
                  ("clipped", q["clipping"] > self.max_clipping),
                  ("quiet", q["level_dbfs"] < self.min_level_dbfs)]
        if self.min_snr_db is not None:
            checks.insert(0, ("low_snr", q["snr_db"] < self.min_snr_db))
        for reason, bad in reversed(checks):  # the first rule listed wins
            out[bad] = reason
        return out


def noise_floor(power: np.ndarray, probs: np.ndarray, leave: float) -> float:
    """The stream's noise power: median power of its non-speech frames (see the module docstring)."""
    quiet = power[probs < leave]
    if len(quiet) >= 10:
        return float(np.median(quiet))
    return float(np.percentile(power, 10)) if len(power) else 0.0


def segment_quality(spans: np.ndarray, probs: np.ndarray, power: np.ndarray, clipped: np.ndarray,
                    threshold: float, leave: float) -> dict[str, np.ndarray]:
    """Quality columns of a stream's segments.

    Args:
        spans: ``[K, 2]`` segment (start, end) in 16 kHz samples.
        probs: ``[F]`` frame speech probabilities.
        power: ``[F]`` frame mean square of the samples.
        clipped: ``[F]`` clipped samples per frame.
        threshold: speech threshold of the rules.
        leave: the rules' leave threshold (frames below it are noise).

    Returns:
        ``{column: [K] float64}`` for :data:`QUALITY_COLUMNS`.
    """
    k = len(spans)
    out = {c: np.zeros(k) for c in QUALITY_COLUMNS}
    noise = max(noise_floor(power, probs, leave), _TINY)
    for i, (s, e) in enumerate(np.asarray(spans).tolist()):
        f0, f1 = s // FRAME_SAMPLES, max(s // FRAME_SAMPLES + 1, -(-e // FRAME_SAMPLES))
        p, pw = probs[f0:f1], power[f0:f1]
        speech = p >= threshold
        out["speech_ratio"][i] = float(speech.mean()) if len(p) else 0.0
        mean_power = float(pw.mean()) if len(pw) else 0.0
        out["level_dbfs"][i] = 10 * math.log10(mean_power) if mean_power > 0 else -math.inf
        sp = float(pw[speech].mean()) if speech.any() else mean_power
        snr = 10 * math.log10(max(sp - noise, _TINY) / noise)
        out["snr_db"][i] = min(max(snr, _SNR_RANGE[0]), _SNR_RANGE[1])
        out["clipping"][i] = float(clipped[f0:f1].sum()) / max(e - s, 1)
    return out


__all__ = ["QUALITY_COLUMNS", "SNR_ESTIMATOR", "QualityGate", "noise_floor", "segment_quality"]

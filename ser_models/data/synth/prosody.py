"""Emotion -> prosody: per-emotion parameter distributions, speakers, and the A/V/D ratings they imply."""

from __future__ import annotations

import dataclasses

import numpy as np

from ser_models.data.synth.spec import EMOTIONS

# ---------------------------------------------------------------------------------------------------------
# Emotion -> prosody. (mean, sd) per parameter; sds are large on purpose so the classes overlap.
# ---------------------------------------------------------------------------------------------------------
PROSODY_PARAMS: tuple[str, ...] = (
    "f0_shift_st", "f0_range_st", "rate_sps", "energy_db", "tilt", "open_quotient", "jitter", "shimmer",
    "breathiness",
)
# Rows: F0 shift (st), F0 range (st), rate (syll/s), energy (dB), tilt pole, open quotient, jitter, shimmer,
# breathiness; each (mean, sd).
_PROSODY_TABLE: dict[str, list[tuple[float, float]]] = {
    "neutral": [(0.0, 1.5), (2.0, 0.9), (4.4, 0.5), (0.0, 2.0), (0.55, 0.12), (0.60, 0.05), (0.008, 0.004),
                (0.04, 0.02), (0.05, 0.03)],
    "happy": [(3.0, 1.8), (4.5, 1.4), (4.9, 0.6), (2.0, 2.0), (0.45, 0.12), (0.56, 0.05), (0.010, 0.004),
              (0.05, 0.02), (0.05, 0.03)],
    "angry": [(2.0, 1.8), (3.5, 1.4), (5.1, 0.6), (4.0, 2.0), (0.30, 0.12), (0.48, 0.05), (0.015, 0.006),
              (0.07, 0.03), (0.03, 0.02)],
    "sad": [(-1.5, 1.5), (1.2, 0.6), (3.6, 0.5), (-3.5, 2.0), (0.72, 0.10), (0.68, 0.05), (0.012, 0.005),
            (0.06, 0.02), (0.12, 0.05)],
}
EMOTION_PROSODY: dict[str, dict[str, tuple[float, float]]] = {
    e: dict(zip(PROSODY_PARAMS, rows)) for e, rows in _PROSODY_TABLE.items()
}
PROSODY_LIMITS: dict[str, tuple[float, float]] = {
    "f0_shift_st": (-7.0, 9.0), "f0_range_st": (0.3, 9.0), "rate_sps": (2.5, 7.0), "energy_db": (-9.0, 9.0),
    "tilt": (0.05, 0.92), "open_quotient": (0.35, 0.85), "jitter": (0.001, 0.04), "shimmer": (0.005, 0.2),
    "breathiness": (0.0, 0.3),
}
# Valence is the one dimension prosody barely carries (happy and angry are both aroused), so it is mostly
# the emotion prior, as in human ratings.
VALENCE_PRIOR = {"neutral": 3.0, "happy": 4.0, "angry": 1.8, "sad": 2.0}
DOMINANCE_PRIOR = {"neutral": 0.0, "happy": 0.2, "angry": 0.8, "sad": -0.8}


def _population_stats() -> dict[str, tuple[float, float]]:
    """Mean and sd of each prosody parameter over the equal-weight emotion mixture (fixed z-scores)."""
    out = {}
    for p in PROSODY_PARAMS:
        means = np.array([EMOTION_PROSODY[e][p][0] for e in EMOTIONS])
        sds = np.array([EMOTION_PROSODY[e][p][1] for e in EMOTIONS])
        out[p] = (float(means.mean()), float(np.sqrt((sds**2).mean() + means.var())))
    return out


_POP = _population_stats()


@dataclasses.dataclass(frozen=True)
class Prosody:
    """Prosody and voice quality of one clip (see ``EMOTION_PROSODY`` for the per-emotion distributions).

    Attributes:
        f0_shift_st: mean F0 relative to the speaker's base, in semitones.
        f0_range_st: height of accent peaks, in semitones.
        rate_sps: speaking rate, syllables per second.
        energy_db: loudness relative to neutral speech, dB (sets the output peak level).
        tilt: one-pole low-pass coefficient in [0, 1); larger = steeper spectral tilt (softer voice).
        open_quotient: fraction of a glottal period the glottis is open; larger = breathier, weaker harmonics.
        jitter: per-period relative F0 perturbation (sd, fraction).
        shimmer: per-period relative amplitude perturbation (sd, fraction).
        breathiness: aspiration noise level relative to the glottal pulse.
    """

    f0_shift_st: float
    f0_range_st: float
    rate_sps: float
    energy_db: float
    tilt: float
    open_quotient: float
    jitter: float
    shimmer: float
    breathiness: float


@dataclasses.dataclass(frozen=True)
class Speaker:
    """A synthetic speaker.

    Attributes:
        speaker_id: e.g. ``"spk007"``.
        gender: ``"m"`` or ``"f"`` (male-like or female-like F0 and formant ranges).
        base_f0: neutral mean F0, Hz.
        vtl_factor: formant scale (shorter vocal tract -> higher formants), ~1.0 male-like, ~1.15 female-like.
        expressiveness: scales how far this speaker's emotions move away from neutral (0.6-1.3).
        bandwidth_factor: scales formant bandwidths (0.8-1.25; wider = duller, more damped voice).
        language: ``"en"`` or ``"xx"``.
        split: ``"train"``, ``"dev"`` or ``"test"``.
    """

    speaker_id: str
    gender: str
    base_f0: float
    vtl_factor: float
    expressiveness: float
    bandwidth_factor: float
    language: str
    split: str


def draw_prosody(emotion: str, rng: np.random.Generator, expressiveness: float = 1.0,
                 spread: float = 1.0) -> Prosody:
    """Draw one clip's prosody from the emotion's Gaussians (clipped to plausible limits).

    Args:
        emotion: one of ``EMOTIONS``.
        rng: the clip's generator.
        expressiveness: the speaker's factor on the distance between the emotion's means and neutral's.
        spread: factor on the emotion's standard deviations (the corpus style's).
    """
    if emotion not in EMOTION_PROSODY:
        raise ValueError(f"emotion must be one of {EMOTIONS}, got {emotion!r}")
    values = {}
    for p in PROSODY_PARAMS:
        mean, sd = EMOTION_PROSODY[emotion][p]
        neutral_mean = EMOTION_PROSODY["neutral"][p][0]
        mean = neutral_mean + expressiveness * (mean - neutral_mean)
        lo, hi = PROSODY_LIMITS[p]
        values[p] = float(np.clip(rng.normal(mean, sd * spread), lo, hi))
    return Prosody(**values)


def affect_dimensions(prosody: Prosody, emotion: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """Arousal, valence and dominance on a [1, 5] scale from the clip's prosody (plus rater noise).

    Arousal follows energy, F0 range, rate and F0 level; dominance follows energy and a flat tilt; valence is
    mostly the emotion prior plus a small lift from a lively F0 range.
    """

    def z(p: str) -> float:
        mean, sd = _POP[p]
        return (getattr(prosody, p) - mean) / sd

    arousal = 3.0 + 0.45 * z("energy_db") + 0.35 * z("f0_range_st") + 0.3 * z("rate_sps") + 0.2 * z("f0_shift_st")
    valence = VALENCE_PRIOR[emotion] + 0.2 * z("f0_range_st")
    dominance = 3.0 + 0.5 * z("energy_db") - 0.35 * z("tilt") + 0.4 * DOMINANCE_PRIOR[emotion]
    noise = rng.normal(0.0, 0.3, size=3)
    vals = np.clip(np.array([arousal, valence, dominance]) + noise, 1.0, 5.0)
    return tuple(round(float(v), 3) for v in vals)  # type: ignore[return-value]

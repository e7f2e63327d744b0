"""A synthetic emotional-speech corpus: a small source-filter voice synthesizer, a noisy mixed-format pool.

The demo and the benchmarks need a corpus that exercises the whole pipeline (decode, resample, validate,
train, select) without downloading anything, and that is *learnable but not trivial*: emotions change
prosody and voice quality the way the SER literature describes (higher F0, wider F0 range, faster rate,
flatter spectral tilt and more jitter for high arousal; low, flat, slow and breathy for sadness), but every
cue is drawn from overlapping per-emotion Gaussians, speakers differ in pitch, vocal-tract length and
expressiveness, and background noise masks part of the signal.

The voice model, per clip:

* **Source.** A Rosenberg-like glottal flow pulse per period (opening/closing cosine halves, open quotient
  drawn per clip), differentiated for lip radiation, driven by an F0 contour (speaker base x emotion
  shift, declination, per-syllable accents, slow drift) with per-period jitter and shimmer, plus
  pulse-synchronous aspiration noise (breathiness).
* **Filter.** A cascade of four second-order (Klatt-style, DC-normalised) resonators F1-F4 with bandwidths,
  scaled by the speaker's vocal-tract length factor, times a one-pole spectral-tilt low-pass. Formant
  targets are interpolated between segment centres, so syllables glide into each other.
* **Consonants.** Fricatives and stop bursts are white noise through one wide resonator at the place's
  centre frequency; stops have a closure (with a voice bar when voiced); nasals and approximants are
  voiced segments with their own formant targets.

Time-varying filtering is done in the short-time Fourier domain (32 ms Hann analysis frames at 50 %
overlap, zero-padded by half a frame for the filter tails, overlap-added): the resonators' exact transfer
functions are evaluated per frame on the FFT bins. A per-sample IIR recursion would need a Python loop (or
scipy, which is not a dependency) and is ~100x slower.

The voice is rendered at 16 kHz and resampled with soxr to the clip's file rate: 16, 22.05 or 44.1 kHz,
written as WAV (PCM16) or FLAC, chosen per clip, so the pool builder has to decode and resample for real
(content above 8 kHz is absent, as in upsampled wideband recordings). Everything is a pure function of
``(seed, clip index)`` through :class:`numpy.random.SeedSequence`, so a corpus is byte-identical across runs
and worker counts.

Dimensional labels (``arousal``, ``valence``, ``dominance``) are on a **[1, 5] scale** (3 = neutral), like
IEMOCAP's self-assessment scales, and are computed from the clip's drawn prosody (plus the emotion prior
for valence and a little rater noise), not from the label alone.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "angry", "sad")
LANGUAGES: tuple[str, ...] = ("en", "xx")
SAMPLE_RATES: tuple[int, ...] = (16000, 22050, 44100)
FILE_FORMATS: tuple[str, ...] = ("wav", "flac")
NOISE_KINDS: tuple[str, ...] = ("white", "pink", "babble")
#: Columns of the ``manifest.csv`` written by :func:`generate_corpus`, in order.
CORPUS_COLUMNS: tuple[str, ...] = (
    "utt_id", "path", "label", "arousal", "valence", "dominance",
    "speaker", "language", "corpus", "split", "transcript",
)
#: Per-clip generation parameters written to ``clip_info.csv`` (for analysis, not needed by the pipeline).
INFO_COLUMNS: tuple[str, ...] = (
    "utt_id", "duration", "sample_rate", "file_format", "noise", "snr_db", "gender",
    "f0_mean_hz", "f0_range_st", "rate_sps", "energy_db", "tilt", "open_quotient", "jitter", "shimmer",
    "breathiness",
)
SPLIT_FRACTIONS = {"train": 0.70, "dev": 0.15, "test": 0.15}


@dataclasses.dataclass(frozen=True)
class Style:
    """How a corpus is performed: the acted / natural switch of the demo corpus.

    Attributes:
        expressiveness: factor on every speaker's distance between the emotions' prosody means and neutral's.
        spread: factor on the prosody standard deviations (larger = classes overlap more).
        snr_db: (low, high) of the background noise's signal-to-noise ratio, dB.
    """

    expressiveness: float
    spread: float
    snr_db: tuple[float, float]


#: ``mixed`` is the default corpus (the demo, the tests, the benchmarks). ``acted``: exaggerated, well
#: separated prosody in little noise, as in studio-acted corpora (IEMOCAP scripted, CREMA-D). ``natural``:
#: subtle, overlapping prosody in more noise, as in spontaneous speech (MSP-Podcast).
STYLES: dict[str, Style] = {
    "mixed": Style(expressiveness=1.0, spread=1.0, snr_db=(5.0, 30.0)),
    "acted": Style(expressiveness=1.6, spread=0.7, snr_db=(20.0, 35.0)),
    "natural": Style(expressiveness=0.55, spread=1.2, snr_db=(0.0, 15.0)),
}
MIN_CLIPS = 12  # 4 emotions in each of 3 speaker-disjoint splits

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


# ---------------------------------------------------------------------------------------------------------
# Languages: vowel formant targets (Hz, male-like vocal tract) and consonant inventories.
# ---------------------------------------------------------------------------------------------------------
# Consonant spec: (kind, params). kind: "fric" (centre Hz, bandwidth Hz, voiced), "stop" (burst centre Hz,
# voiced), "nasal"/"approx" (F1-F4 targets).
_CONSONANTS: dict[str, tuple[str, tuple]] = {
    "s": ("fric", (5500.0, 2500.0, False)), "sh": ("fric", (3000.0, 1800.0, False)),
    "f": ("fric", (6000.0, 6000.0, False)), "h": ("fric", (1600.0, 3000.0, False)),
    "z": ("fric", (5000.0, 2500.0, True)), "v": ("fric", (5500.0, 6000.0, True)),
    "p": ("stop", (900.0, False)), "t": ("stop", (4000.0, False)), "k": ("stop", (2200.0, False)),
    "b": ("stop", (800.0, True)), "d": ("stop", (3500.0, True)), "g": ("stop", (2000.0, True)),
    "m": ("nasal", (250.0, 1100.0, 2300.0, 3300.0)), "n": ("nasal", (250.0, 1500.0, 2500.0, 3300.0)),
    "l": ("approx", (360.0, 1300.0, 2700.0, 3600.0)), "r": ("approx", (420.0, 1250.0, 1650.0, 3300.0)),
    "w": ("approx", (300.0, 700.0, 2200.0, 3300.0)), "y": ("approx", (280.0, 2200.0, 2900.0, 3500.0)),
}


@dataclasses.dataclass(frozen=True)
class Language:
    """A toy language: vowels with formant targets, onsets and codas, word lengths, stress pattern."""

    name: str
    vowels: dict[str, tuple[float, float, float, float]]
    onsets: tuple[str, ...]  # "" = no onset; "st" style clusters are lists joined by "+"
    codas: tuple[str, ...]
    coda_prob: float
    syllables_per_word: tuple[int, ...]
    fixed_stress: bool  # True: first syllable of each word accented (syllable-timed feel)
    duration_jitter: float  # relative sd of syllable durations


LANGUAGE_SPECS: dict[str, Language] = {
    "en": Language(
        name="en",
        vowels={
            "i": (270.0, 2290.0, 3010.0, 3500.0), "ih": (390.0, 1990.0, 2550.0, 3500.0),
            "eh": (530.0, 1840.0, 2480.0, 3500.0), "ae": (660.0, 1720.0, 2410.0, 3500.0),
            "aa": (730.0, 1090.0, 2440.0, 3500.0), "ao": (570.0, 840.0, 2410.0, 3400.0),
            "uh": (440.0, 1020.0, 2240.0, 3400.0), "u": (300.0, 870.0, 2240.0, 3400.0),
            "ah": (640.0, 1190.0, 2390.0, 3500.0), "er": (490.0, 1350.0, 1690.0, 3300.0),
        },
        onsets=("", "p", "t", "k", "b", "d", "g", "s", "sh", "f", "h", "m", "n", "l", "r", "w", "z", "v",
                "s+t", "p+l", "k+r", "s+p"),
        codas=("t", "d", "k", "n", "m", "s", "z", "l", "r", "n+d", "s+t"),
        coda_prob=0.45,
        syllables_per_word=(1, 1, 1, 2, 2, 3),
        fixed_stress=False,
        duration_jitter=0.25,
    ),
    "xx": Language(
        name="xx",
        vowels={
            "a": (750.0, 1300.0, 2500.0, 3600.0), "e": (450.0, 1950.0, 2600.0, 3600.0),
            "i": (290.0, 2300.0, 3000.0, 3700.0), "o": (450.0, 850.0, 2600.0, 3500.0),
            "u": (320.0, 750.0, 2400.0, 3400.0), "y": (280.0, 1800.0, 2150.0, 3300.0),
            "oe": (420.0, 1500.0, 2300.0, 3400.0),
        },
        onsets=("", "p", "t", "k", "m", "n", "l", "s", "h", "v", "y", "sh"),
        codas=("n",),
        coda_prob=0.12,
        syllables_per_word=(2, 2, 3, 3, 4),
        fixed_stress=True,
        duration_jitter=0.12,
    ),
}
_BANDWIDTHS = np.array([80.0, 100.0, 150.0, 220.0])  # formant bandwidths, Hz (x the speaker's factor)

# Segment kinds (integer codes keep the per-frame arrays numeric).
_SIL, _VOWEL, _FRIC, _CLOSURE, _BURST, _NASAL, _APPROX = range(7)


@dataclasses.dataclass
class _Segments:
    """Parallel per-segment arrays for one utterance (built in Python, consumed vectorised)."""

    dur: list[float] = dataclasses.field(default_factory=list)
    kind: list[int] = dataclasses.field(default_factory=list)
    formants: list[tuple[float, float, float, float] | None] = dataclasses.field(default_factory=list)
    voice: list[float] = dataclasses.field(default_factory=list)
    noise: list[float] = dataclasses.field(default_factory=list)
    noise_fc: list[float] = dataclasses.field(default_factory=list)
    noise_bw: list[float] = dataclasses.field(default_factory=list)
    bw_scale: list[float] = dataclasses.field(default_factory=list)
    accent: list[float] = dataclasses.field(default_factory=list)  # accent height (0..1) on vowels

    def add(self, dur: float, kind: int, formants=None, voice=0.0, noise=0.0, fc=1000.0, bw=2000.0,
            bw_scale=1.0, accent=0.0) -> None:
        self.dur.append(dur)
        self.kind.append(kind)
        self.formants.append(formants)
        self.voice.append(voice)
        self.noise.append(noise)
        self.noise_fc.append(fc)
        self.noise_bw.append(bw)
        self.bw_scale.append(bw_scale)
        self.accent.append(accent)


def plan_utterance(
    language: str, rate_sps: float, duration_s: float, rng: np.random.Generator
) -> tuple[_Segments, str]:
    """Choose words and syllables and time their segments until about ``duration_s`` seconds are filled.

    Returns:
        The segments (leading and trailing silence included) and the transcript: syllables joined by
        ``-`` within a word, words by spaces (e.g. ``"ka-mi lo-sen"``).
    """
    lang = LANGUAGE_SPECS[language]
    vowel_names = list(lang.vowels)
    seg = _Segments()
    lead, trail = rng.uniform(0.08, 0.25), rng.uniform(0.12, 0.3)
    seg.add(lead, _SIL)
    budget = duration_s - lead - trail
    words: list[str] = []
    t = 0.0
    syl_dur_mean = 1.0 / rate_sps
    words_since_pause = 0
    while t < budget or not words:
        n_syl = int(rng.choice(lang.syllables_per_word))
        syllables = []
        for s in range(n_syl):
            accented = (s == 0) if lang.fixed_stress else (rng.random() < 0.35)
            dur = syl_dur_mean * math.exp(rng.normal(0.0, lang.duration_jitter)) * (1.25 if accented else 0.9)
            onset = str(rng.choice(lang.onsets))
            vowel = vowel_names[int(rng.integers(len(vowel_names)))]
            coda = str(rng.choice(lang.codas)) if rng.random() < lang.coda_prob else ""
            parts = [c for c in onset.split("+") if c] + [vowel] + [c for c in coda.split("+") if c]
            n_cons = len(parts) - 1
            # Vowel takes ~55 % of the syllable; consonants share the rest.
            v_dur = dur * (0.55 if n_cons else 1.0)
            c_dur = (dur - v_dur) / n_cons if n_cons else 0.0
            for c in [c for c in onset.split("+") if c]:
                _add_consonant(seg, c, c_dur, rng)
            height = rng.uniform(0.6, 1.2) if accented else rng.uniform(0.0, 0.25)
            seg.add(v_dur, _VOWEL, lang.vowels[vowel], voice=1.0, accent=height)
            for c in [c for c in coda.split("+") if c]:
                _add_consonant(seg, c, c_dur, rng)
            syllables.append(onset.replace("+", "") + vowel + coda.replace("+", ""))
            t += dur
            if t >= budget:  # cut the word short rather than overshoot the clip length by a whole word
                break
        words.append("-".join(syllables))
        words_since_pause += 1
        if t < budget and words_since_pause >= 3 and rng.random() < 0.25:
            pause = rng.uniform(0.12, 0.3)
            seg.add(pause, _SIL)
            t += pause
            words_since_pause = 0
    seg.add(trail, _SIL)
    return seg, " ".join(words)


def _add_consonant(seg: _Segments, c: str, dur: float, rng: np.random.Generator) -> None:
    kind, p = _CONSONANTS[c]
    dur = max(dur, 0.03)
    if kind == "fric":
        fc, bw, voiced = p
        seg.add(dur, _FRIC, None, voice=0.35 if voiced else 0.0, noise=0.6 if voiced else 1.0, fc=fc, bw=bw)
    elif kind == "stop":
        fc, voiced = p
        burst = min(0.015 + 0.01 * rng.random(), dur * 0.4)
        seg.add(dur - burst, _CLOSURE, None, voice=0.12 if voiced else 0.0)
        seg.add(burst, _BURST, None, voice=0.3 if voiced else 0.0, noise=1.2, fc=fc, bw=max(fc, 1500.0))
    elif kind == "nasal":
        seg.add(dur, _NASAL, p, voice=0.45, bw_scale=2.0)
    else:
        seg.add(dur, _APPROX, p, voice=0.75, bw_scale=1.4)


# ---------------------------------------------------------------------------------------------------------
# Signal generation
# ---------------------------------------------------------------------------------------------------------
SYNTH_RATE = 16000  # every voice is rendered at 16 kHz, then resampled with soxr to the file's rate
_CTRL_RATE = 1000  # control rate of F0 and segment envelopes (Hz); linear upsampling to audio rate
_UP = SYNTH_RATE // _CTRL_RATE
_FRAME = 512  # STFT frame (32 ms at 16 kHz); hop = frame / 2
# FFT length: the frame plus 16 ms of zero padding for the filter tails. The narrowest formant (~64 Hz)
# has decayed by ~30 dB after 256 samples, so what wraps around is inaudible, at 3/4 the cost of 2x padding.
_NFFT = _FRAME + _FRAME // 2
_BW_LO, _BW_HI = 0.8, 1.25


def _upsample(ctrl: np.ndarray) -> np.ndarray:
    """Linear interpolation from the control rate to 16 kHz: [M] -> [(M - 1) * 16]."""
    w = np.arange(_UP, dtype=np.float32) / _UP
    c = ctrl.astype(np.float32)
    return (c[:-1, None] + (c[1:] - c[:-1])[:, None] * w[None, :]).ravel()


def _segment_times(seg: _Segments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dur = np.asarray(seg.dur)
    starts = np.concatenate([[0.0], np.cumsum(dur)[:-1]])
    return dur, starts, starts + dur / 2


def f0_contour(seg: _Segments, base_f0: float, prosody: Prosody, n_ctrl: int, rng: np.random.Generator) -> np.ndarray:
    """F0 at the 1 kHz control rate: base x emotion shift, declination, accent bumps on vowels, slow drift.

    Returns:
        f0: [n_ctrl] float64, Hz, clipped to [55, 600].
    """
    dur, _, centres = _segment_times(seg)
    accent = np.asarray(seg.accent)
    tc = np.arange(n_ctrl) / _CTRL_RATE
    total = max(tc[-1], 1e-3)
    declination = rng.uniform(1.5, 3.5) * tc / total
    on = accent > 0
    width = np.maximum(dur[on] * 0.7, 0.04)
    bumps = (accent[on] * prosody.f0_range_st)[None, :] * np.exp(
        -0.5 * ((tc[:, None] - centres[on][None, :]) / width[None, :]) ** 2
    )
    knots = rng.normal(0.0, 0.4, size=int(total / 0.3) + 2)  # slow drift, ~0.4 st
    drift = np.interp(tc, np.linspace(0.0, total, len(knots)), knots)
    st = prosody.f0_shift_st - declination + bumps.sum(axis=1) + drift
    return np.clip(base_f0 * 2.0 ** (st / 12.0), 55.0, 600.0)


def _pulse_table(open_quotient: float, size: int = 4096) -> np.ndarray:
    """One period of Rosenberg-like glottal flow sampled on ``size`` phase points: opening cosine half over
    60 % of the open phase, closing quarter-cosine over 40 %, then closed."""
    frac = np.arange(size) / size
    tp, tn = 0.6 * open_quotient, 0.4 * open_quotient
    return np.where(
        frac < tp,
        0.5 * (1.0 - np.cos(np.pi * frac / tp)),
        np.where(frac < tp + tn, np.cos(0.5 * np.pi * np.minimum((frac - tp) / tn, 1.0)), 0.0),
    ).astype(np.float32)


def glottal_source(
    f0: np.ndarray, open_quotient: float, jitter: float, shimmer: float, breathiness: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Differentiated Rosenberg-like glottal flow with jitter, shimmer and aspiration noise, at 16 kHz.

    Args:
        f0: [T] Hz per sample.
        open_quotient: open phase as a fraction of the period.
        jitter, shimmer: per-period relative sds of period length and amplitude.
        breathiness: aspiration noise level, louder while the glottis is open.

    Returns:
        source: [T] float32, roughly unit-scale.
    """
    phase0 = np.cumsum(f0, dtype=np.float64) / SYNTH_RATE
    n_periods = int(phase0[-1]) + 3
    f0j = f0 * (1.0 + jitter * rng.standard_normal(n_periods, dtype=np.float32))[phase0.astype(np.int64)]
    phase = np.cumsum(f0j, dtype=np.float64) / SYNTH_RATE
    idx = phase.astype(np.int64)
    table = _pulse_table(open_quotient)
    # Table look-up instead of evaluating cosines per sample: 4096 points per period is far finer than a
    # 16 kHz period (<= 290 samples).
    flow = table[((phase - idx) * len(table)).astype(np.int64)]
    flow *= (1.0 + shimmer * rng.standard_normal(int(idx[-1]) + 2, dtype=np.float32))[idx]
    src = np.diff(flow, prepend=np.float32(0.0)) * np.float32(SYNTH_RATE / 1000.0)  # lip radiation (d/dt)
    if breathiness > 0:
        src += np.float32(3.0 * breathiness) * rng.standard_normal(len(src), dtype=np.float32) * (0.3 + flow)
    return src


def _segment_envelope(seg: _Segments, values: Sequence[float], n_ctrl: int) -> np.ndarray:
    """Per-segment levels with 8 ms linear ramps at the edges, at the control rate: [n_ctrl]."""
    dur, starts, _ = _segment_times(seg)
    ramp = np.minimum(0.008, dur / 4)
    xp = np.stack([starts + ramp, starts + dur - ramp], axis=1).ravel()
    fp = np.repeat(np.asarray(values, dtype=np.float64), 2)
    return np.interp(np.arange(n_ctrl) / _CTRL_RATE, xp, fp)


def _resonator_coefficients(freq: np.ndarray, bw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Klatt resonator ``y[n] = A x[n] + B y[n-1] + C y[n-2]`` at 16 kHz (unit gain at DC).

    Args:
        freq, bw: centre frequencies and bandwidths, Hz, any shape [...].

    Returns:
        (A, B, C), each [...].
    """
    r = np.exp(-np.pi * bw / SYNTH_RATE)
    b = 2.0 * r * np.cos(2.0 * np.pi * freq / SYNTH_RATE)
    c = -r * r
    return 1.0 - b - c, b, c


def _denominator_polynomial(factors: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Multiply per-frame second-order denominators ``1 - B z^-1 - C z^-2`` into one polynomial.

    Evaluating one order-2k polynomial on the FFT bins is a single small matmul, instead of k complex
    [frames, bins] products.

    Args:
        factors: list of (B [F], C [F]).

    Returns:
        coefficients of ``z^0 .. z^-2k``: [F, 2k + 1] float64.
    """
    p = np.zeros((len(factors[0][0]), 2 * len(factors) + 1))
    p[:, 0] = 1.0
    for k, (b, c) in enumerate(factors):
        top = 2 * k + 2
        q = p[:, : top + 1].copy()
        q[:, 1:top + 1] -= b[:, None] * p[:, :top]
        q[:, 2:top + 1] -= c[:, None] * p[:, : top - 1]
        p[:, : top + 1] = q
    return p


def _inverse_polynomial_response(poly: np.ndarray, gain: np.ndarray | float = 1.0) -> np.ndarray:
    """``gain / poly(e^{-jw})`` on the padded FFT's bins: [F, K] complex64.

    Real and imaginary parts are two real einsums: no complex temporaries, and no BLAS call whose thread
    pool would fight the corpus workers for cores.
    """
    n = poly.shape[1]
    re = np.einsum("fk,kb->fb", poly, _ZCOS[:n])
    im = np.einsum("fk,kb->fb", poly, _ZSIN[:n])
    scale = np.asarray(gain, dtype=np.float64).reshape(-1, 1) / (re * re + im * im)
    out = np.empty(re.shape, dtype=np.complex64)
    out.real = re * scale
    out.imag = -im * scale
    return out


_K = _NFFT // 2 + 1
# z^-k = e^{-jwk}, k = 0..10, on the bins of the padded FFT, split in real and imaginary parts: [11, K].
_ZCOS = np.cos(2 * np.pi * np.outer(np.arange(11), np.arange(_K)) / _NFFT)
_ZSIN = -np.sin(2 * np.pi * np.outer(np.arange(11), np.arange(_K)) / _NFFT)
_WIN = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_FRAME) / _FRAME)).astype(np.float32)  # periodic Hann


def render_utterance(seg: _Segments, speaker: Speaker, prosody: Prosody, rng: np.random.Generator) -> np.ndarray:
    """Synthesise the clean voice for planned segments at 16 kHz.

    Returns:
        wav: [T] float32 at 16 kHz, unnormalised (T is a multiple of 16 samples, i.e. whole milliseconds).
    """
    n_ctrl = int(round(sum(seg.dur) * _CTRL_RATE)) + 1
    f0 = _upsample(f0_contour(seg, speaker.base_f0, prosody, n_ctrl, rng))
    n = len(f0)
    voice_env = _segment_envelope(seg, seg.voice, n_ctrl)
    noise_env = _segment_envelope(seg, seg.noise, n_ctrl)
    voiced = glottal_source(f0, prosody.open_quotient, prosody.jitter, prosody.shimmer, prosody.breathiness, rng)
    voiced *= _upsample(voice_env)
    noise = rng.standard_normal(n, dtype=np.float32) * _upsample(noise_env)

    N, H = _FRAME, _FRAME // 2
    n_frames = -(-(n + H) // H)

    def frames(x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        buf = np.zeros((n_frames + 1) * H, dtype=np.float32)
        buf[H:H + n] = x
        view = np.lib.stride_tricks.sliding_window_view(buf, N)[::H][:n_frames]
        return (view if rows is None else view[rows]) * _WIN

    # Frame i covers signal samples [(i - 1) H, (i + 1) H): its centre is i H.
    t_frames = np.arange(n_frames) * (H / SYNTH_RATE)
    dur, starts, centres = _segment_times(seg)
    has_f = np.array([f is not None for f in seg.formants])
    targets = np.array([f for f in seg.formants if f is not None]) * speaker.vtl_factor  # [S', 4]
    formants = np.stack([np.interp(t_frames, centres[has_f], targets[:, j]) for j in range(4)], axis=1)
    formants = np.minimum(formants, 0.45 * SYNTH_RATE)
    bw_scale = np.interp(t_frames, centres, np.asarray(seg.bw_scale))
    bws = _BANDWIDTHS[None, :] * (bw_scale * speaker.bandwidth_factor)[:, None]
    a, b, c = _resonator_coefficients(formants, bws)
    # Spectral tilt: one-pole low-pass (1 - t) / (1 - t z^-1), folded in as a degenerate second-order factor.
    tilt = np.full(n_frames, prosody.tilt)
    poly = _denominator_polynomial([(b[:, j], c[:, j]) for j in range(4)] + [(tilt, np.zeros(n_frames))])
    gain = a.prod(axis=1) * (1.0 - prosody.tilt)
    spec = np.fft.rfft(frames(voiced), n=_NFFT)
    spec *= _inverse_polynomial_response(poly, gain)

    # Noise path only where frames hear any noise (consonants are ~1/4 of the time).
    frame_noise = np.interp(t_frames, np.arange(n_ctrl) / _CTRL_RATE, noise_env)
    rows = np.flatnonzero(np.convolve(frame_noise > 0, np.ones(3), mode="same") > 0)
    if len(rows):
        seg_idx = np.clip(np.searchsorted(starts, t_frames[rows], side="right") - 1, 0, len(dur) - 1)
        fc = np.minimum(np.asarray(seg.noise_fc)[seg_idx], 0.42 * SYNTH_RATE)
        _, b, c = _resonator_coefficients(fc, np.asarray(seg.noise_bw)[seg_idx])
        h_noise = _inverse_polynomial_response(_denominator_polynomial([(b, c)]))
        h_noise *= 0.5 / np.abs(h_noise).max(axis=1, keepdims=True)  # peak gain 0.5: level set by seg.noise
        spec[rows] += np.fft.rfft(frames(noise, rows), n=_NFFT) * h_noise

    y = np.fft.irfft(spec, n=_NFFT)  # [F, 3H] float32: filter tails land in the zero padding
    blocks = np.zeros((n_frames + 2, H), dtype=np.float32)
    for j in range(_NFFT // H):
        blocks[j:j + n_frames] += y[:, j * H:(j + 1) * H]
    return blocks.ravel()[H:H + n]


def _fast_fft_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: pocketfft is fast on those, slow on large prime factors."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def background_noise(kind: str, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS background noise at 16 kHz: ``white``, ``pink`` (1/f power) or ``babble`` (speech-shaped
    noise with the summed syllabic envelopes of six distant talkers).

    Returns:
        noise: [n_samples] float32.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise kind must be one of {NOISE_KINDS}, got {kind!r}")
    if kind == "white":
        x = rng.standard_normal(n_samples, dtype=np.float32)
        return x / np.float32(np.sqrt(np.mean(x**2)) + 1e-12)
    m = _fast_fft_length(n_samples)
    spec = np.fft.rfft(rng.standard_normal(m, dtype=np.float32))
    f = np.fft.rfftfreq(m, 1.0 / SYNTH_RATE).astype(np.float32)
    if kind == "pink":
        shape = 1.0 / np.sqrt(np.maximum(f, 20.0))
    else:
        # Long-term speech spectrum: voiced bumps at 500 and 1500 Hz, -12 dB/oct above 2 kHz.
        shape = (np.exp(-0.5 * ((f - 500) / 300) ** 2) + 0.6 * np.exp(-0.5 * ((f - 1500) / 500) ** 2)
                 + 0.25 / (1.0 + (f / 2000.0) ** 2))
    x = np.fft.irfft(spec * shape, n=m)[:n_samples]
    if kind == "babble":
        n_ctrl = -(-n_samples // _UP) + 1
        knots = np.abs(rng.normal(size=(6, int(n_ctrl / 125) + 2)))  # ~8 syllables/s per talker
        tk = np.linspace(0.0, n_ctrl - 1, knots.shape[1])
        env = sum(np.interp(np.arange(n_ctrl), tk, k) for k in knots)
        x = x * _upsample(env)[:n_samples]
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """Everything the plan fixes about one clip (the rest is drawn from the clip's own seed)."""

    index: int
    utt_id: str
    speaker: Speaker
    emotion: str


def synthesize_clip(spec: ClipSpec, seed: int, sample_rate: int | None = None,
                    style: str = "mixed") -> tuple[np.ndarray, dict]:
    """Synthesise one clip: voice, background noise, loudness; deterministic in ``(seed, spec.index)``.

    Args:
        spec: the clip's speaker, emotion and index.
        seed: the corpus seed.
        sample_rate: force a rate (Hz); ``None`` draws one of ``SAMPLE_RATES``.
        style: a key of :data:`STYLES` (acted / natural / mixed).

    Returns:
        wav: [T] float32 in (-1, 1) at the clip's sample rate, and a dict of its parameters (``INFO_COLUMNS``
        minus ``utt_id``, plus ``arousal``, ``valence``, ``dominance``, ``transcript``).
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, spec.index)))
    sr = int(rng.choice(SAMPLE_RATES)) if sample_rate is None else int(sample_rate)
    file_format = str(rng.choice(FILE_FORMATS))
    look = STYLES[style]
    prosody = draw_prosody(spec.emotion, rng, spec.speaker.expressiveness * look.expressiveness, look.spread)
    arousal, valence, dominance = affect_dimensions(prosody, spec.emotion, rng)
    target = rng.uniform(1.5, 4.7)  # planning overshoots by up to one syllable
    seg, transcript = plan_utterance(spec.speaker.language, prosody.rate_sps, target, rng)
    voice = render_utterance(seg, spec.speaker, prosody, rng)
    kind = str(rng.choice(NOISE_KINDS))
    snr_db = float(rng.uniform(*look.snr_db))
    speech_rms = float(np.sqrt(np.mean(voice**2))) + 1e-9
    wav = voice + background_noise(kind, len(voice), rng) * np.float32(speech_rms * 10.0 ** (-snr_db / 20.0))
    if sr != SYNTH_RATE:
        # Band-limited to 8 kHz like upsampled wideband recordings; the pool must resample it back.
        wav = soxr.resample(wav, SYNTH_RATE, sr, quality="HQ")
    # Loudness is an emotion cue: the peak level follows the drawn energy (0.3-0.95 full scale, no clipping).
    peak = float(np.clip(0.65 * 10.0 ** (prosody.energy_db / 20.0), 0.3, 0.95))
    wav = (wav * (peak / (np.abs(wav).max() + 1e-9))).astype(np.float32)
    info = {
        "duration": round(len(wav) / sr, 4), "sample_rate": sr, "file_format": file_format, "noise": kind,
        "snr_db": round(snr_db, 2), "gender": spec.speaker.gender,
        "f0_mean_hz": round(spec.speaker.base_f0 * 2.0 ** (prosody.f0_shift_st / 12.0), 2),
        **{p: round(getattr(prosody, p), 5) for p in PROSODY_PARAMS if p != "f0_shift_st"},
        "arousal": arousal, "valence": valence, "dominance": dominance, "transcript": transcript,
    }
    return wav, info


# ---------------------------------------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------------------------------------
def plan_corpus(n: int, seed: int, n_speakers: int | None = None) -> list[ClipSpec]:
    """Speakers, their speaker-disjoint splits and languages, and each clip's speaker and emotion.

    Speakers are split about 70/15/15; within each split clips go round-robin over its speakers and the
    emotions are a shuffled balanced list, so every split with >= 4 clips has every emotion and each
    speaker gets a mix. Genders and languages alternate within each split (not confounded with each other).

    Args:
        n: number of clips (>= 12).
        seed: corpus seed.
        n_speakers: default ``max(12, n // 12)``, capped at ``n // 2`` so each speaker has >= 2 clips.
    """
    rng, split_of = plan_speaker_splits(n, seed, n_speakers if n_speakers is not None else max(12, n // 12))
    speakers: list[Speaker] = []
    pos_in_split: dict[str, int] = {}
    for i, split in enumerate(split_of):
        j = pos_in_split.get(split, 0)
        pos_in_split[split] = j + 1
        gender = "mf"[j % 2]
        language = LANGUAGES[(j // 2 + (j % 2)) % 2]  # m-en, f-xx, m-xx, f-en, ...
        base_f0 = rng.normal(115.0, 15.0) if gender == "m" else rng.normal(205.0, 22.0)
        vtl = rng.normal(1.0, 0.05) if gender == "m" else rng.normal(1.15, 0.05)
        speakers.append(Speaker(
            speaker_id=f"spk{i:04d}", gender=gender, base_f0=round(float(base_f0), 2),
            vtl_factor=round(float(vtl), 4), expressiveness=round(float(rng.uniform(0.6, 1.3)), 3),
            bandwidth_factor=round(float(rng.uniform(_BW_LO, _BW_HI)), 3),
            language=language, split=split,
        ))
    return assign_clips(n, speakers, rng, lambda i, spk, emotion: ClipSpec(i, f"synth_{i:06d}", spk, emotion))


def plan_speaker_splits(n: int, seed: int, n_speakers: int) -> tuple[np.random.Generator, list[str]]:
    """The plan's generator and each speaker's split (about 70/15/15, train first), shared by the corpus
    generators.

    Args:
        n: number of clips (>= 12). seed: corpus seed. n_speakers: wanted speakers, capped at ``n // 2`` (each
            speaker gets >= 2 clips) and raised to 3 (one per split).
    """
    if n < MIN_CLIPS:
        raise ValueError(f"n must be >= {MIN_CLIPS} (4 emotions x 3 speaker-disjoint splits), got {n}")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    n_spk = max(3, min(n_speakers, n // 2))
    n_test = max(1, round(SPLIT_FRACTIONS["test"] * n_spk))
    n_dev = max(1, round(SPLIT_FRACTIONS["dev"] * n_spk))
    return rng, ["train"] * (n_spk - n_dev - n_test) + ["dev"] * n_dev + ["test"] * n_test


def assign_clips(n: int, speakers: list, rng: np.random.Generator, make_spec) -> list:
    """Clips per split in proportion to its speakers (at least one per emotion), round-robin over the split's
    speakers, with a shuffled balanced list of emotions per split.

    Args:
        speakers: objects with a ``split`` attribute, in plan order. make_spec: ``(index, speaker, emotion) ->
            spec``.
    """
    per_split = {s: sum(1 for spk in speakers if spk.split == s) for s in ("train", "dev", "test")}
    counts = {s: max(len(EMOTIONS), round(n * per_split[s] / len(speakers))) for s in ("dev", "test")}
    counts["train"] = n - counts["dev"] - counts["test"]
    specs = []
    for split in ("train", "dev", "test"):
        spk = [s for s in speakers if s.split == split]
        emotions = np.resize(np.arange(len(EMOTIONS)), counts[split])
        rng.shuffle(emotions)
        for c, e in enumerate(emotions):
            specs.append(make_spec(len(specs), spk[c % len(spk)], EMOTIONS[int(e)]))
    return specs


def _make_clip(args: tuple[ClipSpec, int, str, str]) -> dict:
    spec, seed, out_dir, style = args
    wav, info = synthesize_clip(spec, seed, style=style)
    rel = f"audio/{spec.speaker.split}/{spec.utt_id}.{info['file_format']}"
    sf.write(os.path.join(out_dir, rel), wav, info["sample_rate"], subtype="PCM_16",
             format=info["file_format"].upper())
    return {"utt_id": spec.utt_id, "path": rel, "label": spec.emotion, "speaker": spec.speaker.speaker_id,
            "language": spec.speaker.language, "split": spec.speaker.split, **info}


def generate_corpus(
    out_dir: str | os.PathLike, n: int = 720, seed: int = 0, *, workers: int = 1, corpus: str = "synth",
    n_speakers: int | None = None, progress: bool = False, style: str = "mixed",
) -> pd.DataFrame:
    """Write a synthetic corpus: ``out_dir/audio/<split>/<utt_id>.{wav,flac}``, ``manifest.csv`` and
    ``clip_info.csv`` (generation parameters per clip).

    The output depends only on ``(n, seed, corpus, n_speakers, style)``: same arguments give byte-identical files,
    whatever ``workers`` is (each clip's randomness comes from ``SeedSequence(seed, spawn_key=(1, index))``).

    Args:
        out_dir: folder to write to (created; existing files with the same names are overwritten).
        n: number of clips (>= 12).
        seed: corpus seed.
        workers: processes used to synthesise and encode (1 = in this process).
        corpus: value of the ``corpus`` column; also the clip ids' prefix (``<corpus>_000123``), so corpora
            generated under different names never share an id.
        n_speakers: see :func:`plan_corpus`.
        progress: show a tqdm bar.
        style: ``mixed`` (default), ``acted`` or ``natural`` (:data:`STYLES`): how far apart and how noisy
            the emotions are. An acted and a natural corpus run the two-stage adaptation and the cross-corpus
            matrix end to end (``jobs.adapt``, ``jobs.evaluate``).

    Returns:
        One row per clip: the ``CORPUS_COLUMNS`` (``path`` relative to ``out_dir``) followed by the rest of
        ``INFO_COLUMNS`` (``duration`` in seconds, ``sample_rate`` in Hz, ...).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if style not in STYLES:
        raise ValueError(f"style must be one of {list(STYLES)}, got {style!r}")
    out = Path(out_dir)
    specs = [dataclasses.replace(s, utt_id=f"{corpus}_{s.index:06d}") for s in plan_corpus(n, seed, n_speakers)]
    for split in ("train", "dev", "test"):
        (out / "audio" / split).mkdir(parents=True, exist_ok=True)
    jobs = [(s, seed, str(out), style) for s in specs]
    return write_corpus(out, _make_clip, jobs, workers=workers, corpus=corpus, info_columns=INFO_COLUMNS,
                        progress=progress, desc="synth clips")


def write_corpus(out: Path, make_clip, jobs: list, *, workers: int, corpus: str, info_columns: tuple[str, ...],
                 progress: bool, desc: str) -> pd.DataFrame:
    """Render every clip job with ``make_clip`` (in this process, or ``workers`` spawned processes; rows come
    back in job order either way) and write ``manifest.csv`` (:data:`CORPUS_COLUMNS`) and ``clip_info.csv``
    (``info_columns``) under ``out``. Shared by the corpus generators.

    Returns:
        One row per clip: ``CORPUS_COLUMNS`` then the rest of ``info_columns``.
    """
    n = len(jobs)
    if workers == 1:
        rows = list(_maybe_tqdm(map(make_clip, jobs), n, progress, desc))
    else:
        # spawn: safe whatever threads the parent runs (Ray, torch); results are ordered by index anyway.
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as ex:
            rows = list(_maybe_tqdm(ex.map(make_clip, jobs, chunksize=max(1, n // (workers * 8))), n, progress,
                                    desc))
    df = pd.DataFrame(rows)
    df["corpus"] = corpus
    df = df[list(CORPUS_COLUMNS) + [c for c in info_columns if c != "utt_id"]]
    df[list(CORPUS_COLUMNS)].to_csv(out / "manifest.csv", index=False)
    df[list(info_columns)].to_csv(out / "clip_info.csv", index=False)
    return df


def _maybe_tqdm(it, total: int, enabled: bool, desc: str):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, unit="clip")


def synthesis_speed(seconds_of_audio: float = 60.0, seed: int = 0) -> dict[str, float]:
    """Measure synthesis cost (no file I/O): ms of compute per second of audio, over the mixed rates.

    Returns:
        ``{"ms_per_audio_s": ..., "clips_per_s": ..., "audio_s": ...}``.
    """
    specs = plan_corpus(max(MIN_CLIPS, int(seconds_of_audio / 3) + 1), seed)
    audio = 0.0
    t0 = time.perf_counter()
    k = 0
    while audio < seconds_of_audio:
        wav, info = synthesize_clip(specs[k % len(specs)], seed + k // len(specs))
        audio += info["duration"]
        k += 1
    dt = time.perf_counter() - t0
    return {"ms_per_audio_s": 1000.0 * dt / audio, "clips_per_s": k / dt, "audio_s": audio}


# ---------------------------------------------------------------------------------------------------------
# Bad files for pool tests
# ---------------------------------------------------------------------------------------------------------
def write_bad_clips(out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write one file per failure mode the pool builder must handle; deterministic.

    Files (``name``: what it is, and what the pool should do):

    * ``corrupt``: ``corrupt.wav``, a RIFF/WAVE header cut off after 12 bytes plus random bytes -> quarantine.
    * ``empty``: ``empty.wav``, 0 bytes -> quarantine.
    * ``not_audio``: ``not_audio.wav``, a UTF-8 text file with a ``.wav`` name -> quarantine.
    * ``nan``: ``nan.wav``, float32 WAV, 1 s at 16 kHz: a 0.5 s valid tone then NaN samples -> quarantine.
    * ``stereo_48k``: ``stereo_48k.wav``, 2 s of synthetic speech, 48 kHz, 2 channels (PCM16), valid ->
      keep (downmix + resample).
    * ``long``: ``long.flac``, 65 s of synthetic speech at 16 kHz, valid -> crop or reject by policy.
    * ``silent``: ``silent.wav``, 2 s of digital zeros at 16 kHz -> quarantine (silent).
    * ``too_short``: ``too_short.wav``, 0.1 s of synthetic speech at 16 kHz -> quarantine (too short).
    * ``missing``: ``missing.wav``, a path that is NOT written -> quarantine (missing).

    Returns:
        name -> path (absolute).
    """
    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(12345)
    paths = {name: out / fname for name, fname in [
        ("corrupt", "corrupt.wav"), ("empty", "empty.wav"), ("not_audio", "not_audio.wav"), ("nan", "nan.wav"),
        ("stereo_48k", "stereo_48k.wav"), ("long", "long.flac"), ("silent", "silent.wav"),
        ("too_short", "too_short.wav"), ("missing", "missing.wav"),
    ]}
    paths["corrupt"].write_bytes(b"RIFF\x24\x80\x00\x00WAVE" + rng.integers(0, 256, 40, dtype=np.uint8).tobytes())
    paths["empty"].write_bytes(b"")
    paths["not_audio"].write_text("this is a transcript, not audio\n", encoding="utf-8")
    t = np.arange(16000) / 16000
    nan_wav = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    nan_wav[8000:] = np.nan
    sf.write(paths["nan"], nan_wav, 16000, subtype="FLOAT", format="WAV")
    speaker = Speaker("spk_bad", "f", 200.0, 1.15, 1.0, 1.0, "en", "train")
    stereo, _ = synthesize_clip(ClipSpec(0, "bad_stereo", speaker, "happy"), 7, sample_rate=48000)
    stereo = stereo[: 2 * 48000]
    sf.write(paths["stereo_48k"], np.stack([stereo, 0.8 * stereo], axis=1), 48000, subtype="PCM_16")
    pieces, total = [], 0
    k = 0
    while total < 65 * 16000:
        wav, _ = synthesize_clip(ClipSpec(k, f"bad_long{k}", speaker, EMOTIONS[k % 4]), 7, sample_rate=16000)
        pieces.append(wav)
        total += len(wav)
        k += 1
    sf.write(paths["long"], np.concatenate(pieces)[: 65 * 16000], 16000, subtype="PCM_16", format="FLAC")
    sf.write(paths["silent"], np.zeros(2 * 16000, dtype=np.float32), 16000, subtype="PCM_16")
    short, _ = synthesize_clip(ClipSpec(1, "bad_short", speaker, "neutral"), 7, sample_rate=16000)
    mid = len(short) // 2
    sf.write(paths["too_short"], short[mid: mid + 1600], 16000, subtype="PCM_16")
    paths["missing"].unlink(missing_ok=True)
    return paths

"""Languages and utterance plans: vowel formant targets, consonant inventories, segment timelines."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

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
FORMANT_BANDWIDTHS = np.array([80.0, 100.0, 150.0, 220.0])  #: formant bandwidths, Hz (x the speaker's factor)

# Segment kinds (integer codes keep the per-frame arrays numeric).
_SIL, _VOWEL, _FRIC, _CLOSURE, _BURST, _NASAL, _APPROX = range(7)


@dataclasses.dataclass
class Segments:
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
) -> tuple[Segments, str]:
    """Choose words and syllables and time their segments until about ``duration_s`` seconds are filled.

    Returns:
        The segments (leading and trailing silence included) and the transcript: syllables joined by
        ``-`` within a word, words by spaces (e.g. ``"ka-mi lo-sen"``).
    """
    lang = LANGUAGE_SPECS[language]
    vowel_names = list(lang.vowels)
    seg = Segments()
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


def _add_consonant(seg: Segments, c: str, dur: float, rng: np.random.Generator) -> None:
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

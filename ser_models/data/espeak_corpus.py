"""A second benchmark corpus: real phonetic English from espeak-ng, with emotion carried by prosody alone.

:mod:`ser_models.data.synth` renders its own toy languages with its own source-filter voice, so a model (or
an active-learning strategy) could in principle be tuned to quirks of that one generator. This corpus comes
from a different generator altogether: espeak-ng's formant synthesiser speaking real English sentences with
real phonemes, accents and voice variants, so label-efficiency results can be checked on two unrelated
synthetic corpora.

How it differs from ``synth.py``:

* **Voices.** A speaker is an espeak-ng English accent (``en-us``, ``en-gb-scotland``, ``en-029``, ...) times
  a voice variant (``+m3``, ``+f2``, ``+Andrea``, ``+klatt`` ...; the variant fixes gender-like pitch, voice
  quality and for some the Klatt synthesiser), plus a per-speaker base pitch, pitch range, speed and
  amplitude and an expressiveness factor. Voices are drawn without replacement per gender until the
  accent x variant grid is used up, so most speakers sound different.
* **Emotion is prosody only.** espeak-ng has no emotion model and no voice-quality controls per utterance,
  so each emotion moves five prosody controls away from the speaker's baseline: pitch (``-p``, 0-99),
  pitch range (SSML ``<prosody range="N%">``: espeak-ng 1.51 has no ``-P`` flag; values above ~200 % are
  capped by espeak itself), speed (``-s``, words per minute), amplitude (``-a``, 0-200) and word gap
  (``-g``, 10 ms units). Offsets are drawn per clip from overlapping per-emotion Gaussians
  (:data:`EMOTION_OFFSETS`) and scaled by the speaker's expressiveness: angry is loud, fast and wide; happy
  is high, wide and fast-ish; sad is low, narrow, slow, quiet and gappy; neutral sits in the middle. There
  is no jitter, breathiness or spectral-tilt cue as in ``synth.py``: this corpus is harder on voice quality
  and easier on nothing.
* **Text carries no label.** Transcripts are drawn from :data:`SENTENCES` (emotion-neutral English, 4-12
  words) independently of the emotion.
* **Babble is real speech.** The ``babble`` background is the sum of 3-5 other espeak-ng talkers speaking
  other sentences at neutral prosody, not shaped noise.

The rest mirrors ``synth.py``: ``manifest.csv`` with :data:`CORPUS_COLUMNS`, ``clip_info.csv`` with the
generation parameters, audio under ``audio/<split>/``, speaker-disjoint ~70/15/15 splits with every emotion
in every split, balanced emotions, background noise at a per-clip SNR, a random overall gain (loudness stays
partly informative), a file rate drawn from 16/22.05/44.1 kHz (resampled with soxr from espeak-ng's 22.05
kHz), WAV (PCM16) or FLAC chosen per clip, and arousal / valence / dominance on a [1, 5] scale from the
drawn prosody plus the emotion prior.

Determinism: every random choice comes from ``numpy.random.SeedSequence(seed, spawn_key=(1, index))`` (the
plan from ``spawn_key=(0,)``), and espeak-ng itself is deterministic (the same arguments give the same
bytes, checked for every variant used), so a corpus is byte-identical across runs and worker counts *for
the same espeak-ng version and data*: :func:`espeak_version` reports it.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import os
import shutil
import subprocess
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

from ser_models.data.synth import (
    EMOTIONS,
    FILE_FORMATS,
    SAMPLE_RATES,
    assign_clips,
    plan_speaker_splits,
    write_corpus,
)
from ser_models.exceptions import CorpusError

ESPEAK_BINARY = "espeak-ng"
_INSTALL_HINT = "install it with `apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` (macOS)"

#: espeak-ng English accents (all ship with espeak-ng-data; the ``mb-*`` MBROLA voices need extra packages).
ACCENTS: tuple[str, ...] = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)
# Voice variants (files in espeak-ng-data/voices/!v) that sound like a plain human voice. Left out on purpose:
# whisper variants (no F0, so no pitch cue at all), robots and heavy-echo effects, and novelty voices.
MALE_VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Andy", "Lee", "Denis", "Diogo", "Henrique", "Hugo",
    "Jacky", "Mario", "Michael", "Mike", "antonio", "gustave", "john", "marcelo", "michel", "miguel", "norbert",
    "pablo", "pedro", "quincy", "robert", "travis", "victor", "iven3", "klatt", "klatt3", "edward", "Gene",
    "ed", "paul", "max", "boris", "grandpa",
)
FEMALE_VARIANTS: tuple[str, ...] = (
    "f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "anika", "aunty", "belinda", "linda", "steph",
    "steph2", "steph3", "grandma", "shelby", "zac",
)
NOISE_KINDS: tuple[str, ...] = ("white", "pink", "babble")
SNR_DB: tuple[float, float] = (5.0, 25.0)  # background noise, dB, uniform per clip
GAIN_DB: tuple[float, float] = (-9.0, -1.0)  # overall gain, dB, uniform per clip (see _render_clip)

#: Prosody controls, in espeak-ng's units: ``pitch`` (-p, 0-99), ``pitch_range`` (SSML range, % of the
#: voice's default), ``rate_wpm`` (-s, words/min), ``amplitude`` (-a, 0-200), ``word_gap`` (-g, x 10 ms).
PROSODY_PARAMS: tuple[str, ...] = ("pitch", "pitch_range", "rate_wpm", "amplitude", "word_gap")
#: Per-emotion (mean, sd) of each control's offset from the speaker's baseline (word gap: absolute). The
#: means are scaled by the speaker's expressiveness; the sds are wide on purpose so the classes overlap.
EMOTION_OFFSETS: dict[str, dict[str, tuple[float, float]]] = {
    "neutral": {"pitch": (0.0, 7.0), "pitch_range": (0.0, 25.0), "rate_wpm": (0.0, 14.0),
                "amplitude": (0.0, 12.0), "word_gap": (0.5, 0.8)},
    "happy": {"pitch": (15.0, 8.0), "pitch_range": (55.0, 30.0), "rate_wpm": (15.0, 15.0),
              "amplitude": (12.0, 14.0), "word_gap": (0.2, 0.6)},
    "angry": {"pitch": (8.0, 8.0), "pitch_range": (40.0, 30.0), "rate_wpm": (28.0, 16.0),
              "amplitude": (40.0, 16.0), "word_gap": (0.0, 0.6)},
    "sad": {"pitch": (-10.0, 6.0), "pitch_range": (-45.0, 18.0), "rate_wpm": (-32.0, 14.0),
            "amplitude": (-30.0, 12.0), "word_gap": (2.5, 1.5)},
}
PROSODY_LIMITS: dict[str, tuple[float, float]] = {
    "pitch": (0.0, 99.0), "pitch_range": (10.0, 200.0), "rate_wpm": (90.0, 320.0), "amplitude": (25.0, 180.0),
    "word_gap": (0.0, 8.0),
}
# Valence is barely in prosody (happy and angry are both aroused), so it is mostly the emotion prior.
VALENCE_PRIOR = {"neutral": 3.0, "happy": 4.0, "angry": 1.8, "sad": 2.0}
DOMINANCE_PRIOR = {"neutral": 0.0, "happy": 0.2, "angry": 0.8, "sad": -0.8}

#: Per-clip generation parameters written to ``clip_info.csv``.
INFO_COLUMNS: tuple[str, ...] = (
    "utt_id", "duration", "sample_rate", "file_format", "noise", "snr_db", "gain_db", "gender", "voice",
    "expressiveness", *PROSODY_PARAMS,
)

#: Emotion-neutral English sentences (4-12 words); a clip's text is drawn independently of its emotion.
SENTENCES: tuple[str, ...] = (
    "The train leaves from the north platform at noon.",
    "Please put the blue folder on the second shelf.",
    "The library closes at six on weekdays.",
    "We moved the meeting to the small room upstairs.",
    "There are four chairs around the kitchen table.",
    "The bus stops twice before it reaches the station.",
    "I wrote the address on the back of the envelope.",
    "The report has twelve pages and three tables.",
    "Turn left after the bridge and follow the river.",
    "The package arrived on Tuesday morning.",
    "She keeps the spare keys in the top drawer.",
    "The museum opens its new wing next month.",
    "He parked the car behind the grocery store.",
    "Water boils at a lower temperature in the mountains.",
    "The form asks for your name and date of birth.",
    "Our office is on the third floor of the building.",
    "The printer needs a new cartridge soon.",
    "They planted tomatoes along the garden fence.",
    "The lecture starts at half past nine.",
    "You can pay with cash or with a card.",
    "The bakery sells bread, rolls and a few cakes.",
    "A ferry crosses the lake every two hours.",
    "The window in the hallway faces the street.",
    "I need to return these books by Friday.",
    "The clock in the tower was repaired last year.",
    "He listed the items in alphabetical order.",
    "The recipe calls for two cups of flour.",
    "The road is closed between the farm and the village.",
    "Most of the files are stored on the server.",
    "She took the stairs instead of the elevator.",
    "The map shows three paths through the forest.",
    "The store is next to the post office.",
    "We counted the boxes before loading the truck.",
    "The new schedule will be posted on the board.",
    "The cat sleeps on the chair by the window.",
    "The river runs south toward the coast.",
    "Remember to bring a pencil and a notebook.",
    "The guide pointed at the old stone wall.",
    "Dinner is usually served at seven.",
    "The street lights turn on at dusk.",
    "He sorted the letters into two piles.",
    "The room has a desk, a lamp and a bed.",
    "The flight lands in the afternoon.",
    "Each team member gets a copy of the plan.",
    "The fence was painted white last summer.",
    "The coffee machine is in the corner of the lobby.",
    "I checked the weather before leaving the house.",
    "The garden path leads to a wooden gate.",
    "They measured the length of the hallway.",
    "The exam covers the first five chapters.",
    "The shop on the corner sells newspapers.",
    "The kettle is on the counter near the sink.",
    "We took the long way around the park.",
    "The manual explains how to change the filter.",
    "There is a bench under the old oak tree.",
    "The phone number is written on the card.",
    "The second train goes directly to the airport.",
    "The boxes in the garage are labelled by year.",
    "Our neighbours have a small brown dog.",
    "The meeting notes were sent to everyone.",
    "The bridge was built about a hundred years ago.",
    "The tickets are checked at the entrance.",
)


def espeak_binary() -> str:
    """Path of the espeak-ng executable.

    Raises:
        CorpusError: espeak-ng is not on ``PATH`` (the message says how to install it).
    """
    path = shutil.which(ESPEAK_BINARY)
    if path is None:
        raise CorpusError(f"{ESPEAK_BINARY} is not on PATH, and the espeak corpus needs it: {_INSTALL_HINT}")
    return path


def espeak_version() -> str:
    """espeak-ng's version line, e.g. ``"eSpeak NG text-to-speech: 1.51  Data at: ..."``: the corpus bytes
    depend on it."""
    out = subprocess.run([espeak_binary(), "--version"], capture_output=True, text=True, check=False, timeout=30)
    return out.stdout.strip()


@dataclasses.dataclass(frozen=True)
class EspeakSpeaker:
    """A speaker: an espeak-ng voice plus its own prosody baseline.

    Attributes:
        speaker_id: e.g. ``"spk0007"``.
        gender: ``"m"`` or ``"f"`` (from the voice variant).
        voice: espeak-ng voice, ``"<accent>+<variant>"``, e.g. ``"en-gb-scotland+m3"``.
        pitch: neutral ``-p`` value (0-99).
        pitch_range: neutral SSML pitch range, % of the voice's default.
        rate_wpm: neutral speed, words per minute.
        amplitude: neutral ``-a`` value (0-200).
        expressiveness: factor on how far this speaker's emotions move away from neutral (0.6-1.3).
        split: ``"train"``, ``"dev"`` or ``"test"``.
    """

    speaker_id: str
    gender: str
    voice: str
    pitch: float
    pitch_range: float
    rate_wpm: float
    amplitude: float
    expressiveness: float
    split: str


@dataclasses.dataclass(frozen=True)
class EspeakClipSpec:
    """Everything the plan fixes about one clip (the rest is drawn from the clip's own seed)."""

    index: int
    utt_id: str
    speaker: EspeakSpeaker
    emotion: str


def plan_espeak_corpus(n: int, seed: int, n_speakers: int | None = None,
                       class_prior: tuple[float, ...] | None = None) -> list[EspeakClipSpec]:
    """Speakers, their speaker-disjoint splits and voices, and each clip's speaker and emotion.

    Speakers are split about 70/15/15; within each split clips go round-robin over its speakers and the
    emotions are a shuffled balanced list, so every split with >= 4 clips has every emotion. Genders alternate
    within each split.

    Args:
        n: number of clips (>= 12).
        seed: corpus seed.
        n_speakers: default ``max(12, n // 20)``, capped at ``n // 2`` so each speaker has >= 2 clips.
    """
    rng, split_of = plan_speaker_splits(n, seed, n_speakers if n_speakers is not None else max(12, n // 20))
    # Each gender walks a shuffled accent x variant grid, so voices repeat only once the grid is used up.
    voices = {}
    for g, variants in (("m", MALE_VARIANTS), ("f", FEMALE_VARIANTS)):
        grid = [f"{a}+{v}" for a, v in itertools.product(ACCENTS, variants)]
        voices[g] = itertools.cycle([grid[i] for i in rng.permutation(len(grid))])
    speakers: list[EspeakSpeaker] = []
    pos_in_split: dict[str, int] = {}
    for i, split in enumerate(split_of):
        j = pos_in_split.get(split, 0)
        pos_in_split[split] = j + 1
        gender = "mf"[j % 2]
        speakers.append(EspeakSpeaker(
            speaker_id=f"spk{i:04d}", gender=gender, voice=next(voices[gender]),
            pitch=round(float(np.clip(rng.normal(50.0, 8.0), 25.0, 75.0)), 2),
            pitch_range=round(float(np.clip(rng.normal(100.0, 12.0), 70.0, 130.0)), 2),
            rate_wpm=round(float(np.clip(rng.normal(165.0, 14.0), 130.0, 200.0)), 2),
            amplitude=round(float(np.clip(rng.normal(95.0, 8.0), 75.0, 115.0)), 2),
            expressiveness=round(float(rng.uniform(0.6, 1.3)), 3), split=split,
        ))
    return assign_clips(n, speakers, rng, lambda i, spk, emotion: EspeakClipSpec(i, f"espeak_{i:06d}", spk, emotion),
                        class_prior)


def draw_espeak_prosody(speaker: EspeakSpeaker, emotion: str, rng: np.random.Generator) -> dict[str, float]:
    """One clip's prosody controls: the speaker's baseline plus an emotion offset (see :data:`EMOTION_OFFSETS`).

    Returns:
        ``{param: value}`` for :data:`PROSODY_PARAMS`, clipped to :data:`PROSODY_LIMITS`; ``word_gap`` is an
        integer (espeak-ng's ``-g`` takes one).
    """
    if emotion not in EMOTION_OFFSETS:
        raise ValueError(f"emotion must be one of {EMOTIONS}, got {emotion!r}")
    out = {}
    for p in PROSODY_PARAMS:
        mean, sd = EMOTION_OFFSETS[emotion][p]
        neutral = EMOTION_OFFSETS["neutral"][p][0]
        base = 0.0 if p == "word_gap" else getattr(speaker, p)
        value = base + neutral + speaker.expressiveness * (mean - neutral) + rng.normal(0.0, sd)
        lo, hi = PROSODY_LIMITS[p]
        out[p] = float(np.clip(value, lo, hi))
    out["word_gap"] = float(round(out["word_gap"]))
    return {p: round(v, 2) for p, v in out.items()}


def _offset_stats() -> dict[str, tuple[float, float]]:
    """Mean and sd of each control's emotion offset over the equal-weight emotion mixture (fixed z-scores)."""
    stats = {}
    for p in PROSODY_PARAMS:
        means = np.array([EMOTION_OFFSETS[e][p][0] for e in EMOTIONS])
        sds = np.array([EMOTION_OFFSETS[e][p][1] for e in EMOTIONS])
        stats[p] = (float(means.mean()), float(np.sqrt((sds**2).mean() + means.var())))
    return stats


_OFFSET_STATS = _offset_stats()


def espeak_affect_dimensions(prosody: dict[str, float], speaker: EspeakSpeaker, emotion: str,
                             rng: np.random.Generator) -> tuple[float, float, float]:
    """Arousal, valence and dominance on a [1, 5] scale from the clip's prosody relative to its speaker.

    Arousal follows amplitude, rate, pitch range and pitch; dominance follows amplitude and rate plus the
    emotion prior; valence is mostly the emotion prior plus a small lift from a lively pitch range. Each gets
    rater noise (sd 0.3).
    """

    def z(p: str) -> float:
        base = 0.0 if p == "word_gap" else getattr(speaker, p)
        mean, sd = _OFFSET_STATS[p]
        return (prosody[p] - base - mean) / sd

    arousal = 3.0 + 0.45 * z("amplitude") + 0.3 * z("rate_wpm") + 0.3 * z("pitch_range") + 0.2 * z("pitch")
    valence = VALENCE_PRIOR[emotion] + 0.2 * z("pitch_range")
    dominance = 3.0 + 0.5 * z("amplitude") + 0.2 * z("rate_wpm") + 0.4 * DOMINANCE_PRIOR[emotion]
    vals = np.clip(np.array([arousal, valence, dominance]) + rng.normal(0.0, 0.3, size=3), 1.0, 5.0)
    return tuple(round(float(v), 3) for v in vals)  # type: ignore[return-value]


def speak(text: str, voice: str, *, pitch: float = 50, pitch_range: float = 100, rate_wpm: float = 175,
          amplitude: float = 100, word_gap: float = 0, binary: str | None = None) -> tuple[np.ndarray, int]:
    """Run espeak-ng once and return its audio.

    The text goes in on stdin as SSML (escaped), never through a shell. espeak-ng writes 16-bit samples and
    clips above roughly ``-a 120`` for loud variants, so it is asked for half the amplitude and the float
    result is doubled: same level, no clipping.

    Args:
        text: plain text (not SSML).
        voice: ``"<accent>+<variant>"``.
        pitch: ``-p``, 0-99. pitch_range: SSML range, % of the voice's default. rate_wpm: ``-s``, words/min.
        amplitude: ``-a``, 0-200. word_gap: ``-g``, x 10 ms.
        binary: path of espeak-ng (default: looked up on PATH).

    Returns:
        wav: [T] float32 (peak may exceed 1 for amplitudes above ~120), and its sample rate in Hz (22050 for
        espeak-ng's own voices).

    Raises:
        CorpusError: espeak-ng is missing, fails, or returns no audio.
    """
    cmd = [binary or espeak_binary(), "--stdout", "--stdin", "-m", "-b", "1", "-v", voice,
           "-p", str(round(pitch)), "-s", str(round(rate_wpm)), "-a", str(round(amplitude / 2)),
           "-g", str(round(word_gap))]
    ssml = f'<speak><prosody range="{pitch_range:.0f}%">{escape(text)}</prosody></speak>'
    try:
        res = subprocess.run(cmd, input=ssml.encode("utf-8"), capture_output=True, timeout=60, check=False)
    except FileNotFoundError as e:
        raise CorpusError(f"{cmd[0]} could not be run ({e}): {_INSTALL_HINT}") from e
    if res.returncode != 0 or len(res.stdout) <= 44:
        raise CorpusError(f"espeak-ng failed for voice {voice!r} (exit {res.returncode}): "
                          f"{res.stderr.decode('utf-8', 'replace').strip()[:300]}")
    # --stdout writes a streaming WAV header (sizes 0x7fffffff); libsndfile reads up to the real end.
    wav, sr = sf.read(io.BytesIO(res.stdout), dtype="float32")
    if wav.ndim > 1:
        wav = wav.mean(axis=1)
    return wav * np.float32(2.0), int(sr)


def _noise(kind: str, n_samples: int, sr: int, rng: np.random.Generator, binary: str) -> np.ndarray:
    """Unit-RMS background noise: ``white``, ``pink`` (1/f power) or ``babble`` (3-5 espeak-ng talkers).

    Returns:
        noise: [n_samples] float32 at ``sr`` Hz.
    """
    if kind == "white":
        x = rng.standard_normal(n_samples).astype(np.float32)
    elif kind == "pink":
        spec = np.fft.rfft(rng.standard_normal(n_samples))
        f = np.fft.rfftfreq(n_samples, 1.0 / sr)
        x = np.fft.irfft(spec / np.sqrt(np.maximum(f, 20.0)), n=n_samples).astype(np.float32)
    elif kind == "babble":
        x = np.zeros(n_samples, dtype=np.float32)
        for _ in range(int(rng.integers(3, 6))):
            gender = str(rng.choice(["m", "f"]))
            variant = str(rng.choice(MALE_VARIANTS if gender == "m" else FEMALE_VARIANTS))
            voice = f"{rng.choice(ACCENTS)}+{variant}"
            text = " ".join(str(s) for s in rng.choice(SENTENCES, size=3))  # long enough to cover the clip
            talker, tsr = speak(text, voice, pitch=rng.uniform(35, 65), rate_wpm=rng.uniform(150, 190),
                                binary=binary)
            if tsr != sr:
                talker = soxr.resample(talker, tsr, sr, quality="HQ")
            talker = np.roll(np.resize(talker, n_samples), int(rng.integers(n_samples)))  # loop, random start
            x += talker * np.float32(rng.uniform(0.5, 1.0) / (np.sqrt(np.mean(talker**2)) + 1e-9))
    else:
        raise ValueError(f"noise kind must be one of {NOISE_KINDS}, got {kind!r}")
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


def render_espeak_clip(spec: EspeakClipSpec, seed: int, binary: str | None = None) -> tuple[np.ndarray, dict]:
    """Render one clip: speech, background noise, gain, resampling; deterministic in ``(seed, spec.index)``.

    Returns:
        wav: [T] float32 in (-1, 1) at the clip's sample rate, and a dict of its parameters (``INFO_COLUMNS``
        minus ``utt_id``, plus ``arousal``, ``valence``, ``dominance``, ``transcript``).
    """
    binary = binary or espeak_binary()
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, spec.index)))
    sr = int(rng.choice(SAMPLE_RATES))
    file_format = str(rng.choice(FILE_FORMATS))
    prosody = draw_espeak_prosody(spec.speaker, spec.emotion, rng)
    arousal, valence, dominance = espeak_affect_dimensions(prosody, spec.speaker, spec.emotion, rng)
    transcript = str(rng.choice(SENTENCES))
    speech, native_sr = speak(transcript, spec.speaker.voice, binary=binary, **prosody)
    # espeak-ng starts speaking at once; a random lead-in keeps onset time from being a constant.
    speech = np.concatenate([np.zeros(int(rng.uniform(0.05, 0.3) * native_sr), np.float32), speech])
    kind = str(rng.choice(NOISE_KINDS))
    snr_db = float(rng.uniform(*SNR_DB))
    active = np.abs(speech) > 0.02 * np.abs(speech).max()  # SNR against speech, not its pauses
    speech_rms = float(np.sqrt(np.mean(speech[active] ** 2))) + 1e-9
    noise = _noise(kind, len(speech), native_sr, rng, binary)
    wav = speech + noise * np.float32(speech_rms * 10.0 ** (-snr_db / 20.0))
    if sr != native_sr:
        wav = soxr.resample(wav, native_sr, sr, quality="HQ")
    # A random gain hides part of the loudness cue, as recording level does; only clips that would clip are
    # scaled down further (a limiter, so the loudest angry clips lose a little of their lead).
    gain_db = float(rng.uniform(*GAIN_DB))
    wav = wav * np.float32(10.0 ** (gain_db / 20.0))
    peak = float(np.abs(wav).max())
    if peak > 0.98:
        wav = wav * np.float32(0.98 / peak)
    info = {
        "duration": round(len(wav) / sr, 4), "sample_rate": sr, "file_format": file_format, "noise": kind,
        "snr_db": round(snr_db, 2), "gain_db": round(gain_db, 2), "gender": spec.speaker.gender,
        "voice": spec.speaker.voice, "expressiveness": spec.speaker.expressiveness, **prosody,
        "arousal": arousal, "valence": valence, "dominance": dominance, "transcript": transcript,
    }
    return wav.astype(np.float32), info


def _make_clip(args: tuple[EspeakClipSpec, int, str, str]) -> dict:
    spec, seed, out_dir, binary = args
    wav, info = render_espeak_clip(spec, seed, binary)
    rel = f"audio/{spec.speaker.split}/{spec.utt_id}.{info['file_format']}"
    sf.write(os.path.join(out_dir, rel), wav, info["sample_rate"], subtype="PCM_16",
             format=info["file_format"].upper())
    return {"utt_id": spec.utt_id, "path": rel, "label": spec.emotion, "speaker": spec.speaker.speaker_id,
            "language": "en", "split": spec.speaker.split, **info}


def generate_espeak_corpus(
    out_dir: str | os.PathLike, n: int = 2400, seed: int = 0, *, workers: int = 1, corpus: str = "espeak",
    n_speakers: int | None = None, progress: bool = False, class_prior: tuple[float, ...] | None = None,
) -> pd.DataFrame:
    """Write an espeak-ng corpus: ``out_dir/audio/<split>/<utt_id>.{wav,flac}``, ``manifest.csv`` and
    ``clip_info.csv`` (generation parameters per clip).

    The output depends only on ``(n, seed, corpus, n_speakers, class_prior)`` and the espeak-ng version: same arguments
    give byte-identical files, whatever ``workers`` is.

    Args:
        out_dir: folder to write to (created; existing files with the same names are overwritten).
        n: number of clips (>= 12).
        seed: corpus seed.
        workers: processes used to render and encode (1 = in this process); each runs espeak-ng per clip.
        corpus: value of the ``corpus`` column; also the clip ids' prefix (``<corpus>_000123``).
        n_speakers: see :func:`plan_espeak_corpus` (default ``max(12, n // 20)``).
        progress: show a tqdm bar.
        class_prior: shares of the emotions in every split (``parse_class_prior``); None = balanced.

    Returns:
        One row per clip: the ``CORPUS_COLUMNS`` (``path`` relative to ``out_dir``) followed by the rest of
        ``INFO_COLUMNS`` (``duration`` in seconds, ``sample_rate`` in Hz, prosody in espeak-ng's units).

    Raises:
        CorpusError: espeak-ng is not installed or fails.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    binary = espeak_binary()  # fail before planning or spawning anything
    out = Path(out_dir)
    specs = [dataclasses.replace(s, utt_id=f"{corpus}_{s.index:06d}")
             for s in plan_espeak_corpus(n, seed, n_speakers, class_prior)]
    for split in ("train", "dev", "test"):
        (out / "audio" / split).mkdir(parents=True, exist_ok=True)
    jobs = [(s, seed, str(out), binary) for s in specs]
    return write_corpus(out, _make_clip, jobs, workers=workers, corpus=corpus, info_columns=INFO_COLUMNS,
                        progress=progress, desc="espeak clips")

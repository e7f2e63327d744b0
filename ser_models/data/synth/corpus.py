"""A whole corpus: speakers, speaker-disjoint splits, clips rendered in parallel, manifest and clip info."""

from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from ser_models.data.synth.prosody import Speaker
from ser_models.data.synth.spec import (
    CORPUS_COLUMNS,
    EMOTIONS,
    INFO_COLUMNS,
    LANGUAGES,
    MIN_CLIPS,
    SPLIT_FRACTIONS,
    STYLES,
)
from ser_models.data.synth.voice import ClipSpec, synthesize_clip

# ---------------------------------------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------------------------------------
#: Range of the speakers' formant-bandwidth factor.
_BW_LO, _BW_HI = 0.8, 1.25


def plan_corpus(n: int, seed: int, n_speakers: int | None = None,
                class_prior: tuple[float, ...] | None = None) -> list[ClipSpec]:
    """Speakers, their speaker-disjoint splits and languages, and each clip's speaker and emotion.

    Speakers are split about 70/15/15; within each split clips go round-robin over its speakers and the
    emotions are a shuffled balanced list, so every split with >= 4 clips has every emotion and each
    speaker gets a mix. Genders and languages alternate within each split (not confounded with each other).

    Args:
        n: number of clips (>= 12).
        seed: corpus seed.
        n_speakers: default ``max(12, n // 12)``, capped at ``n // 2`` so each speaker has >= 2 clips.
        class_prior: shares of the emotions in every split (:func:`assign_clips`); None = balanced.
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
    return assign_clips(n, speakers, rng, lambda i, spk, emotion: ClipSpec(i, f"synth_{i:06d}", spk, emotion),
                        class_prior)


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


def parse_class_prior(text: str) -> tuple[float, ...]:
    """``"neutral=0.55,happy=0.2,angry=0.1,sad=0.15"`` -> shares in :data:`EMOTIONS` order, summing to 1.

    Raises:
        ValueError: an unknown or missing emotion, a repeated one, or a share that is not a positive number.
    """
    shares: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or name not in EMOTIONS or name in shares:
            raise ValueError(f"class prior {text!r}: {part!r} must be EMOTION=SHARE with EMOTION one of "
                             f"{list(EMOTIONS)}, each once")
        try:
            shares[name] = float(value)
        except ValueError:
            raise ValueError(f"class prior {text!r}: the share of {name!r} is not a number: {value!r}") from None
        if not shares[name] > 0:
            raise ValueError(f"class prior {text!r}: the share of {name!r} must be > 0 (every split needs "
                             "every emotion)")
    missing = [e for e in EMOTIONS if e not in shares]
    if missing:
        raise ValueError(f"class prior {text!r} has no share for {missing}")
    total = sum(shares.values())
    return tuple(shares[e] / total for e in EMOTIONS)


def emotion_counts(total: int, prior: tuple[float, ...]) -> np.ndarray:
    """Clips per emotion for ``total`` clips: at least one each, the rest by the prior with largest-remainder
    rounding (so the counts add up to ``total`` exactly).

    Returns:
        [len(EMOTIONS)] int counts.
    """
    k = len(EMOTIONS)
    p = np.asarray(prior, dtype=float)
    want = (total - k) * p / p.sum()
    counts = np.floor(want).astype(int)
    order = np.argsort(-(want - counts), kind="stable")
    counts[order[: total - k - counts.sum()]] += 1
    return counts + 1


def assign_clips(n: int, speakers: list, rng: np.random.Generator, make_spec,
                 class_prior: tuple[float, ...] | None = None) -> list:
    """Clips per split in proportion to its speakers (at least one per emotion), round-robin over the split's
    speakers, with a shuffled list of emotions per split: balanced, or drawn to ``class_prior`` (the same
    shares in every split, like a natural pool that is mostly neutral).

    Args:
        speakers: objects with a ``split`` attribute, in plan order. make_spec: ``(index, speaker, emotion) ->
            spec``.
        class_prior: shares of :data:`EMOTIONS` (:func:`parse_class_prior`); None = balanced.
    """
    per_split = {s: sum(1 for spk in speakers if spk.split == s) for s in ("train", "dev", "test")}
    counts = {s: max(len(EMOTIONS), round(n * per_split[s] / len(speakers))) for s in ("dev", "test")}
    counts["train"] = n - counts["dev"] - counts["test"]
    specs = []
    for split in ("train", "dev", "test"):
        spk = [s for s in speakers if s.split == split]
        if class_prior is None:
            emotions = np.resize(np.arange(len(EMOTIONS)), counts[split])
        else:
            emotions = np.repeat(np.arange(len(EMOTIONS)), emotion_counts(counts[split], class_prior))
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
    class_prior: tuple[float, ...] | None = None,
) -> pd.DataFrame:
    """Write a synthetic corpus: ``out_dir/audio/<split>/<utt_id>.{wav,flac}``, ``manifest.csv`` and
    ``clip_info.csv`` (generation parameters per clip).

    The output depends only on ``(n, seed, corpus, n_speakers, style, class_prior)``: same arguments give byte-identical files,
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
        class_prior: shares of the emotions (:func:`parse_class_prior`), e.g. mostly neutral like natural
            speech; None = balanced.

    Returns:
        One row per clip: the ``CORPUS_COLUMNS`` (``path`` relative to ``out_dir``) followed by the rest of
        ``INFO_COLUMNS`` (``duration`` in seconds, ``sample_rate`` in Hz, ...).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if style not in STYLES:
        raise ValueError(f"style must be one of {list(STYLES)}, got {style!r}")
    out = Path(out_dir)
    specs = [dataclasses.replace(s, utt_id=f"{corpus}_{s.index:06d}") for s in plan_corpus(n, seed, n_speakers, class_prior)]
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

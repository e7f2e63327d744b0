"""Write a synthetic demo/benchmark corpus: audio files at mixed rates/formats plus ``manifest.csv``.

    python -m jobs.make_demo_pool outputs/demo/corpus --n 720 --seed 0 [--workers 2]
    python -m jobs.make_demo_pool outputs/acted/corpus --n 480 --seed 1 --corpus acted --style acted
    python -m jobs.make_demo_pool outputs/espeak/corpus --engine espeak --n 2400 --seed 0
    python -m jobs.make_demo_pool outputs/neutral/corpus --n 2400 --class-prior neutral=0.55,happy=0.2,angry=0.1,sad=0.15

Same ``--n``/``--seed`` give byte-identical files, whatever ``--workers`` is. ``--engine synth`` (default) is
the project's own voice synthesizer (``ser_models.data.synth``); ``--engine espeak`` speaks real English
sentences with espeak-ng (``ser_models.data.espeak_corpus``; needs ``apt-get install espeak-ng``).
"""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd

from ser_models.config import invoked_as
from ser_models.data.espeak_corpus import espeak_version, generate_espeak_corpus
from ser_models.data.synth import STYLES, generate_corpus
from ser_models.data.synth.corpus import parse_class_prior
from ser_models.ownership import claim_output, recognise_csv


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(
        prog=invoked_as("jobs.make_demo_pool"),
        description="Generate a synthetic emotional-speech corpus (4 emotions, noisy, speaker-disjoint "
        "train/dev/test) as WAV/FLAC files at 16/22.05/44.1 kHz plus manifest.csv.",
    )
    parser.add_argument("out_dir", help="folder to write audio/, manifest.csv and clip_info.csv into")
    parser.add_argument("--engine", default="synth", choices=["synth", "espeak"],
                        help="synth (default): the project's own voice synthesizer, 2 toy languages; "
                             "espeak: real English sentences spoken by espeak-ng voices")
    parser.add_argument("--n", type=int, default=720, help="number of clips (>= 12; default 720)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1; output is identical)")
    parser.add_argument("--corpus", default=None, help="value of the manifest's corpus column (and the clip ids' "
                        "prefix); default: the engine's name")
    parser.add_argument("--style", default=None, choices=list(STYLES),
                        help="synth only. mixed (default); acted: exaggerated, well separated emotions in little "
                             "noise; natural: subtle, overlapping emotions in more noise")
    parser.add_argument("--class-prior", default=None, metavar="EMOTION=SHARE,...",
                        help="shares of the emotions in every split, e.g. neutral=0.55,happy=0.2,angry=0.1,sad=0.15 "
                             "(natural speech is mostly neutral); default: balanced")
    args = parser.parse_args(argv)
    if args.n < 12 or args.workers < 1:
        parser.error(f"--n must be >= 12 and --workers >= 1, got --n {args.n} --workers {args.workers}")
    if args.engine == "espeak" and args.style is not None:
        parser.error("--style applies to --engine synth only; the espeak corpus has one style")
    corpus = args.corpus or args.engine
    try:
        prior = None if args.class_prior is None else parse_class_prior(args.class_prior)
    except ValueError as exc:
        parser.error(f"--class-prior: {exc}")


    t0 = time.perf_counter()
    # A new or empty folder, or a corpus this job wrote (its manifest and clip table read back): a folder of a
    # person's own files is refused before anything is written.
    with claim_output(args.out_dir, "corpus", key="out_dir", recognise=recognise_csv(
            {"manifest.csv": ("utt_id", "path"), "clip_info.csv": ("utt_id",)}, ("audio",))):
        if args.engine == "synth":
            df = generate_corpus(args.out_dir, n=args.n, seed=args.seed, workers=args.workers, corpus=corpus,
                                 progress=sys.stderr.isatty(), style=args.style or "mixed", class_prior=prior)
        else:
            print(espeak_version())
            df = generate_espeak_corpus(args.out_dir, n=args.n, seed=args.seed, workers=args.workers, corpus=corpus,
                                        progress=sys.stderr.isatty(), class_prior=prior)
        seconds = time.perf_counter() - t0
        audio_s = float(df["duration"].sum())
        print(f"wrote {len(df)} clips to {args.out_dir}/manifest.csv")
        print(pd.crosstab(df["label"], df["split"], margins=True).to_string(), end="\n\n")
        print(pd.crosstab(df["language"], df["split"], margins=True).to_string(), end="\n\n")
        print("files: " + ", ".join(f"{k}: {v}" for k, v in df.groupby(["sample_rate", "file_format"]).size().items()))
        print(f"speakers: {df['speaker'].nunique()}; audio: {audio_s / 60:.1f} min "
              f"(clips {df['duration'].min():.2f}-{df['duration'].max():.2f} s)")
        print(f"took {seconds:.1f} s ({len(df) / seconds:.1f} clips/s, "
              f"{1000 * seconds / audio_s:.2f} ms per second of audio, {args.workers} worker(s))")
    return df

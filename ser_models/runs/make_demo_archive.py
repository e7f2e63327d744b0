"""Write a synthetic archive of long recordings (podcast episodes, two-channel calls) with speech-region truth.

    python -m jobs.make_demo_archive outputs/archive --episodes 4 --calls 4 --seed 0 \\
        --episode-minutes 3 6 --call-minutes 1 3 --class-prior 0.7,0.12,0.1,0.08 --workers 2

Writes ``audio/`` (WAV, FLAC, a few MP3 and M4A), ``recordings.csv`` (the recordings manifest ``jobs.segment``
reads), ``truth.csv`` (one row per speech region, with its emotion and speaker) and ``music.csv``. Same
arguments give byte-identical WAV/FLAC files, whatever ``--workers`` is.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from ser_models.config import invoked_as
from ser_models.data.synth import EMOTIONS, generate_archive, parse_class_prior
from ser_models.ownership import claim_output, recognise_csv


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog=invoked_as("jobs.make_demo_archive"), description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to write audio/, recordings.csv, truth.csv and music.csv into")
    parser.add_argument("--episodes", type=int, default=4, help="mono podcast-like episodes (default 4)")
    parser.add_argument("--calls", type=int, default=4, help="two-channel 8 kHz calls (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="archive seed (default 0)")
    parser.add_argument("--episode-minutes", type=float, nargs=2, default=(3.0, 6.0), metavar=("LOW", "HIGH"))
    parser.add_argument("--call-minutes", type=float, nargs=2, default=(1.0, 3.0), metavar=("LOW", "HIGH"))
    parser.add_argument("--snr-db", type=float, nargs=2, default=(30.0, 10.0), metavar=("A", "B"),
                        help="range of the noise floor's SNR against the speech, dB (default 30 10)")
    parser.add_argument("--music-share", type=float, default=0.5, help="fraction of episodes with music")
    parser.add_argument("--m4a-share", type=float, default=0.25, help="fraction of files written as M4A (AAC)")
    parser.add_argument("--class-prior", default=None, metavar="SHARES",
                        help=f"emotion shares per utterance, in {','.join(EMOTIONS)} order (0.7,0.12,0.1,0.08) "
                             "or by name (neutral=0.7,happy=0.12,...); default: uniform")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1; output is identical)")
    args = parser.parse_args(argv)
    text, prior = args.class_prior, None
    if text is not None and "=" not in text:  # bare shares in EMOTIONS order
        if len(text.split(",")) != len(EMOTIONS):
            parser.error(f"--class-prior: {text!r} needs {len(EMOTIONS)} shares ({','.join(EMOTIONS)})")
        text = ",".join(f"{e}={s}" for e, s in zip(EMOTIONS, text.split(",")))
    try:
        prior = None if text is None else parse_class_prior(text)
    except ValueError as exc:
        parser.error(f"--class-prior: {exc}")


    t0 = time.perf_counter()
    # A new or empty folder, or an archive this job wrote (its tables read back): anything else is refused.
    with claim_output(args.out_dir, "corpus", key="out_dir", recognise=recognise_csv(
            {"recordings.csv": ("recording", "path")}, ("audio", "truth.csv", "music.csv"))):
        try:
            out = generate_archive(args.out_dir, seed=args.seed, n_episodes=args.episodes, n_calls=args.calls,
                                   episode_minutes=tuple(args.episode_minutes), call_minutes=tuple(args.call_minutes),
                                   snr_db=tuple(args.snr_db), music_share=args.music_share, class_prior=prior,
                                   m4a_share=args.m4a_share, workers=args.workers)
        except ValueError as exc:
            parser.error(str(exc))
    seconds = time.perf_counter() - t0
    recs = pd.read_csv(out["recordings"])
    for kind, df in recs.groupby("kind", sort=False):
        rates = ", ".join(f"{k} Hz: {v}" for k, v in df.sample_rate.value_counts().sort_index().items())
        formats = ", ".join(f"{k}: {v}" for k, v in df.path.str.rsplit(".", n=1).str[1].value_counts().items())
        print(f"{kind}: {len(df)} files, {df.duration.sum() / 3600:.2f} h ({df.duration.min() / 60:.1f}-"
              f"{df.duration.max() / 60:.1f} min; {rates}; {formats}; music in {int(df.music.sum())})")
    regions = ", ".join(f"{e} {n}" for e, n in out["regions"].items())
    print(f"total: {out['hours']:.2f} h in {len(recs)} files, {sum(out['regions'].values())} speech regions "
          f"({regions}); took {seconds:.1f} s ({out['hours'] * 3600 / seconds:.0f} s of audio per s, "
          f"{args.workers} worker(s))")
    print(f"recordings: {out['recordings']}  truth: {out['truth']}\nnext: python -m jobs.segment "
          f"jobs/configs/segment_demo.yaml recordings={out['recordings']} annotations={out['truth']}")
    return out

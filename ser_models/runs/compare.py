"""Overlay the learning curves of several runs in one PNG and print a table; with several seeds per name,
print the statistics that say what active learning bought.

    python -m jobs.compare RUN_DIR [RUN_DIR ...] [--out compare.png] [--split test] [--names a,b,c]
    python -m jobs.compare runs/after_s{0..9} runs/random_s{0..9} runs/full \\
        --names AFTER*10,random*10,full-data --baseline random

A RUN_DIR is a jobs.after run (metrics.jsonl) or a jobs.finetune run on all data (metrics.json), which is
drawn as a dashed 100% reference line. Runs that share a name are seeds of one strategy: runs of different
names with the same seed (``active.seed``) are compared pair by pair with the baseline (95 % t-intervals,
paired t-test, AUBC, label savings; ``ser_models.planning.evidence``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ser_models.active.curves import plot_learning_curves, table
from ser_models.active.round_report import read_metrics
from ser_models.config import invoked_as
from ser_models.ownership import claim_file
from ser_models.planning.evidence import evidence_report, plot_bands, run_seed, runs_frame


def expand_names(spec: str) -> list[str]:
    """``"AFTER*3,random"`` -> ``["AFTER", "AFTER", "AFTER", "random"]``."""
    out = []
    for part in spec.split(","):
        name, _, count = part.partition("*")
        out += [name] * (int(count) if count else 1)
    return out


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog=invoked_as("jobs.compare"), description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--out", default="compare.png", help="PNG to write")
    parser.add_argument("--split", default="test", choices=["dev", "test"])
    parser.add_argument("--names", default=None, help="comma-separated legend names, NAME*K for K runs in a row "
                        "(default: folder names); runs sharing a name are seeds of one strategy")
    parser.add_argument("--baseline", default="random", help="the name the others are compared with, seed by seed")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    claim_file(args.out, inputs={"runs": list(args.runs)}, key="--out")
    names = expand_names(args.names) if args.names else [Path(r).name for r in args.runs]
    if len(names) != len(args.runs):
        parser.error(f"--names has {len(names)} names for {len(args.runs)} runs")
    runs, seeded = {}, []
    for i, (name, run) in enumerate(zip(names, args.runs)):
        try:
            rows = read_metrics(run)
        except FileNotFoundError as exc:
            parser.error(str(exc))
        runs[name if names.count(name) == 1 else f"{name} #{i}"] = rows
        seed = run_seed(run)
        seeded.append((name, i if seed is None else seed, rows))
    df = table(runs, split=args.split)
    print(df.to_string(index=False))
    if len(set(names)) < len(names):  # several seeds of a strategy: bands and the paired statistics
        frame = runs_frame(seeded, split=args.split)
        at_full = frame[frame.fraction >= 1.0]
        full = float(at_full.test_ua.mean()) if len(at_full) else None
        curves = frame[frame.fraction < 1.0]
        plot_bands(curves, args.out, full=full)
        print("\n" + evidence_report(curves, args.baseline, full=full))
    else:
        plot_learning_curves(runs, args.out, split=args.split)
    print(f"\nwrote {args.out}")
    return df

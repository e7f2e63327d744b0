"""Overlay the learning curves of several runs in one PNG and print a table.

    python -m jobs.compare RUN_DIR [RUN_DIR ...] [--out compare.png] [--split test] [--names a,b,c]

A RUN_DIR is a jobs.after run (metrics.jsonl) or a jobs.finetune run on all data (metrics.json), which is
drawn as a dashed 100% reference line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ser_models.active.loop import plot_learning_curves, read_metrics, table


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog="python -m jobs.compare", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--out", default="compare.png", help="PNG to write")
    parser.add_argument("--split", default="test", choices=["dev", "test"])
    parser.add_argument("--names", default=None, help="comma-separated legend names (default: folder names)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    names = args.names.split(",") if args.names else [Path(r).name for r in args.runs]
    if len(names) != len(args.runs):
        parser.error(f"--names has {len(names)} names for {len(args.runs)} runs")
    runs = {}
    for name, run in zip(names, args.runs):
        try:
            runs[name] = read_metrics(run)
        except FileNotFoundError as exc:
            parser.error(str(exc))
    plot_learning_curves(runs, args.out, split=args.split)
    df = table(runs, split=args.split)
    print(df.to_string(index=False))
    print(f"\nwrote {args.out}")
    return df


if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

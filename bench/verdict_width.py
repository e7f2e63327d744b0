"""How wide ``auto``'s verdict is at each number of labels: the 95 % interval of "does selection pay here" that
every round of a run with ``active.strategy.name=auto`` logs, read from a ``jobs.evidence`` folder's ``auto``
runs (one per seed), and the labels it would take to resolve +-2 UA points.

    .venv/bin/python -m bench.verdict_width [--evidence outputs/bench_demo_console/evidence] [--out FILE]

The default folder is the one ``python -m bench.demo_console`` leaves (``make demo``: demo-2880, 10 seeds, 50 to
400 labels). ``jobs.plan`` quotes the widest labelled count's mean half-width as its figure before any label
(:data:`ser_models.planning.planner.VERDICT_REFERENCE`); a test checks the two agree.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from bench.common import RESULTS_DIR, md_table, write_results

RESULTS = RESULTS_DIR / "verdict_width.md"
#: The half-width (UA points) a verdict must reach to resolve a gain of 2 points.
RESOLVE_POINTS = 2.0


def verdicts(evidence: Path, strategy: str = "auto") -> dict[int, list[dict]]:
    """``{labelled: [verdict, ...]}`` over the ``<strategy>_s<seed>`` runs of an evidence folder (one verdict per
    run and labelled count: the round's decision before its query)."""
    found: dict[int, list[dict]] = {}
    for run in sorted((evidence / "runs").glob(f"{strategy}_s*")):
        for line in (run / "metrics.jsonl").read_text().splitlines():
            verdict = (json.loads(line).get("strategy") or {}).get("verdict")
            if verdict:
                found.setdefault(int(verdict["labelled"]), []).append(verdict)
    return found


def width_rows(found: dict[int, list[dict]]) -> list[list]:
    """One table row per labelled count: runs, mean gain, mean / min / max half-width (points), and the labels
    the mean half-width extrapolates to for +-2 points (``1 / sqrt(labels)``)."""
    rows = []
    for labelled, vs in sorted(found.items()):
        half = np.array([100 * (v["high"] - v["low"]) / 2 for v in vs])
        gain = np.mean([100 * v["gain"] for v in vs])
        mean = round(float(half.mean()), 2)  # the figure quoted, and the one the extrapolation starts from
        resolve = math.ceil(labelled * (mean / RESOLVE_POINTS) ** 2)
        rows.append([labelled, len(vs), f"{gain:+.1f}", f"{mean:.2f}", f"{half.min():.1f}", f"{half.max():.1f}",
                     resolve])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evidence", default="outputs/bench_demo_console/evidence")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    evidence = Path(args.evidence)
    found = verdicts(evidence)
    if not found:
        raise SystemExit(f"no auto run with a verdict under {evidence}/runs: run `python -m bench.demo_console`")
    rows = width_rows(found)
    text = f"""# How wide `auto`'s verdict is, by labels

Command: `.venv/bin/python -m bench.verdict_width --evidence {args.evidence}` (reads the `auto` runs of a
`jobs.evidence` folder; no training). Folder: `make demo`'s evidence run on demo-2880 (generated speech,
2,016 training clips, the pretrained Whisper-tiny of Smart Turn v3.2, a linear head): the run whose report is
`bench/results/demo_report.md`.

Each round of a run with `auto` replays random and the candidate strategies on the labels it has
(`active.strategy.auto_repeats` splits) and logs "does selection pay here" with a 95 % t-interval. One verdict per
seed and labelled count; half-widths in UA points. "Labels for +-2" extrapolates the mean half-width as
`1 / sqrt(labels)`: a guide, not a measurement.

{md_table(["labelled", "verdicts", "mean gain", "mean half-width", "min", "max", "labels for +-2"], rows)}
"""
    path = write_results(args.out, text)
    print(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

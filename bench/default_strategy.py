"""Which strategy the platform ships by default, chosen from the committed 20-seed evidence of every in-repo pool.

    python -m bench.default_strategy           # writes default_strategy.md in bench/results

Reads the ``*_runs.csv`` files that ``jobs.evidence`` and ``bench.label_efficiency`` wrote for each pool (20
paired seeds: under a seed every strategy starts from the same random initial set), computes each run's AUBC
(the normalised area under its UA-by-budget curve, :func:`ser_models.planning.evidence.aubc_table`), and pairs it
with random's under the same seed.

The choice reads **dev** UA only: a default chosen on the test split would be tuned to the numbers it reports.
Test UA is printed beside it. The rule, fixed before reading the numbers:

1. a candidate must never be significantly below random on any pool (the paired 95 % interval of its dev AUBC
   difference must not lie wholly below zero);
2. of those, the one with the largest mean dev-AUBC gain over the pools wins.

Candidates are the strategies every pool ran. On the neutral-heavy pools the margin family ran with class
balancing (``margin+balanced``); it is shown as run and counted as "margin" in the summary.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import RESULTS_DIR, write_results

RESULTS = RESULTS_DIR / "default_strategy.md"

#: (pool name as in BENCHMARKS' pool table, runs file, budget column). 20 seeds each.
POOLS = [
    ("demo-2880", "evidence_demo2880_20seeds_runs.csv", "labelled"),
    ("demo-2880, 25 per query", "evidence_demo2880_20seeds_querybatch25_runs.csv", "labelled"),
    ("demo-720", "label_efficiency_20seeds_runs.csv", "labelled"),
    ("espeak-3000", "label_efficiency_espeak20_runs.csv", "labelled"),
    ("neutral-3000", "label_efficiency_neutral3k_runs.csv", "labelled"),
    ("espeak-neutral-3000", "label_efficiency_espeak_neutral3k_runs.csv", "labelled"),
    ("longform-3.7h", "longform_evidence_runs.csv", "labelled"),
]
#: Rows that are references, not strategies.
REFERENCES = {"full", "all-labels"}
#: Strategies counted as one family in the summary.
FAMILY = {"margin+balanced": "margin"}


def pool_rows(name: str, runs: pd.DataFrame, budget: str) -> list[dict]:
    """Per strategy: dev and test AUBC gain over random (paired, 95 % CI) on one pool."""
    from ser_models.planning.evidence import aubc_table

    runs = runs[~runs.strategy.isin(REFERENCES)]
    out = {}
    for metric in ("dev_ua", "test_ua"):
        table = aubc_table(runs, baseline="random", metric=metric, budget=budget)
        for _, r in table.iterrows():
            if r.strategy == "random":
                continue
            row = out.setdefault(r.strategy, {"pool": name, "strategy": r.strategy,
                                              "family": FAMILY.get(r.strategy, r.strategy),
                                              "seeds": int(r.pairs)})
            key = metric.split("_")[0]
            row.update({f"{key}": 100 * r["diff"], f"{key}_low": 100 * r.diff_low, f"{key}_high": 100 * r.diff_high})
    return list(out.values())


def choose(rows: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """The default by the module's rule, and the per-family summary it read."""
    pools = rows.pool.nunique()
    summary = []
    for family, g in rows.groupby("family"):
        summary.append({"family": family, "pools": g.pool.nunique(), "mean dev gain": g.dev.mean(),
                        "worst dev low": g.dev_low.min(), "below random on": int((g.dev_high < 0).sum()),
                        "mean test gain": g.test.mean()})
    summary = pd.DataFrame(summary).sort_values("mean dev gain", ascending=False)
    eligible = summary[(summary.pools == pools) & (summary["below random on"] == 0)]
    if eligible.empty:
        return "random", summary
    return str(eligible.iloc[0].family), summary


def render(rows: pd.DataFrame, summary: pd.DataFrame, chosen: str) -> str:
    def ci(m, lo, hi):
        return f"{m:+.1f} [{lo:+.1f}, {hi:+.1f}]"

    lines = ["# The default strategy, chosen by evidence", "",
             "`python -m bench.default_strategy`: the committed 20-seed runs of every in-repo pool (files in this "
             "folder), AUBC in UA points (x 100), each strategy's paired difference to random under the same seeds, "
             "95 % t-intervals. Chosen on **dev** UA; test UA shown beside.", "",
             "| pool | strategy | seeds | dev AUBC - random | test AUBC - random |", "|---|---|---:|---:|---:|"]
    for _, r in rows.iterrows():
        flag = " (below random)" if r.dev_high < 0 else ""
        lines.append(f"| {r.pool} | {r.strategy} | {r.seeds} | {ci(r.dev, r.dev_low, r.dev_high)}{flag} | "
                     f"{ci(r.test, r.test_low, r.test_high)} |")
    lines += ["", "## Summary over the pools (margin+balanced counted as margin)", "",
              "| strategy | pools | mean dev gain | worst dev lower bound | pools significantly below random | "
              "mean test gain |", "|---|---:|---:|---:|---:|---:|"]
    for _, s in summary.iterrows():
        lines.append(f"| {s.family} | {s.pools} | {s['mean dev gain']:+.2f} | {s['worst dev low']:+.1f} | "
                     f"{s['below random on']} | {s['mean test gain']:+.2f} |")
    lines += ["", f"**Chosen: `{chosen}`** (never significantly below random on dev, largest mean dev gain).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> tuple[str, pd.DataFrame]:
    ap = argparse.ArgumentParser(prog="python -m bench.default_strategy", description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--dry-run", action="store_true", help="print only")
    args = ap.parse_args(argv)
    rows = []
    for name, file, budget in POOLS:
        path = Path(RESULTS_DIR) / file
        runs = pd.read_csv(path)
        seeds = runs.seed.nunique()
        if seeds < 20:
            raise SystemExit(f"{path}: {seeds} seeds; the choice needs 20 paired seeds per pool")
        rows += pool_rows(name, runs, budget)
    rows = pd.DataFrame(rows)
    chosen, summary = choose(rows)
    text = render(rows, summary, chosen)
    print(text)
    if not args.dry_run:
        write_results(args.results, text)
    assert np.isfinite(rows.dev).all()
    return chosen, rows


if __name__ == "__main__":
    main()

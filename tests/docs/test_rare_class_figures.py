"""The rare-class figures the docs quote equal the committed ``jobs.evidence`` results they come from, and those
results agree with their own runs table.

Pure text and a CSV: no imports of the library.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
NAME = "evidence_demo_angry3_20seeds"
RESULTS = REPO / "bench" / "results" / f"{NAME}.md"


def _flat(text: str) -> str:
    """Whitespace runs collapsed to one space and bold marks dropped: pages wrap and bold anywhere."""
    return re.sub(r"\s+", " ", text.replace("**", ""))


def rare(strategy: str, labels: int) -> tuple[str, str, str | None]:
    """``(mean labels, share in %, paired difference [CI] or None)`` of the report's rarest-class line."""
    text = RESULTS.read_text().split("\nrarest class:", 1)[1]
    pattern = (rf"^\s+{re.escape(strategy)}\s+{labels} labels\s+\d+ seeds\s+(\S+) \[[^\]]+\] \((\S+) %\)"
               rf"(?:\s+(\S+ \[[^\]]+\]))?")
    hits = re.findall(pattern, text, re.M)
    assert len(hits) == 1, f"bench/results/{NAME}.md: {len(hits)} rarest-class lines for {strategy} at {labels}"
    mean, share, diff = hits[0]
    return mean, share, diff or None


def test_the_report_names_angry_at_3_percent_and_matches_its_runs_table():
    assert "rarest class: angry, 3.0 % of the training clips" in RESULTS.read_text()
    runs = pd.read_csv(RESULTS.with_name(f"{NAME}_runs.csv"))
    curves = runs[runs.strategy != "all-labels"]
    assert curves.seed.nunique() == 20 and curves.groupby("strategy").seed.nunique().eq(20).all()
    for strategy, labels in [("random", 100), ("informative_diverse", 400), ("auto", 400)]:
        mean = curves[(curves.strategy == strategy) & (curves.labelled == labels)].labels_angry.mean()
        assert rare(strategy, labels)[0] == f"{mean:.1f}"


def test_the_pages_quote_the_rare_class_figures_of_the_results():
    r = {b: rare("random", b) for b in (100, 200, 400)}
    d = {(s, b): rare(s, b) for s in ("auto", "margin", "informative_diverse", "margin+balanced") for b in (100, 200, 400)}
    expect = _flat(
        f"random labelling found {r[100][0]} angry clips in 100 labels and {r[400][0]} in 400. `informative_diverse` "
        f"found {d['informative_diverse', 200][0]} against {r[200][0]} at 200 labels ({d['informative_diverse', 200][2]}) "
        f"and {d['informative_diverse', 400][0]} at 400 ({d['informative_diverse', 400][2]}); the shipped `auto` "
        f"{d['auto', 400][0]} at 400 ({d['auto', 400][2]}).")
    page = _flat((REPO / "docs" / "what-to-expect.md").read_text())
    assert expect in page, f"docs/what-to-expect.md should quote {expect!r} (bench/results/{NAME}.md)"
    bench = _flat((REPO / "BENCHMARKS.md").read_text())
    rows = ["| random: angry labels (share) | " + " | ".join(f"{r[b][0]} ({r[b][1]} %)" for b in (100, 200, 400)) + " |"]
    rows += [f"| `{s}` | " + " | ".join(d[s, b][2] for b in (100, 200, 400)) + " |"
             for s in ("auto", "margin", "informative_diverse", "margin+balanced")]
    missing = [row for row in rows if _flat(row) not in bench]
    assert not missing, f"BENCHMARKS.md should hold these rows of bench/results/{NAME}.md: {missing}"

"""What selection finds per class: labels per class from a ledger, in the round line, and the rarest class's
labels and share against random's with paired intervals, checked against hand computations and scipy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ser_models.active.round_report import RoundReport
from ser_models.data.ledger import LabelLedger
from ser_models.planning.evidence import (
    class_columns,
    class_means,
    class_yield_report,
    class_yield_table,
    plot_class_yield,
    rarest_class,
)

CLASSES = ["neutral", "happy", "angry", "sad"]


def test_labels_per_class_counts_each_ledger_label_once_in_the_models_order(tmp_path):
    ledger = LabelLedger(tmp_path / "ledger.parquet")
    ledger.append(0, ["a", "b", "c"], ["happy", "angry", "happy"], oracle="simulated")
    ledger.append(0, ["t1", "t2"], ["angry", "angry"], oracle="simulated", purpose="test")  # never trains
    ledger.append(1, ["d", "e", "f"], ["sad", "happy", None], oracle="simulated",
                  dimensions={"arousal": [0.1, 0.2, 0.3]})
    ledger = LabelLedger(tmp_path / "ledger.parquet")
    first = RoundReport.labels_per_class(ledger.as_of(0).labels().values(), CLASSES)
    assert list(first.items()) == [("neutral", 0), ("happy", 2), ("angry", 1), ("sad", 0)]
    second = RoundReport.labels_per_class(ledger.as_of(1).labels().values(), CLASSES)
    # the clip labelled on dimensions only (label None) counts for no class
    assert second == {"neutral": 0, "happy": 3, "angry": 1, "sad": 1} and sum(second.values()) == 5
    assert len(ledger.as_of(1)) == 6
    assert RoundReport.labels_per_class(["happy", "fear"], ["happy"]) == {"happy": 1}  # a label outside the classes
    assert RoundReport.labels_per_class(["happy"], []) is None  # a model without classes


def _report(**extra):
    return RoundReport(round=2, labelled=100, fraction=0.05, dev=None, test={"ua": 0.5, "wa": 0.5, "macro_f1": 0.5},
                       selected=100, seconds={"train": 1.0}, **extra)


def test_the_round_line_names_the_labels_per_class_and_old_reports_still_load():
    rep = _report(class_counts={"neutral": 40, "happy": 30, "angry": 4, "sad": 26})
    assert "| per class neutral 40 happy 30 angry 4 sad 26 |" in rep.line()
    assert RoundReport.from_json(rep.to_json()) == rep
    old = {k: v for k, v in rep.to_json().items() if k != "class_counts"}  # written before the counts existed
    assert RoundReport.from_json(old).class_counts is None and "per class" not in _report().line()


def _yield_runs() -> pd.DataFrame:
    """3 paired seeds at budgets 50 and 100; both strategies share the 50 initial labels under a seed."""
    rare = {("random", 50): [1, 2, 0], ("random", 100): [2, 4, 3],
            ("margin", 50): [1, 2, 0], ("margin", 100): [6, 8, 5]}
    rows = []
    for (strategy, b), counts in rare.items():
        for seed, n in enumerate(counts):
            rows.append({"strategy": strategy, "seed": seed, "labelled": b, "fraction": b / 2000,
                         "test_ua": 0.5, "labels_happy": b - n - 10, "labels_angry": n, "labels_sad": 10})
    return pd.DataFrame(rows)


def test_class_yield_table_pairs_the_rare_class_by_seed():
    runs = _yield_runs().sample(frac=1.0, random_state=3)  # pairing must not depend on row order
    table = class_yield_table(runs, "angry").set_index(["strategy", "labelled"])
    m = table.loc[("margin", 100)]
    d = [6 - 2, 8 - 4, 5 - 3]
    assert m["mean"] == pytest.approx(19 / 3) and m.share == pytest.approx(19 / 300)
    assert m["diff"] == pytest.approx(np.mean(d)) and m.pairs == 3
    assert (m.diff_low, m.diff_high) == pytest.approx(stats.t.interval(0.95, 2, loc=np.mean(d), scale=stats.sem(d)))
    assert m.ratio == pytest.approx((19 / 3) / 3) and m.verdict == "more"
    same = table.loc[("margin", 50)]  # the shared initial labels: no difference, exactly
    assert same["diff"] == 0 and same.verdict == "no difference resolved" and same.ratio == pytest.approx(1.0)
    assert table.loc[("random", 100), "share"] == pytest.approx(0.03) and math.isnan(table.loc[("random", 100), "diff"])
    with pytest.raises(ValueError, match="'labels_fear'"):
        class_yield_table(runs, "fear")


def test_rarest_class_and_the_printed_tables():
    assert rarest_class({"neutral": 650, "happy": 651, "angry": 61, "sad": 652}) == "angry"
    assert rarest_class({"happy": 5, "sad": 5}) == "happy"  # a tie: the first listed
    with pytest.raises(ValueError):
        rarest_class({})
    runs = _yield_runs()
    assert class_columns(runs) == ["happy", "angry", "sad"]
    means = class_means(runs).set_index(["strategy", "labelled"])
    assert means.loc[("margin", 100), "angry"] == pytest.approx(19 / 3)
    assert means.loc[("random", 100), "happy"] == pytest.approx(90 - 3)
    text = class_yield_report(runs, "angry", share=0.03)
    assert "rarest class: angry, 3.0 % of the training clips" in text
    assert "paired difference to random" in text
    margin_100 = next(line for line in text.splitlines() if line.strip().startswith("margin") and " 100 labels" in line)
    assert "6.3 [" in margin_100 and "(6.3 %)" in margin_100 and "+3.3 [" in margin_100 and "x2.11" in margin_100


def test_the_class_yield_plot_is_drawn(tmp_path):
    plot_class_yield(_yield_runs(), "angry", tmp_path / "class_yield.png", share=0.03)
    assert (tmp_path / "class_yield.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "class_yield.png").stat().st_size > 1000


def test_runs_rows_take_counts_from_the_report_or_else_from_the_runs_ledger(tmp_path):
    from ser_models.runs.evidence import run_rows

    ledger = LabelLedger(tmp_path / "run" / "labels" / "ledger.parquet")
    ledger.append(0, ["a", "b"], ["angry", "sad"], oracle="simulated")
    ledger.append(1, ["c", "d"], ["sad", "sad"], oracle="simulated")
    old = [RoundReport(round=r, labelled=2 * (r + 1), fraction=0.1, dev=None, test={"ua": 0.5}, selected=2)
           for r in (0, 1)]  # a run finished before reports held the counts
    rows = pd.DataFrame(run_rows("margin", 0, old, 1.0, CLASSES, tmp_path / "run"))
    assert rows[["labels_angry", "labels_sad", "labels_happy"]].to_numpy().tolist() == [[1, 1, 0], [1, 3, 0]]
    new = [RoundReport(round=0, labelled=2, fraction=0.1, dev=None, test={"ua": 0.5}, selected=2,
                       class_counts={"neutral": 0, "happy": 2, "angry": 0, "sad": 0})]
    assert run_rows("margin", 0, new, 1.0, CLASSES, tmp_path / "run")[0]["labels_happy"] == 2
    assert "labels_angry" not in run_rows("margin", 0, new, 1.0)[0]  # no classes: no columns

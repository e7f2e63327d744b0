"""bench.evidence_cost's profile split and report on made-up numbers, so that the script does not rot."""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is not an installed package

from bench import evidence_cost as ec  # noqa: E402


def _result(scale: float, seconds: float, tree: str) -> dict:
    parts = {label: scale * (k + 1) for k, (label, _) in enumerate(ec.PARTS)}
    window = [(0.5, 0.6, 0.7), (1.5, 1.0, 0.8)]
    return {"tree": tree, "clips": 2880, "train_clips": 2016, "seeds": 20, "runs": 60, "workload_s": seconds,
            "workload_load": window, "rows": {"seed": [0] * 240},
            "machine": {"cpu": "cpu", "cores": 2, "ram_gib": 8.0, "python": "3.11", "torch": "t", "ray": "r",
                        "transformers": "x", "numpy": "n", "date": "today"},
            "profile": {"parts": {n: dict(parts) for n in ec.STRATEGIES},
                        "profiled_s": {n: 10 * scale for n in ec.STRATEGIES},
                        "plain_s": {n: 8 * scale for n in ec.STRATEGIES}}, "profile_load": window}


def test_report_shows_both_sides_what_each_change_bought_and_the_goal():
    before, after = _result(1.0, 220.0, "/old"), _result(0.5, 160.0, "/new")
    after["rows_identical_to_baseline"] = True
    after["cv"] = {"problems": 240, "shared_by_round": {0: 40, 1: 15}}
    text = ec.report(after, before, argparse.Namespace(seeds=20, pool_dir="pool"))
    assert "Of the workload's 240 cross-validations of C" in text and "**55** are on" in text
    assert "| before | 220.0 |" in text and "not met" in text and "| after | 160.0 |" in text
    assert "identical before and after: **yes**" in text
    # plots are the 6th part (6.0 before, 3.0 after): 3.0 bought in every strategy
    assert "| no plots in simulations (`train_model(plots=False)`) | 3.00 | 3.00 | 3.00 | **3.00** |" in text
    # cross-validation (1.0 -> 0.5) without the solver's scans (2.0 -> 1.0): -0.5
    assert "(`cv_choices`) | -0.50 |" in text


def test_parts_are_read_from_a_profile(tmp_path):
    from ser_models.metrics import plot_confusion

    prof = cProfile.Profile()
    prof.enable()
    plot_confusion([[3, 1], [0, 4]], ["a", "b"], tmp_path / "c.png", title="t")
    prof.disable()
    parts = ec._parts(pstats.Stats(prof))
    assert parts["plots"] > 0 and all(v == 0.0 for label, v in parts.items() if label != "plots")

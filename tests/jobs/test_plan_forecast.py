"""``python -m jobs.plan run_dir=...``: the labels forecast from a finished run's ``metrics.jsonl``."""

from __future__ import annotations

import json

import pytest

from jobs.plan import main
from ser_models.exceptions import ConfigError
from ser_models.planning.forecast import Forecast, PowerLaw
from ser_models.planning.planner import BudgetPlan

CURVE = PowerLaw(a=0.8, b=2.0, c=0.5)


def write_run(root, labels) -> None:
    """A run folder as jobs.after leaves it: one metrics.jsonl row per round, dev UA on 2 x 200 clips."""
    rows = []
    for r, n in enumerate(labels):
        ua = float(CURVE(n))
        right = round(ua * 200)
        dev = {"ua": ua, "wa": ua, "macro_f1": ua, "n": 400, "confusion": [[right, 200 - right], [200 - right, right]]}
        rows.append({"round": r, "labelled": n, "fraction": n / 4000, "dev": dev, "test": None, "selected": 0,
                     "seconds": {}})
    root.mkdir(parents=True, exist_ok=True)
    (root / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))


def test_plan_prints_the_forecast_of_a_run(tmp_path, capsys):
    write_run(tmp_path / "run", [100, 200, 400, 800])
    out = main(["budget=0", f"run_dir={tmp_path / 'run'}", "target_ua=0.75", f"output_dir={tmp_path / 'plan'}"])
    printed = capsys.readouterr().out
    assert isinstance(out, Forecast)
    assert out.labels == pytest.approx(CURVE.labels_for(0.75), rel=0.15)  # 1,600 labels on the true curve
    assert "forecast from 4 rounds" in printed and "target dev UA 0.750: UA 0.750 at" in printed
    assert "more than the 800 now" in printed
    saved = json.loads((tmp_path / "plan" / "forecast.json").read_text())
    low, high = saved["interval"]
    assert saved["points"] == 4 and low < saved["labels"]
    assert high is None or high > saved["labels"]  # null: some bootstrap curves level off below the target


def test_plan_with_a_budget_prints_both(tmp_path, capsys):
    write_run(tmp_path / "run", [100, 200])
    out = main(["budget=2000", "labels=[a,b]", "simulate_draws=0", f"run_dir={tmp_path / 'run'}"])
    printed = capsys.readouterr().out
    assert isinstance(out, BudgetPlan)
    assert "forecast: none (needs 3 rounds with a dev UA at different label counts, has 2)" in printed
    assert "Overrides for jobs.after" in printed


def test_budget_zero_needs_a_run(tmp_path):
    with pytest.raises(ConfigError, match="0 only with run_dir"):
        main(["budget=0", "labels=[a,b]"])


def test_missing_run_is_named(tmp_path):
    with pytest.raises(ConfigError, match="run_dir: .*metrics.jsonl"):
        main(["budget=0", f"run_dir={tmp_path / 'nothing'}"])

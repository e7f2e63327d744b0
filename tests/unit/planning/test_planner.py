"""The label budget planner: the UA half-width formula against simulation, sizes, caps, shares, design effect."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ser_models.exceptions import ConfigError
from ser_models.planning.planner import PlanConfig, plan_budget, round_targets
from ser_models.planning.ua_precision import (
    kish_design_effect,
    required_test_size,
    simulate_ua,
    simulated_half_width,
    ua_half_width,
    ua_variance,
    z_value,
)

FOUR = ["angry", "happy", "neutral", "sad"]
SKEWED = [0.1, 0.2, 0.55, 0.15]


def plan(**kw):
    kw.setdefault("labels", FOUR)
    kw.setdefault("simulate_draws", 0)  # the simulation has tests of its own
    return plan_budget(PlanConfig(**kw))


@pytest.mark.parametrize(("n", "shares", "recalls"), [
    (400, [0.25] * 4, [0.6] * 4),
    (800, SKEWED, [0.6] * 4),
    (300, SKEWED, [0.8, 0.5, 0.7, 0.4]),
])
def test_half_width_matches_a_monte_carlo_of_random_test_sets(n, shares, recalls):
    ua = simulate_ua(n, shares, recalls, draws=20000, seed=1)
    sd = math.sqrt(ua_variance(n, shares, recalls))
    assert np.std(ua) == pytest.approx(sd, rel=0.10)
    assert np.mean(ua) == pytest.approx(np.mean(recalls), abs=0.01)  # UA is unbiased
    assert simulated_half_width(n, shares, recalls, draws=20000, seed=1) == \
        pytest.approx(ua_half_width(n, shares, recalls, z_value(0.95)), rel=0.10)


def test_design_effect_matches_a_simulation_of_clustered_clips():
    shares, recalls = [0.25] * 4, [0.6] * 4
    deff = kish_design_effect(cluster_size=5, icc=0.2)
    assert deff == pytest.approx(1.8)
    ua = simulate_ua(800, shares, recalls, draws=20000, seed=2, cluster_size=5, icc=0.2)
    assert np.var(ua) == pytest.approx(ua_variance(800, shares, recalls, deff), rel=0.10)
    # ...and the clustering is what widens it: independent clips stay at the plain variance
    assert np.var(ua) > 1.5 * ua_variance(800, shares, recalls)


def test_closed_form_size_is_the_smallest_meeting_the_target():
    z = z_value(0.95)
    assert z == pytest.approx(1.95996, abs=1e-4)
    for shares, deff in (([0.25] * 4, 1.0), (SKEWED, 1.0), (SKEWED, 2.3)):
        n = required_test_size(0.05, shares, [0.6] * 4, z, deff)
        assert ua_half_width(n, shares, [0.6] * 4, z, deff) <= 0.05 < ua_half_width(n - 1, shares, [0.6] * 4, z, deff)


def test_half_width_shrinks_with_size_and_grows_with_design_effect_and_skew():
    widths = [ua_half_width(n, [0.25] * 4, [0.6] * 4) for n in (100, 200, 400, 800, 1600)]
    assert all(b < a for a, b in zip(widths, widths[1:]))
    assert widths[0] / widths[2] == pytest.approx(2.0)  # 4x the clips halves the interval
    assert ua_half_width(400, SKEWED, [0.6] * 4) > widths[2]  # a rare class is measured on fewer clips
    assert ua_half_width(400, [0.25] * 4, [0.6] * 4, design_effect=2.0) == pytest.approx(widths[2] * math.sqrt(2))


def test_plan_sizes_and_table_for_a_uniform_prior():
    p = plan(budget=3000, expected_ua=0.6)
    assert p.test_size == 369 and not p.warnings  # 1.96^2 * 0.24 / 0.05^2 = 368.8
    assert p.test_half_width <= 0.05
    assert p.dev_size == 185  # half the test set
    assert p.initial_size == 20  # 5 clips of a 25 % class
    assert p.initial_miss_probability == pytest.approx(0.75**20)
    assert p.budget_labels[0] == 20 and p.budget_labels[-1] == 3000 - 369 - 185
    assert all(b > a for a, b in zip(p.budget_labels, p.budget_labels[1:]))
    sizes = [row["test_size"] for row in p.table]
    assert sizes == [100, 200, 369, 400, 800, 1600]
    assert [row["over_cap"] for row in p.table] == [False] * 5 + [True]
    widths = [row["half_width"] for row in p.table]
    assert all(b < a for a, b in zip(widths, widths[1:]))


def test_the_cap_binds_with_a_warning():
    p = plan(budget=800)
    assert p.test_needed == 369 and p.test_cap == 240 and p.test_size == 240
    assert p.test_half_width > 0.05
    assert len(p.warnings) == 1 and "needs 369 labels" in p.warnings[0] and "the test set is 240" in p.warnings[0]
    assert "warning: " in p.format()
    assert plan(budget=800, max_test_share=0.5).test_size == 369  # a wider cap lets the target through


def test_skewed_shares_need_a_larger_test_set_and_initial_set():
    uniform, skewed = plan(budget=5000), plan(budget=5000, shares=SKEWED)
    assert skewed.test_size > uniform.test_size
    assert skewed.initial_size == 50 > uniform.initial_size  # 5 / 0.1
    assert skewed.shares == pytest.approx(SKEWED)
    # shares are normalised: counts work as well as fractions
    assert plan(budget=5000, shares=[10, 20, 55, 15]).test_size == skewed.test_size


def test_per_class_recalls_replace_the_expected_ua():
    p = plan(budget=5000, recalls=[0.9, 0.5, 0.5, 0.9])
    assert p.expected_ua == pytest.approx(0.7)
    # easy classes vary less than a flat 0.7 would
    assert p.test_size < plan(budget=5000, expected_ua=0.7).test_size


def test_design_effect_from_cluster_size_or_given():
    base = plan(budget=6000)
    clustered = plan(budget=6000, cluster_size=5, icc=0.2)
    assert clustered.design_effect == pytest.approx(1.8)
    assert clustered.test_size == math.ceil(1.8 * 368.79)
    assert plan(budget=6000, design_effect=1.8).test_size == clustered.test_size
    assert plan(budget=6000, cluster_size=5, icc=0.0).test_size == base.test_size


def test_plan_table_simulation_checks_the_formula():
    p = plan(budget=3000, cluster_size=3, icc=0.1, simulate_draws=4000, table_sizes=[200, 800])
    for row in p.table:
        assert row["simulated_half_width"] == pytest.approx(row["half_width"], rel=0.10)
    assert plan(budget=3000, design_effect=1.5, simulate_draws=4000).table[0]["simulated_half_width"] is None


def test_round_schedules():
    assert round_targets(20, 2446) == [20, 40, 79, 157, 312, 620, 1231, 2446]  # about doubling
    assert round_targets(20, 420, rounds=5, schedule="equal") == [20, 120, 220, 320, 420]
    assert round_targets(20, 420, rounds=1) == [420]
    assert round_targets(5, 8, rounds=4) == [5, 6, 7, 8]  # every round adds at least one clip
    with pytest.raises(ConfigError, match="rounds=5"):
        round_targets(5, 8, rounds=5)


def test_a_budget_too_small_is_refused_naming_the_sizes():
    with pytest.raises(ConfigError, match=r"budget=50 cannot hold the test set \(20\), the dev set \(20\)"):
        plan(budget=50)
    tiny = plan(budget=60)  # the cap (18) is below 5 clips of each class: the floor wins, with the warning
    assert tiny.test_size == 20 and tiny.budget_labels == [20] and "the test set is 20" in tiny.warnings[0]


@pytest.mark.parametrize(("kw", "match"), [
    ({"budget": 0}, "budget must be"),
    ({"budget": 100, "shares": [0.5, 0.5]}, "shares has 2 values for 4 labels"),
    ({"budget": 100, "expected_ua": 1.2}, "expected_ua"),
    ({"budget": 100, "schedule": "fast"}, "schedule must be one of"),
    ({"budget": 100, "design_effect": 0.5}, "design_effect must be >= 1"),
])
def test_bad_inputs_name_the_key(kw, match):
    with pytest.raises(ConfigError, match=match):
        PlanConfig(labels=FOUR, **kw)


def test_labels_are_required_without_a_pool():
    with pytest.raises(ConfigError, match="labels is empty and no pool_dir is given"):
        plan_budget(PlanConfig(budget=1000))


def test_a_pool_caps_test_and_dev_at_its_share():
    from ser_models.planning.planner import PoolStats

    pool = PoolStats(clips=1000, label_counts={}, unit="speaker", units=100, mean_size=10.0, cluster_size=1.0)
    p = plan_budget(PlanConfig(labels=FOUR, budget=5000, simulate_draws=0), pool)
    # 30 % of 1,000 clips for test + dev, dev half the test: 200 test clips, 100 dev
    assert (p.test_needed, p.test_cap, p.test_size, p.dev_size) == (369, 200, 200, 100)
    assert "max_share=0.3 of the pool" in p.warnings[0]
    wide = plan_budget(PlanConfig(labels=FOUR, budget=5000, simulate_draws=0, max_share=0.6), pool)
    assert wide.test_size == 369


def test_max_per_unit_shrinks_the_design_effect_and_is_an_override():
    clustered = plan(budget=20000, cluster_size=40.0)
    capped = plan(budget=20000, cluster_size=40.0, max_per_unit=5)
    assert clustered.design_effect == pytest.approx(1 + 39 * 0.1) and capped.design_effect == pytest.approx(1.4)
    assert capped.test_size < clustered.test_size
    assert "active.evaluation.max_per_unit=5" in capped.overrides()
    assert not any("max_per_unit" in o for o in clustered.overrides())


def test_the_verdict_figure_before_any_label_is_the_measured_width_extrapolated():
    """``jobs.plan`` says how many training labels ``auto``'s verdict needs to resolve +-2 UA points: the
    half-width measured at the reference labels (``bench/results/verdict_width.md``'s widest row), narrowing as
    ``1 / sqrt(labels)``; and whether the plan's own training labels get there."""
    import re
    from pathlib import Path

    from ser_models.planning.planner import VERDICT_REFERENCE, verdict_half_width, verdict_labels

    results = (Path(__file__).resolve().parents[3] / "bench" / "results" / "verdict_width.md").read_text()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in results.splitlines()
            if re.match(r"\|\s*\d", line)]
    labelled, half, resolve = int(rows[-1][0]), float(rows[-1][3]), int(rows[-1][6])
    assert VERDICT_REFERENCE == (labelled, pytest.approx(half / 100))
    assert verdict_labels() == resolve  # the same extrapolation as the results file
    assert verdict_half_width(labelled) == pytest.approx(half / 100)
    assert verdict_half_width(4 * labelled) == pytest.approx(half / 200)  # four times the labels: half as wide
    assert verdict_half_width(verdict_labels()) <= 0.02 < verdict_half_width(verdict_labels() - 1)

    small, large, tiny = plan(budget=600), plan(budget=3 * resolve), plan(budget=120)
    for p in (small, large):
        assert p.verdict_labels == resolve
    # The last verdict comes with the last round that queries: the budget before the final one.
    last = small.budget_labels[-2]
    assert f"resolves +/-2 UA points\n  at about {resolve} training labels; its last verdict here, at {last} labels, " \
           f"is about +/-{100 * verdict_half_width(last):.1f} points (a gain inside that stays unresolved)." \
           in small.format()
    assert f"+/-{half:.1f} points at {labelled} labels" in small.format()
    assert large.budget_labels[-2] >= resolve and "(resolved)." in large.format()
    assert tiny.budget_labels[-2] < 40 and "this plan's rounds give none (auto judges from 40 labels" in tiny.format()
    assert small.to_dict()["verdict_labels"] == resolve


def test_a_budget_too_small_names_only_the_keys_that_move_a_size():
    # 4 classes: every set sits at its floor of 20 (5 of a 25 % class), where max_test_share and dev_ratio do nothing
    with pytest.raises(ConfigError, match=r"budget=50 cannot hold the test set \(20\), the dev set \(20\)") as refused:
        plan_budget(PlanConfig(budget=50, labels=["a", "b", "c", "d"], simulate_draws=0))
    message = str(refused.value)
    assert "raise budget" in message and "min_per_class" in message
    assert "max_test_share" not in message and "dev_ratio" not in message

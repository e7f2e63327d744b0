"""The labels forecast: an inverse power law fitted to dev UA, its bootstrap interval and its verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ser_models.active.round_report import RoundReport, forecast_word
from ser_models.exceptions import ConfigError
from ser_models.planning.forecast import (
    ForecastConfig,
    PowerLaw,
    fit_power_law,
    forecast,
    forecast_rounds,
    ua_standard_error,
)

TRUE = PowerLaw(a=0.8, b=2.0, c=0.5)  # UA 0.52 at 50 labels, 0.70 at 400, 0.8 in the limit
LABELS = np.array([50, 100, 200, 400, 800])


def test_fit_recovers_known_parameters_from_exact_points():
    fit = fit_power_law(LABELS, TRUE(LABELS))
    assert fit.a == pytest.approx(0.8, abs=1e-6)
    assert fit.b == pytest.approx(2.0, rel=1e-4)
    assert fit.c == pytest.approx(0.5, abs=1e-5)


def test_fit_recovers_parameters_from_three_points():
    fit = fit_power_law(LABELS[:3], TRUE(LABELS[:3]))
    assert (fit.a, fit.c) == pytest.approx((0.8, 0.5), abs=1e-4)
    assert fit.labels_for(0.7) == pytest.approx(400, rel=1e-3)


def test_fit_keeps_the_bounds_when_the_points_do_not_rise():
    fit = fit_power_law([50, 100, 200], [0.6, 0.58, 0.55])
    assert fit.b == 0.0 and fit.a <= 1.0
    assert math.isinf(fit.labels_for(0.7))


def test_forecast_point_and_interval_on_a_known_curve():
    f = forecast(LABELS, TRUE(LABELS), se=[0.01] * 5, target=0.7)
    assert f.labels == pytest.approx(400, rel=1e-3)
    assert f.interval[0] < 400 < f.interval[1]
    assert f.reachable is True
    assert "UA 0.700 at 400 labels" in f.summary()


def test_interval_covers_the_truth_over_noisy_replicates():
    """95 % bootstrap intervals from noisy rounds hold the true labels-to-target about 95 % of the time (the
    draws are seeded, so the count is fixed; a badly calibrated bootstrap lands far below 85 %)."""
    rng = np.random.default_rng(7)
    labels = LABELS[:4]
    se = np.full(4, 0.015)
    truth = TRUE.labels_for(0.7)
    hits = 0
    for i in range(60):
        ua = TRUE(labels) + rng.normal(0.0, se)
        f = forecast(labels, ua, se=se, target=0.7, seed=i)
        hits += f.interval[0] <= truth <= f.interval[1]
    assert hits / 60 >= 0.85


def test_curve_band_covers_a_later_point():
    f = forecast(LABELS[:3], TRUE(LABELS[:3]), se=[0.02] * 3)
    lo, hi = f.curve_interval([800])
    assert lo[0] <= TRUE(800) <= hi[0]
    plo, phi = f.curve_interval([800], se=0.02)
    assert plo[0] < lo[0] and phi[0] > hi[0]  # a new measurement's noise widens the band


def test_target_above_the_asymptote_is_not_reachable():
    f = forecast(LABELS, TRUE(LABELS), se=[0.005] * 5, target=0.95)
    assert f.asymptote_interval[1] < 0.95
    assert f.reachable is False
    assert "not reachable" in f.summary() and "0.800" in f.summary()
    assert f.to_json()["labels"] is None  # infinite labels are stored as null, never as a JSON Infinity


def test_flatten_rule_without_a_target():
    f = forecast(LABELS, TRUE(LABELS), se=[0.01] * 5, flat_gain=0.005)
    n = f.labels
    assert TRUE(n + 100) - TRUE(n) == pytest.approx(0.005, rel=0.05)  # 100 more labels add half a point
    assert f.interval[0] < n < f.interval[1]
    assert f.summary().startswith(f"flattens at {int(round(n)):,} labels")


def test_fewer_than_three_points_give_no_forecast_said_plainly():
    f = forecast([50, 100], [0.5, 0.6], se=[0.02, 0.02], target=0.7)
    assert f.curve is None and f.labels is None
    assert f.summary() == "needs 3 rounds with a dev UA at different label counts, has 2"
    assert f.format().startswith("forecast: none (needs 3 rounds")


def test_ua_standard_error_from_the_confusion_matrix():
    confusion = [[40, 10], [20, 30]]  # recalls 0.8 and 0.6 on 50 clips each
    p = np.array([40.5 / 51, 30.5 / 51])
    expected = math.sqrt(np.sum(p * (1 - p) / 50)) / 2
    assert ua_standard_error({"ua": 0.7, "confusion": confusion}) == pytest.approx(expected)
    assert ua_standard_error({"ua": 0.7, "n": 100}) == pytest.approx(math.sqrt(0.21 / 100))
    assert ua_standard_error({"ccc": 0.3}) is None


def _round(r: int, labelled: int, ua: float, per_class: int = 100) -> dict:
    right = int(round(ua * per_class))
    confusion = [[right if i == j else (per_class - right if j == (i + 1) % 2 else 0) for j in range(2)]
                 for i in range(2)]
    return RoundReport(round=r, labelled=labelled, fraction=labelled / 2000, dev={"ua": ua, "wa": ua, "macro_f1": ua, "confusion": confusion},
                       test=None, selected=0).to_json()


def test_forecast_rounds_reads_round_reports_and_the_line_shows_it():
    rows = [_round(r, n, float(TRUE(n))) for r, n in enumerate(LABELS[:4])]
    f = forecast_rounds(rows, ForecastConfig(target_ua=0.7))
    assert f.points == 4 and f.current_labels == 400
    assert f.labels == pytest.approx(400, rel=0.1)
    rep = RoundReport.from_json({**rows[-1], "forecast": f.to_json()})
    assert f"| forecast: {forecast_word(f.to_json())} |" in rep.line()
    early = forecast_rounds(rows[:2])
    assert "needs 3 rounds" in early.summary()
    assert "| forecast: too early |" in RoundReport.from_json({**rows[1], "forecast": early.to_json()}).line()


def test_forecast_rounds_of_a_model_without_classes():
    rows = [{"round": 0, "labelled": 50, "dev": {"ccc": 0.3}}, {"round": 1, "labelled": 100, "dev": {"ccc": 0.4}}]
    assert "no classes" in forecast_rounds(rows).summary()


@pytest.mark.parametrize("kwargs, key", [({"target_ua": 1.5}, "target_ua"), ({"flat_gain": 0.0}, "flat_gain"),
                                         ({"bootstrap": 5}, "bootstrap")])
def test_config_names_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=f"active.forecast.{key}"):
        ForecastConfig(**kwargs)

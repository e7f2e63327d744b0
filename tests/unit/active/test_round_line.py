"""The round line a person reads: at most 160 characters whatever the round carries, and a forecast or a CV
choice only where it means something (enough rounds and labels), a plain word otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from ser_models.active.round_report import LINE_WIDTH, RoundReport, forecast_word
from ser_models.planning.forecast import ForecastConfig, PowerLaw, forecast_rounds


def _dev(ua: float, per_class: int, classes: int = 4) -> dict:
    """A dev evaluation of ``classes`` classes with ``per_class`` clips each, every class at recall ``ua``."""
    right = int(round(ua * per_class))
    confusion = [[right if i == j else (per_class - right if j == (i + 1) % classes else 0) for j in range(classes)]
                 for i in range(classes)]
    return {"ua": right / per_class, "wa": right / per_class, "macro_f1": right / per_class, "confusion": confusion,
            "n": per_class * classes}


def _rows(points, per_class: int) -> list[dict]:
    return [RoundReport(round=r, labelled=n, fraction=n / 2000, dev=_dev(ua, per_class), test=None, selected=12,
                        seconds={"train": 0.4}).to_json() for r, (n, ua) in enumerate(points)]


def _everything(**extra) -> RoundReport:
    """A round that carries every field at its longest: a multi-task model, pseudo-labels, kappa, auto's verdict,
    the feature choice, eight long class names and a forecast."""
    both = {"ua": 0.512, "wa": 0.5, "macro_f1": 0.48, "ccc": 0.41}
    classes = {f"{name}_speech": 1234 for name in ("neutral", "happy", "angry", "sad", "fear", "disgust", "calm", "other")}
    verdict = {"strategy": "informative_diverse", "gain": 0.008, "low": -0.012, "high": 0.028}
    fields = dict(round=123, labelled=1_234_567, fraction=0.123, dev=both, test=dict(both), selected=123_456,
                  seconds={"train": 12345.6, "score": 2345.6, "select": 345.6, "label": 0.1},
                  labelled_seconds=12_345_678.0, stopping={"kappa": 0.9912}, pseudo_labels={"clips": 123_456},
                  strategy={"chosen": "informative_diverse", "verdict": verdict},
                  features={"chosen": "speaker+egemaps", "functionals": "egemaps", "reason": "best CV score"},
                  forecast={"a": 0.8, "target_ua": 0.75, "labels": 1_450_000.0, "interval": [1_200_000.0, 4_100_000.0],
                            "current_labels": 1_234_567, "reachable": True,
                            "text": "UA 0.750 at 1,450,000 labels (1,200,000-4,100,000)"},
                  class_counts=classes)
    return RoundReport(**{**fields, **extra})


@pytest.mark.parametrize("dev", [{"ua": 0.512, "wa": 0.5, "macro_f1": 0.48, "ccc": 0.41}, {"ccc": 0.41}, None])
def test_the_round_line_stays_within_160_characters_and_keeps_the_rounds_own_fields(dev):
    line = _everything(dev=dev, test=dev).line()
    assert len(line) <= LINE_WIDTH == 160
    assert line.startswith("round 123 | 1,234,567 labels (12%, 3429.36 h) | dev ")
    assert "| +123456 |" in line and line.endswith("| 15036.9 s")  # the picks and the round's wall time
    small = RoundReport(round=0, labelled=12, fraction=0.005, dev=_dev(0.5, 6), test=None, selected=12,
                        seconds={"train": 0.4, "score": 0.1}, labelled_seconds=36.0)
    assert small.line() == "round 0 | 12 labels (0.5%, 0.01 h) | dev UA 0.500 | test - | +12 | 0.5 s"


def test_optional_fields_come_in_order_while_they_fit():
    fc = {"a": 0.8, "target_ua": 0.75, "labels": 1450.0, "interval": [900.0, 4100.0], "current_labels": 400,
          "text": "UA 0.750 at 1,450 labels (900-4,100)"}
    rep = _everything(round=3, labelled=400, fraction=0.2, labelled_seconds=1200.0, dev={"ua": 0.5, "wa": 0.5,
                      "macro_f1": 0.5}, test=None, selected=100, seconds={"train": 3.4}, class_counts=None,
                      pseudo_labels=None, forecast=fc, strategy={"chosen": "margin", "verdict": {
                          "strategy": "margin", "gain": 0.008, "low": -0.012, "high": 0.028}})
    line = rep.line()
    assert line.startswith("round 3 | 400 labels (20%, 0.33 h) | dev UA 0.500 | test - | +100 | ")
    assert "| forecast: UA 0.75 at 1,450 (900-4,100) | kappa 0.99 |" in line
    assert line.endswith("| kappa 0.99 | auto margin +0.8 [-1.2, +2.8] | 3.4 s") and len(line) <= LINE_WIDTH
    rep.stopping, rep.forecast = None, None  # room again for the feature choice
    assert rep.line().endswith("| +100 | auto margin +0.8 [-1.2, +2.8] | features speaker+egemaps | 3.4 s")
    rep.strategy = {"chosen": "random", "verdict": {"strategy": "margin", "gain": 0.008, "low": -0.012, "high": 0.028}}
    assert "| auto random, margin +0.8 [-1.2, +2.8] |" in rep.line()
    rep.forecast, rep.stopping, rep.features = None, None, None
    assert "| per class " not in rep.line()  # no counts given
    rep.class_counts = {"neutral": 40, "happy": 30, "angry": 4, "sad": 26}
    assert "| per class neutral 40 happy 30 angry 4 sad 26 |" in rep.line()


def test_a_forecast_from_few_labels_says_unsure_not_a_number():
    # three rounds at 12, 24, 36 labels with a dev set of 6 clips per class: the curve fits, but its interval
    # spans from 1 label to hundreds (today's line printed "flattens at 31 labels (1-885)")
    rows = _rows([(12, 0.5), (24, 0.67), (36, 0.67)], per_class=6)
    fc = forecast_rounds(rows).to_json()
    assert fc["a"] is not None and fc["interval"][1] > 10 * 36
    line = RoundReport.from_json({**rows[-1], "forecast": fc}).line()
    assert "| forecast: unsure |" in line and "flattens" not in line
    early = forecast_rounds(rows[:2]).to_json()
    assert "| forecast: too early |" in RoundReport.from_json({**rows[1], "forecast": early}).line()
    assert forecast_word(None) == "" and forecast_word(forecast_rounds([{"labelled": 5, "dev": {"ccc": 0.2}}]).to_json()) == ""


def test_a_forecast_from_enough_labels_shows_its_number():
    true = PowerLaw(a=0.8, b=2.0, c=0.5)
    labels = [200, 400, 800, 1600]
    rows = _rows([(n, float(true(n))) for n in labels], per_class=2000)
    fc = forecast_rounds(rows, ForecastConfig(target_ua=0.75)).to_json()
    lo, hi = fc["interval"]
    assert hi <= 10 * max(lo, 1600)
    word = forecast_word(fc)
    assert word == f"UA 0.75 at {fc['labels']:,.0f} ({lo:,.0f}-{hi:,.0f})"
    assert f"| forecast: {word} |" in RoundReport.from_json({**rows[-1], "forecast": fc}).line()
    assert forecast_word({**fc, "reachable": False}) == "UA 0.75 out of reach"
    flat = forecast_rounds(rows).to_json()
    assert forecast_word({**flat, "interval": [100.0, 1500.0], "current_labels": 1600}) == "flat now"
    assert np.isfinite(flat["labels"])


def test_a_feature_choice_without_cv_says_so():
    rep = RoundReport(round=0, labelled=12, fraction=0.1, dev=None, test=None, selected=4, seconds={"train": 1.0},
                      features={"chosen": "pool", "feature_norm": "pool",
                                "reason": "too few labelled clips per class to cross-validate"})
    assert "| norm pool (no CV) |" in rep.line()
    rep.features["reason"] = "best CV score"
    assert "| norm pool |" in rep.line()

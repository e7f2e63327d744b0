"""Stopping criteria: Cohen's kappa against a hand computation, the decision rules, the stop set."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from ser_models.active.stopping import StoppingConfig, cohen_kappa, decide, stop_set_ids
from ser_models.exceptions import ConfigError


def test_kappa_matches_a_hand_computation():
    a = ["ang", "ang", "hap", "hap", "sad", "sad", "neu", "neu", "neu", "neu"]
    b = ["ang", "hap", "hap", "hap", "sad", "neu", "neu", "neu", "neu", "ang"]
    # agreement 7/10; class shares a: ang .2 hap .2 sad .2 neu .4, b: ang .2 hap .3 sad .1 neu .4
    p_o = 0.7
    p_e = 0.2 * 0.2 + 0.2 * 0.3 + 0.2 * 0.1 + 0.4 * 0.4  # 0.28
    assert cohen_kappa(np.array(a), np.array(b)) == pytest.approx((p_o - p_e) / (1 - p_e))  # 0.5833...
    assert cohen_kappa(np.array(a), np.array(b)) == pytest.approx(cohen_kappa_score(a, b))


def test_kappa_edge_cases():
    assert cohen_kappa(np.array([1, 2, 3]), np.array([1, 2, 3])) == 1.0
    assert cohen_kappa(np.array([2, 2, 2]), np.array([2, 2, 2])) == 1.0  # p_e = 1: full agreement
    assert cohen_kappa(np.array([0, 1, 0, 1]), np.array([1, 0, 1, 0])) == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    assert cohen_kappa(x, y) == pytest.approx(cohen_kappa_score(x, y))
    with pytest.raises(ValueError, match="same items"):
        cohen_kappa(np.array([1, 2]), np.array([1]))


def _probs(preds, conf=0.8, classes=4):
    p = np.full((len(preds), classes), (1 - conf) / (classes - 1))
    p[np.arange(len(preds)), preds] = conf
    return p


def test_kappa_criterion_needs_consecutive_stable_rounds():
    cfg = StoppingConfig(kappa_threshold=0.9, kappa_rounds=2, end_loop=True)
    preds = np.array([0, 1, 2, 3] * 5)
    d0 = decide(cfg, 0, preds, _probs(preds), None, None, last_round=False)
    assert d0.kappa is None and d0.stable_rounds == 0 and not d0.stop
    d1 = decide(cfg, 1, preds, _probs(preds), preds, d0.to_json(), last_round=False)
    assert d1.kappa == 1.0 and d1.stable_rounds == 1 and not d1.fired and not d1.stop
    d2 = decide(cfg, 2, preds, _probs(preds), preds, d1.to_json(), last_round=False)
    assert d2.fired == ["kappa"] and d2.stop
    assert d2.message == "labelling more is unlikely to help: predictions are stable: kappa 1.000 >= 0.9 for 2 rounds"
    changed = preds.copy()
    changed[:10] = (changed[:10] + 1) % 4
    d3 = decide(cfg, 3, changed, _probs(changed), preds, d2.to_json(), last_round=False)
    assert d3.kappa < 0.9 and d3.stable_rounds == 0 and not d3.stop  # an unstable round resets the count


def test_report_only_by_default_and_never_stop_in_the_last_round():
    cfg = StoppingConfig(kappa_threshold=0.5, kappa_rounds=1)
    preds = np.array([0, 1, 2, 3])
    d = decide(cfg, 1, preds, _probs(preds), preds, None, last_round=False)
    assert d.fired == ["kappa"] and not d.stop  # end_loop is off: reported only
    d = decide(StoppingConfig(kappa_threshold=0.5, kappa_rounds=1, end_loop=True), 1, preds, _probs(preds), preds,
               None, last_round=True)
    assert d.fired == ["kappa"] and not d.stop


def test_uncertainty_and_max_rounds():
    preds = np.array([0, 1, 2, 3])
    d0 = decide(StoppingConfig(uncertainty_threshold=0.1, end_loop=True), 0, preds, _probs(preds, 0.8), None,
                None, last_round=False)
    assert d0.uncertainty == pytest.approx(0.2) and not d0.fired
    d1 = decide(StoppingConfig(uncertainty_threshold=0.1, end_loop=True), 1, preds, _probs(preds, 0.95),
                preds, d0.to_json(), last_round=False)
    assert d1.uncertainty_drop == pytest.approx(0.15) and "uncertainty" in d1.fired and d1.stop
    capped = decide(StoppingConfig(max_rounds=2), 1, None, None, None, None, last_round=False)
    assert capped.fired == ["max_rounds"] and capped.stop and "max_rounds=2" in capped.message
    nothing = decide(StoppingConfig(), 0, None, None, None, None, last_round=False)  # no classes, no stop set
    assert nothing.kappa is None and nothing.uncertainty is None and not nothing.stop


def test_stop_set_is_fixed_by_the_seed_and_capped():
    ids = [f"c{i:03d}" for i in range(200)]
    a, b = stop_set_ids(ids, 50, seed=3), stop_set_ids(ids, 50, seed=3)
    assert a == b and len(a) == 50 and a == sorted(a) and set(a) <= set(ids)
    assert stop_set_ids(ids, 50, seed=4) != a
    assert stop_set_ids(ids, 1000, seed=0) == ids and stop_set_ids(ids, 0, seed=0) == []


@pytest.mark.parametrize("kwargs,key", [
    ({"stop_set_size": -1}, "stop_set_size"), ({"kappa_threshold": 1.5}, "kappa_threshold"),
    ({"kappa_rounds": 0}, "kappa_rounds"), ({"uncertainty_threshold": 2.0}, "uncertainty_threshold"),
    ({"max_rounds": 0}, "max_rounds"),
])
def test_bad_settings_name_their_key(kwargs, key):
    with pytest.raises(ConfigError, match=f"active.stopping.{key}"):
        StoppingConfig(**kwargs)

"""``active.strategy.name=auto``: the strategy contract, the simulation's decision on pools with a known
answer, the fallbacks, and the config."""

from __future__ import annotations

import numpy as np
import pytest

from ser_models.active import StrategyConfig, build_strategy
from ser_models.active.round_report import RoundReport
from ser_models.active.strategies import AutoStrategy, QueryStrategy, simulate_strategies
from ser_models.active.strategies.auto import format_verdict, selection_verdict
from ser_models.exceptions import ConfigError
from ser_models.scoring.scored_pool import ScoredPool

from .contract import StrategyContract, fake_pool


class TestAuto(StrategyContract):
    def make(self):
        return build_strategy(StrategyConfig(name="auto", auto_repeats=2))


class _ByClass(QueryStrategy):
    """Picks only clips of the given classes (reading the truth the test knows): the chooser's known answer."""

    def __init__(self, classes, truth):
        super().__init__()
        self.classes, self.truth = set(classes), truth

    def _select(self, scored, candidates, labelled, n, seed):
        rows = scored.ids.astype(int)[candidates]  # the simulation's ids are row positions of ``truth``
        good = [c for c, r in zip(candidates, rows) if self.truth[r] in self.classes]
        rest = [c for c in candidates if c not in set(good)]
        return np.asarray((good + rest)[:n])


def _imbalanced(n: int = 300, seed: int = 2):
    """Class 0 is 95 % of the clips; the three others are rare and far from it and from each other, so a
    simulated start set often lacks one of them, and a class it lacks has recall 0 on the held-out third."""
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.95, 0, rng.integers(1, 4, n))
    centres = np.array([[0, 0, 0], [6, 0, 0], [0, 6, 0], [0, 0, 6]], float)
    return centres[y] + rng.normal(size=(n, 3)), y


def test_the_simulation_measures_what_a_strategy_buys():
    x, y = _imbalanced()
    rare, common = _ByClass({1, 2, 3}, y), _ByClass({0}, y)
    sims = simulate_strategies(x, y, {"rare": rare, "common": common}, growth=0.5, repeats=6, seed=0, num_classes=4)
    assert len(sims["rare"]) == len(sims["common"]) == 6 and np.isfinite(sims["rare"]).all()
    # a rare class missing from a split's start set is learnt from the rare picks alone (+0.25 UA), and the
    # common picks add nothing the probe lacks: never worse beyond one held-out clip, better on average
    assert all(a >= b - 0.01 for a, b in zip(sims["rare"], sims["common"]))
    assert np.mean(sims["rare"]) > np.mean(sims["common"]) + 0.05


def test_auto_queries_with_the_strategy_the_simulation_chose_and_records_why():
    x, y = _imbalanced(300)  # labelled: the clips of the simulation test above
    more_x, more_y = _imbalanced(100, seed=5)  # unlabelled
    x, y = np.concatenate([x, more_x]), np.concatenate([y, more_y])
    pool = ScoredPool(ids=[str(i) for i in range(400)], probs=np.full((400, 4), 0.25), embeddings=x,
                      labels=np.where(np.arange(400) < 300, y, -1))
    auto = AutoStrategy({"random": build_strategy(StrategyConfig("random")), "common": _ByClass({0}, y),
                         "rare": _ByClass({1, 2, 3}, y)}, repeats=6)
    ledger = {str(i) for i in range(300)}
    ids = auto.query(pool, ledger, 60, seed=0)  # the real step adds 20 %, as the simulation test did
    choice = auto.last_choice
    assert choice["chosen"] == "rare" and set(choice["simulated_ua"]) == {"random", "common", "rare"}
    assert choice["simulated_ua"]["common"] < choice["simulated_ua"]["random"] < choice["simulated_ua"]["rare"]
    assert ids == auto.candidates["rare"].query(pool, ledger, 60, seed=0)  # the chosen strategy's own picks
    # the verdict: rare picks gain on these labels, though six splits leave the interval wide (it spans zero)
    verdict = choice["verdict"]
    assert verdict["strategy"] == "rare" and verdict["splits"] == 6 and verdict["labelled"] == 300
    assert verdict["low"] < 0 < verdict["gain"] < verdict["high"] and verdict["labels_to_resolve"] > 0
    assert verdict["gain"] == pytest.approx(choice["simulated_ua"]["rare"] - choice["simulated_ua"]["random"])
    # A margin no candidate can clear keeps random, and says so.
    strict = AutoStrategy(dict(auto.candidates), repeats=6, margin=1.0)
    strict.query(pool, ledger, 60, seed=0)
    assert strict.last_choice["chosen"] == "random" and "auto_margin=1.0" in strict.last_choice["reason"]


def test_too_few_labels_or_no_labels_fall_back_to_random():
    pool = fake_pool()
    auto = build_strategy(StrategyConfig(name="auto"))
    assert auto.query(pool, {"c001"}, 5, seed=0) == build_strategy(StrategyConfig("random")).query(pool, {"c001"}, 5, 0)
    assert auto.last_choice["chosen"] == "random" and "too few to simulate" in auto.last_choice["reason"]
    pool.labels = np.where(np.arange(len(pool)) < 45, 0, -1)  # enough clips but one class
    auto.query(pool, {f"c{i:03d}" for i in range(45)}, 5, seed=0)
    assert auto.last_choice["chosen"] == "random" and "two classes" in auto.last_choice["reason"]


def test_without_random_among_the_candidates_the_first_is_the_fallback():
    auto = AutoStrategy({"margin": build_strategy(StrategyConfig("margin"))})
    auto.query(fake_pool(), set(), 5, seed=0)
    assert auto.last_choice["chosen"] == "margin"


@pytest.mark.parametrize("kw, match", [
    ({"auto_candidates": ["random", "bald"]}, "auto_candidates"),
    ({"auto_candidates": ["random", "auto"]}, "auto_candidates"),
    ({"auto_candidates": ["random", "random"]}, "auto_candidates"),
    ({"auto_candidates": []}, "auto_candidates"),
    ({"auto_repeats": 0}, "auto_repeats"),
])
def test_config_names_the_key(kw, match):
    with pytest.raises(ConfigError, match=match):
        StrategyConfig(name="auto", **kw)


def test_scored_pool_checks_labels():
    pool = fake_pool(n=10)
    with pytest.raises(Exception, match="labels"):
        ScoredPool(ids=pool.ids, probs=pool.probs, embeddings=pool.embeddings, labels=np.full(10, 7))


def test_the_verdict_is_the_best_candidates_paired_gain_with_its_interval_and_the_labels_to_resolve_it():
    nan = float("nan")
    sims = {"random": [0.50, 0.50, 0.50, 0.50, nan], "a": [0.52, 0.54, 0.50, 0.56, 0.90],
            "b": [0.49, 0.50, 0.50, 0.50, 0.50]}
    v = selection_verdict(sims, labelled=100)
    # a's paired gains +.02 +.04 0 +.06 (the split random could not run is dropped): mean .03, sd .02582, and
    # t(0.975, 3 df) = 3.18245, so the half-width is .04109; it shrinks as 1/sqrt(L) to .02 at L = 422
    assert v["strategy"] == "a" and v["splits"] == 4 and v["labelled"] == 100
    assert v["gain"] == pytest.approx(0.03)
    assert (v["low"], v["high"]) == pytest.approx((0.03 - 0.041085, 0.03 + 0.041085), abs=1e-5)
    assert v["labels_to_resolve"] == 322
    assert format_verdict(v) == ("a +3.0 [-1.1, +7.1] UA points over random (4 splits of 100 labels); "
                                 "about 322 more labels to resolve +-2")
    # a narrow interval is resolved already
    tight = selection_verdict({"random": [0.5] * 4, "a": [0.51, 0.511, 0.509, 0.51]}, labelled=50)
    assert tight["labels_to_resolve"] == 0 and format_verdict(tight).endswith("; resolved to +-2")
    # a candidate that loses is still reported (does selection pay: no)
    losing = selection_verdict({"random": [0.6, 0.6, 0.6], "a": [0.55, 0.56, 0.57]}, labelled=60)
    assert losing["strategy"] == "a" and losing["high"] < 0


@pytest.mark.parametrize("sims", [
    {"a": [0.5, 0.6], "b": [0.4, 0.5]},  # no random to compare with
    {"random": [0.5, 0.5], "a": [0.6, float("nan")]},  # one paired split: no interval
    {"random": [0.5, 0.5]},  # nothing but random
])
def test_no_verdict_without_random_or_two_paired_splits(sims):
    assert selection_verdict(sims, labelled=80) is None


def test_the_round_line_shows_the_verdict():
    verdict = selection_verdict({"random": [0.50, 0.50, 0.50, 0.50], "a": [0.52, 0.54, 0.50, 0.56]}, labelled=100)
    report = RoundReport(round=2, labelled=100, fraction=0.1, dev=None, test=None, selected=50,
                         seconds={"train": 1.0}, strategy={"chosen": "random", "reason": "r", "simulated_ua": {},
                                                           "verdict": verdict})
    assert "| auto random, a +3.0 [-1.1, +7.1] |" in report.line()
    report.strategy["verdict"] = None  # too few labels to simulate
    assert "| auto random |" in report.line()


def test_a_run_waiting_for_labels_reports_the_verdict_of_the_round_that_asks_for_them(tmp_path):
    """report/selection.json is written when a round's auto decision is made, before it asks for labels: at a
    labelling pause it holds the verdict the log just printed, named by its round, not the previous round's; once
    that round finishes, the round reports write the same."""
    import json

    from ser_models.active.round_report import announce_choice, write_run_metrics, write_selection
    from ser_models.planning.forecast import ForecastConfig

    def choice(gains):
        verdict = selection_verdict({"random": [0.50] * 4, "a": gains}, labelled=100)
        return {"chosen": "a", "reason": "r", "simulated_ua": {"random": 0.5, "a": 0.53}, "verdict": verdict}

    def report(r, strategy):
        return RoundReport(round=r, labelled=60 + 20 * r, fraction=0.1, dev={"ua": 0.5}, test=None, selected=20,
                           seconds={"train": 1.0}, strategy=strategy)

    path = tmp_path / "report" / "selection.json"
    first, second = choice([0.52, 0.54, 0.50, 0.56]), choice([0.60, 0.62, 0.58, 0.61])
    write_run_metrics(tmp_path, [report(0, first)], ForecastConfig())  # round 0 finished
    assert json.loads(path.read_text())["round"] == 0
    printed = []
    announce_choice(tmp_path, 1, second, printed.append)  # round 1 decides, then waits for its labels
    assert printed == ["  auto: round 1 picks with a (r; simulated UA random 0.500 a 0.530)",
                       f"  does selection pay here: {format_verdict(second['verdict'])}"]
    paused = json.loads(path.read_text())
    assert paused == {"round": 1, "verdict": second["verdict"], "text": format_verdict(second["verdict"])}
    write_run_metrics(tmp_path, [report(0, first), report(1, second)], ForecastConfig())  # labelled: finished
    assert json.loads(path.read_text()) == paused
    write_selection(tmp_path, 2, {**second, "verdict": None})  # a decision without a verdict leaves the file
    assert json.loads(path.read_text()) == paused

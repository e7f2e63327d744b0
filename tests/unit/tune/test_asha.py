"""ASHA's rungs: where a trial may be stopped, never at the last epoch (a stop there saves no work and loses
the trial's final report and checkpoint)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ser_models.exceptions import ConfigError
from ser_models.tune.config import SchedulerConfig, SweepConfig
from ser_models.tune.sweep import asha_rungs, build_scheduler, build_search_alg, plan_sweep


def _plan(epochs: int, grace: int, rf: float, search_alg: str = "random", **scheduler):
    cfg = SweepConfig(base="finetune", output_dir="/tmp/unused", search={"train.lr_head": {"grid": [1e-3, 1e-2]}},
                      scheduler=SchedulerConfig(name="asha", grace_period=grace, reduction_factor=rf, **scheduler),
                      config={"pool_dir": "/p", "train": {"optim": {"epochs": epochs}}}, search_alg=search_alg)
    return plan_sweep(cfg, check_pool=False)


@pytest.mark.parametrize("epochs, grace, rf, rungs", [
    (3, 1, 2, [1, 2]),
    (4, 1, 2, [1, 2]),        # Ray alone would add a rung at 4, the last epoch
    (8, 1, 2, [1, 2, 4]),     # ... and at 8
    (9, 1, 3, [1, 3]),        # ... and at 9
    (8, 1, 3, [1, 3]),
    (6, 2, 2, [2, 4]),
    (1, 1, 2, []),            # one epoch: nothing to stop early
])
def test_rungs_stop_before_the_last_epoch(epochs, grace, rf, rungs):
    plan = _plan(epochs, grace, rf)
    assert plan.max_t == epochs
    assert asha_rungs(build_scheduler(plan)) == rungs


def _first_rung_decision(scheduler, reports: list[dict]) -> list[str]:
    """ASHA's action for each trial's epoch-1 report, in order (trials only need an id here)."""
    actions = []
    for i, report in enumerate(reports):
        trial = SimpleNamespace(trial_id=f"t{i}")
        scheduler.on_trial_add(None, trial)
        actions.append(scheduler.on_trial_result(None, trial, {"epoch": 1, **report}))
    return actions


def test_asha_stops_on_its_own_metric_and_direction_while_trials_are_ranked_by_the_sweeps():
    # t1's dev UA ties t0's by a clip's luck, but its dev NLL is worse: stopping on dev_nll (min) cuts t1;
    # stopping on dev_ua (max) cuts nothing, as neither is below the other's UA.
    reports = [{"dev_ua": 0.40, "dev_nll": 1.10}, {"dev_ua": 0.40, "dev_nll": 1.60}]
    own = _plan(8, 1, 2, metric="dev_nll", mode="min")
    assert (own.metric, own.cfg.mode, own.stop_metric, own.stop_mode) == ("dev_ua", "max", "dev_nll", "min")
    assert own.own_stop_metric
    assert _first_rung_decision(build_scheduler(own), reports) == ["CONTINUE", "STOP"]
    plain = _plan(8, 1, 2)
    assert not plain.own_stop_metric and plain.stop_metric == "dev_ua"
    sched = build_scheduler(plain)
    sched.set_search_properties("dev_ua", "max")  # what TuneConfig(metric, mode) does for a plain sweep
    assert _first_rung_decision(sched, reports) == ["CONTINUE", "CONTINUE"]


def test_optuna_gets_the_ranking_metric_when_asha_has_its_own():
    searcher = build_search_alg(_plan(4, 1, 2, search_alg="optuna", metric="dev_nll", mode="min"), 2)
    assert (searcher.metric, searcher.mode) == ("dev_ua", "max")


@pytest.mark.parametrize("scheduler, match", [
    ({"metric": "dev_nll"}, r"scheduler.metric='dev_nll' needs scheduler.mode"),
    ({"metric": "dev_nll", "mode": "down"}, r"scheduler.mode must be"),
    ({"name": "fifo", "metric": "dev_nll", "mode": "min"}, r"apply to scheduler.name=asha only"),
])
def test_bad_scheduler_metric_settings_name_the_key(scheduler, match):
    with pytest.raises(ConfigError, match=match):
        SchedulerConfig(**scheduler)


def test_a_scheduler_metric_the_base_job_does_not_report_is_named():
    with pytest.raises(ConfigError, match=r"scheduler.metric 'dev_loss' is not reported by base finetune"):
        _plan(4, 1, 2, metric="dev_loss", mode="min")

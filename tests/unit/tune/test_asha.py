"""ASHA's rungs: where a trial may be stopped, never at the last epoch (a stop there saves no work and loses
the trial's final report and checkpoint)."""

from __future__ import annotations

import pytest

from ser_models.tune.config import SchedulerConfig, SweepConfig
from ser_models.tune.sweep import asha_rungs, build_scheduler, plan_sweep


def _plan(epochs: int, grace: int, rf: float):
    cfg = SweepConfig(base="finetune", output_dir="/tmp/unused", search={"train.lr_head": {"grid": [1e-3, 1e-2]}},
                      scheduler=SchedulerConfig(name="asha", grace_period=grace, reduction_factor=rf),
                      config={"pool_dir": "/p", "train": {"epochs": epochs}})
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

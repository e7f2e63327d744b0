"""A PBT trial's Ray Data reads: scheduled in the trial's placement group, within that group's spare CPUs."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.ray]


def _trial_data_context():
    """Inside a task of the group, as a PBT trial calls it: (CPU budget, scheduling strategy's group id)."""
    from ray.data import DataContext

    from ser_models.tune.targets import _reads_in_trial_bundle

    _reads_in_trial_bundle()
    ctx = DataContext.get_current()
    return ctx.execution_options.resource_limits.cpu, ctx.scheduling_strategy.placement_group.id.hex()


def test_reads_are_budgeted_to_the_spare_bundle_not_the_cluster(ray_local):
    """Ray Data's default budget is the whole cluster (2 CPUs here). A read task paused on backpressure then
    held the spare bundle's only CPU while the next operator's task waited for it (30 s per dataset until Ray
    Data's idle check let the read go on); the budget must be the CPUs of the bundles past the trial's own."""
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    ray = ray_local
    # the trial's own bundle (as under PBT: 1 CPU, here all of it used by the task below) + the reads' bundle
    pg = placement_group([{"CPU": 1.0}, {"CPU": 1.0}])
    try:
        ray.get(pg.ready(), timeout=60)
        # max_calls=1: a fresh worker process, whose DataContext no earlier task has changed
        task = ray.remote(num_cpus=1, max_calls=1)(_trial_data_context).options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0,
                                                                 placement_group_capture_child_tasks=True))
        cpu, pg_id = ray.get(task.remote(), timeout=120)
    finally:
        remove_placement_group(pg)
    assert cpu == 1.0
    assert pg_id == pg.id.hex()


def test_outside_a_placement_group_nothing_changes(ray_local):
    """An ASHA / FIFO trial (no placement group) keeps Ray Data's defaults."""
    import math

    from ray.data import DataContext

    cpu, strategy = ray_local.get(ray_local.remote(num_cpus=0, max_calls=1)(_outside).remote(), timeout=120)
    assert math.isinf(cpu) and strategy == DataContext().scheduling_strategy


def _outside():
    from ray.data import DataContext

    from ser_models.tune.targets import _reads_in_trial_bundle

    _reads_in_trial_bundle()
    ctx = DataContext.get_current()
    return ctx.execution_options.resource_limits.cpu, ctx.scheduling_strategy

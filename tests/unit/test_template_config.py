"""The config a team copies for its own data (``jobs/configs/my_data_after.yaml``): it loads as a ``jobs.after``
config, budgets in labels, draws its evaluation sets when the pool has none, asks people (not the pool's truth)
for labels, and keeps its feature cache beside its pool, outside the ``outputs/`` that ``make clean`` deletes."""

from __future__ import annotations

from pathlib import Path

from ser_models.config import load_config
from ser_models.runs.after import AfterJobConfig

TEMPLATE = Path(__file__).resolve().parents[2] / "jobs" / "configs" / "my_data_after.yaml"


def test_the_template_is_the_recipe_for_a_pool_with_no_labels():
    cfg = load_config(AfterJobConfig, TEMPLATE)
    a = cfg.active
    assert a.budget_labels and not a.budget_hours and a.num_rounds == len(a.budget_labels)
    # sizes left to the planner for the pool the loop sees (jobs.plan's overrides.txt fixes them)
    assert a.evaluation.source == "auto" and a.evaluation.test_size is None and a.evaluation.dev_size is None
    assert a.oracle == "file"
    pool, cache = Path(cfg.pool_dir), Path(a.feature_cache_dir)
    assert cache.parent == pool.parent and "outputs" not in pool.parts + cache.parts
    assert cfg.model.adapter.kind == "frozen" and cfg.model.encoder.source == "smart-turn"

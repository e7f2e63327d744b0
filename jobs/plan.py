"""Plan a label budget: test, dev and active-learning rounds, and how precise each test size makes UA.

    python -m jobs.plan budget=3000 labels='[angry,happy,neutral,sad]' expected_ua=0.6
    python -m jobs.plan budget=3000 labels='[angry,happy,neutral,sad]' shares='[0.1,0.2,0.55,0.15]'
    python -m jobs.plan budget=3000 pool_dir=outputs/demo/pool output_dir=outputs/demo/plan
    python -m jobs.plan CONFIG.yaml [key=value ...]

Prints the precision table, the sizes and the ``jobs.after`` overrides that carry out the plan
(``active.evaluation.test_size``, ``active.evaluation.dev_size``, ``active.budget_labels``); with
``output_dir`` it also writes ``plan.json``. ``pool_dir`` reads class shares and recording sizes from a prepared
pool. No Ray. The formula and its assumptions: docs/planning.md.
"""

from __future__ import annotations

import sys

from ser_models.active.planner import BudgetPlan, PlanConfig, plan_budget, read_pool_stats
from ser_models.config import parse_job_args

__all__ = ["PlanConfig", "main"]


def main(argv: list[str] | None = None) -> BudgetPlan:
    cfg = parse_job_args(PlanConfig, sys.argv[1:] if argv is None else argv, "jobs.plan")
    pool = read_pool_stats(cfg.pool_dir) if cfg.pool_dir else None
    plan = plan_budget(cfg, pool)
    print(plan.format(), flush=True)
    if cfg.output_dir:
        from ser_models.io import join, write_json_atomic

        path = join(cfg.output_dir, "plan.json")
        write_json_atomic(path, plan.to_dict())
        print(f"plan written to {path}", flush=True)
    return plan


if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

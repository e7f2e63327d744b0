"""Plan a label budget: test, dev and active-learning rounds, and how precise each test size makes UA.

    python -m jobs.plan budget=3000 labels='[angry,happy,neutral,sad]' expected_ua=0.6
    python -m jobs.plan budget=3000 labels='[angry,happy,neutral,sad]' shares='[0.1,0.2,0.55,0.15]'
    python -m jobs.plan budget=3000 pool_dir=outputs/demo/pool output_dir=outputs/demo/plan
    python -m jobs.plan CONFIG.yaml [key=value ...]
    python -m jobs.plan budget=0 run_dir=outputs/demo/after [target_ua=0.7]

Prints the precision table, the sizes and the ``jobs.after`` overrides that carry out the plan
(``active.evaluation.test_size``, ``active.evaluation.dev_size``, ``active.budget_labels``); with
``output_dir`` it also writes ``plan.json`` and ``overrides.txt`` (one quoted override a line:
``xargs python -m jobs.after CONFIG.yaml < overrides.txt``). ``pool_dir`` reads class shares and recording sizes from a prepared
pool. With ``run_dir`` (a ``jobs.after`` run) it also prints the labels forecast from the run's rounds (dev UA
against training labels, ``ser_models.planning.forecast``); ``budget=0`` prints only that. No Ray. The formula
and its assumptions: docs/planning.md.
"""

from __future__ import annotations

import shlex
import sys

from ser_models.config import parse_job_args
from ser_models.exceptions import ConfigError, PoolExhaustedError
from ser_models.io import join, write_bytes_atomic, write_json_atomic
from ser_models.ownership import deferred_claim, recognise_files
from ser_models.planning.forecast import Forecast, ForecastConfig, forecast_rounds
from ser_models.planning.planner import BudgetPlan, PlanConfig, plan_budget, read_pool_stats

__all__ = ["PlanConfig", "main"]


def main(argv: list[str] | None = None) -> BudgetPlan | Forecast:
    """The plan (or, with ``budget=0 run_dir=...``, the run's forecast alone)."""
    cfg = parse_job_args(PlanConfig, sys.argv[1:] if argv is None else argv, "jobs.plan")
    if not cfg.output_dir:
        return _plan(cfg)

    # an earlier version's plan folder (no marker, no run.json): adopted when its files read back as a plan's
    earlier = recognise_files({"plan.json": "json", "forecast.json": "json", "overrides.txt": "text"})
    # Refused now if the folder is not a plan's; claimed right before the first write, so a missing pool or a
    # refused plan leaves no folder behind.
    with deferred_claim(cfg.output_dir, "run", job="jobs.plan", recognise=earlier,
                        inputs={"pool_dir": cfg.pool_dir, "run_dir": cfg.run_dir}) as claim:
        return _plan(cfg, claim)


def _plan(cfg: PlanConfig, claim=lambda: None) -> BudgetPlan | Forecast:
    forecast = None
    if cfg.run_dir:
        from ser_models.active.round_report import read_metrics

        try:
            rows = read_metrics(cfg.run_dir)
        except FileNotFoundError as exc:
            raise ConfigError(f"run_dir: {exc}: point it at a jobs.after output_dir") from exc
        forecast = forecast_rounds(rows, ForecastConfig(target_ua=cfg.target_ua))
        print(f"run {cfg.run_dir}: " + forecast.format(), flush=True)
        if cfg.output_dir:
            claim()
            write_json_atomic(join(cfg.output_dir, "forecast.json"), forecast.to_json())
        if cfg.budget == 0:
            return forecast
    pool = read_pool_stats(cfg.pool_dir, cfg.max_per_unit) if cfg.pool_dir else None
    plan = plan_budget(cfg, pool)
    if cfg.pool_dir:
        plan.composition = _composition(cfg, plan)
    print(plan.format(), flush=True)
    if cfg.output_dir:
        claim()
        path = join(cfg.output_dir, "plan.json")
        write_json_atomic(path, plan.to_dict())
        # One override a line, quoted for a shell: `xargs python -m jobs.after CONFIG < overrides.txt` runs the plan.
        write_bytes_atomic(join(cfg.output_dir, "overrides.txt"),
                           "".join(shlex.quote(o) + "\n" for o in plan.overrides()).encode())
        print(f"plan written to {path}; its overrides to {join(cfg.output_dir, 'overrides.txt')}", flush=True)
    return plan


def _composition(cfg: PlanConfig, plan: BudgetPlan) -> list[str]:
    """What the loop's draw with the plan's sizes (``active.seed=0``, the defaults of ``active.evaluation``)
    holds on the pool's training split: recordings, speakers, groups and design effect per set, and warnings
    (fewer than 10 recordings or speakers in a set). The plan's warnings get the draw's too."""
    from ser_models.data.pool import Pool
    from ser_models.planning.evaluation_sets import DRAW_COLUMNS, EvaluationConfig, draw_evaluation_sets
    from ser_models.planning.evaluation_sizes import describe_composition

    evaluation = EvaluationConfig(test_size=plan.test_size, dev_size=plan.dev_size, icc=cfg.icc,
                                  max_per_unit=cfg.max_per_unit)
    clips = Pool.open(cfg.pool_dir).metadata(columns=DRAW_COLUMNS, split="train")
    try:
        _, summary = draw_evaluation_sets(clips, evaluation, seed=0, labels=plan.labels)
    except PoolExhaustedError as exc:
        plan.warnings.append(f"the loop could not draw these sets from the pool's training split: {exc}")
        return []
    lines, warnings = describe_composition(summary["composition"], cfg.icc)
    plan.warnings += warnings
    return [f"  {line}" for line in lines]

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
pool, and sizes the evaluation sets as the loop will on it (``ser_models.planning.pool_sizing``): its labelled dev /
test splits as they are, a test split alone kept with a dev set drawn. With ``run_dir`` (a ``jobs.after`` run) it also prints the labels forecast from the run's rounds (dev UA
against training labels, ``ser_models.planning.forecast``); ``budget=0`` prints only that. No Ray. The formula
and its assumptions: docs/planning.md.
"""

from __future__ import annotations

import shlex
import sys

from ser_models.active.round_report import read_metrics
from ser_models.config import parse_job_args
from ser_models.exceptions import ConfigError
from ser_models.io import join, write_bytes_atomic, write_json_atomic
from ser_models.ownership import deferred_claim, recognise_files
from ser_models.planning.forecast import Forecast, ForecastConfig, forecast_rounds
from ser_models.planning.planner import BudgetPlan, PlanConfig, plan_budget
from ser_models.planning.pool_sizing import plan_on_pool

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
    # With a pool: sized as the loop sizes it (its labelled splits as they are), so the overrides run unchanged.
    plan = plan_on_pool(cfg) if cfg.pool_dir else plan_budget(cfg)
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


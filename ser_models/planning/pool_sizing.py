"""One sizing of a run's evaluation sets for ``jobs.plan`` and ``jobs.after``, from the pool as it is.

A pool's labelled dev and test splits are used as they are (no label is spent on them); a labelled test split
alone is kept as the test set and a dev set is drawn from the training split; a pool with neither gets both
drawn (:func:`~ser_models.planning.evaluation_sets.pool_source`). :func:`check_sizes` is the check ``jobs.after``
runs before it claims its folder (the draw, and the training budget against what the sets leave);
:func:`plan_on_pool` plans a budget with the same source and the same draw, so the plan's overrides run
unchanged in the loop. No Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ser_models.exceptions import ConfigError, PoolExhaustedError
from ser_models.planning.evaluation_sets import (
    EvaluationConfig,
    checked_draw,
    draw_config,
    pool_source,
)
from ser_models.planning.evaluation_sizes import describe_composition
from ser_models.planning.planner import BudgetPlan, PlanConfig, plan_budget, read_pool_stats, round_targets

__all__ = ["check_sizes", "plan_on_pool"]


def check_sizes(pool, active, labels: Sequence[str] = (), dimensions: Sequence[str] = (), where: dict | None = None,
                exclude: Callable[[], Iterable[str]] | Iterable[str] = (), log: Callable[[str], None] = print):
    """Where the sets come from, the draw, and the training budget against what they leave, writing nothing.

    Args:
        pool: the opened pool.
        active: the run's ``ActiveConfig`` (``evaluation``, ``seed``, ``budget_*``).
        labels / dimensions: the run's targets.
        where: the pool filter (cross-lingual: the target group).
        exclude: clips the oracle cannot label (never drawn).
        log: progress output.

    Returns:
        ``(source, drawn)``: ``"pool"``, ``"test"`` or ``"loop"``, and the draw (``checked_draw``) or None.

    Raises:
        ConfigError: the budget does not fit in the training pool the sets leave, naming the keys.
        PoolExhaustedError: the training split cannot hold the sets.
    """
    source = pool_source(active.evaluation, pool, labels, dimensions)
    if source != "pool":
        return source, checked_draw(pool, draw_config(active.evaluation, source), active.seed, where, exclude, log,
                                    labels, budget=active)
    clips = pool.metadata(columns=["utt_id", "duration"], split="train", where=where)
    if len(clips):  # an empty training split is the loop's own error
        if active.budget_hours:
            active.seconds_targets(float(clips["duration"].astype(float).sum()))
        else:
            active.targets(len(clips))
    return source, None


def plan_on_pool(cfg: PlanConfig) -> BudgetPlan:
    """``jobs.plan`` with ``pool_dir``: the plan for the pool as the loop will use it, its training budget within
    the training clips the loop's draw (``active.seed=0``) leaves, and what that draw holds.

    Raises:
        ConfigError: the pool is too small for the plan's floors (naming its size and the plan that fits).
    """
    from ser_models.data.pool import Pool

    pool = Pool.open(cfg.pool_dir)
    stats = read_pool_stats(cfg.pool_dir, cfg.max_per_unit)
    evaluation = EvaluationConfig(max_per_unit=cfg.max_per_unit, icc=cfg.icc, max_share=cfg.max_share,
                                  half_width=cfg.half_width)
    # labels or not decides whether a split counts as labelled; the classes are the plan's
    source = pool_source(evaluation, pool, labels=list(cfg.labels) or list(stats.label_counts))
    plan = plan_budget(cfg, stats, evaluation=source)
    training = stats.splits.get("train", stats.clips)
    if source != "pool":
        sized = EvaluationConfig(test_size=max(plan.test_size, 1), dev_size=plan.dev_size,
                                 max_per_unit=cfg.max_per_unit, icc=cfg.icc, max_share=cfg.max_share)
        try:
            _, summary = checked_draw(pool, draw_config(sized, source), 0, labels=plan.labels, log=lambda _: None)
        except PoolExhaustedError as exc:
            raise ConfigError(f"the pool at {cfg.pool_dir} ({training} training clips) cannot hold the plan's "
                              f"evaluation sets: {exc}. Lower min_per_class or half_width, or add clips") from exc
        training = summary["held_out"]["training_clips"]
        plan.drawn_clips = sum(summary[p]["clips"] for p in ("test", "dev") if p in summary)
        lines, warnings = describe_composition(summary["composition"], cfg.icc)
        plan.composition = [f"  {line}" for line in lines]
        plan.warnings += warnings
    # Whole units make a drawn set a little larger or smaller than its size: the budget pays what is drawn.
    room = min(training, cfg.budget - plan.evaluation_labels)
    if plan.training_size > room:  # the loop refuses a budget its training pool cannot hold
        if room < plan.initial_size:
            raise ConfigError(f"the pool at {cfg.pool_dir} and budget={cfg.budget} leave {room} training labels "
                              f"after the evaluation sets ({plan.evaluation_labels} clips drawn, {training} training "
                              f"clips left), fewer than the initial set ({plan.initial_size}): lower min_per_class, "
                              "raise the budget, or add clips")
        what = "training clips the evaluation sets leave" if room == training else "labels the budget has left"
        plan.warnings.append(f"the training budget ({plan.training_size}) is more than the {room} {what}: the rounds "
                             f"stop at {room}")
        plan.budget_labels = round_targets(plan.initial_size, room, cfg.rounds, cfg.schedule)
    return plan

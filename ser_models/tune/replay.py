"""Replay ASHA's stopping rule over a finished full search: what ASHA would have run, kept and cost.

One ASHA run is a single draw. Its outcome hangs on the order in which trials start and reach each rung: the
first trial at a rung always goes on, a later one only beats the rung's cutoff over the trials recorded
before it. A seeded fit's curve does not depend on when it runs, so the curves of a full search (every trial
run to the end) tell what ASHA would have done under *any* trial order. This module replays Ray Tune's
``AsyncHyperBandScheduler`` rule (``ray.tune.schedulers.async_hyperband._Bracket.on_result``, Ray 2.60) on
those curves, with trials starting ``concurrent`` at a time and each report arriving when it did in the full
search.

Why not just run ASHA many times: a side-by-side run costs hours on a small machine, and the replay checks
itself against the real ASHA run of the same benchmark (``bench/sweep.py --replay``).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrialCurve:
    """One full-search trial's reports.

    Attributes:
        trial_id: the trial's id (any unique text).
        epochs: ``[E]`` the epochs reported, ascending (1, 2, ...).
        seconds: ``[E]`` seconds from the trial's start to each report (Tune's ``time_total_s``).
        stop_value: ``[E]`` the metric ASHA stops on, per epoch.
        rank_value: ``[E]`` the metric trials are ranked by, per epoch (a fit keeps its best epoch).
        total_seconds: the trial's whole reserved time when it runs to the end (its final report, after the
            last epoch's evaluation and the test metrics), >= ``seconds[-1]``.
    """

    trial_id: str
    epochs: tuple[int, ...]
    seconds: tuple[float, ...]
    stop_value: tuple[float, ...]
    rank_value: tuple[float, ...]
    total_seconds: float

    def __post_init__(self):
        n = len(self.epochs)
        if n == 0 or not (len(self.seconds) == len(self.stop_value) == len(self.rank_value) == n):
            raise ValueError(f"trial {self.trial_id}: epochs, seconds, stop_value and rank_value need the same "
                             f"non-zero length, got {n}, {len(self.seconds)}, {len(self.stop_value)}, "
                             f"{len(self.rank_value)}")
        if list(self.epochs) != sorted(set(self.epochs)):
            raise ValueError(f"trial {self.trial_id}: epochs must be strictly ascending, got {list(self.epochs)}")


@dataclass(frozen=True)
class ReplayOutcome:
    """What ASHA would have done under one trial order.

    Attributes:
        epochs_run: ``{trial_id: epochs}`` each trial ran before it was stopped or finished.
        stopped: the trials ASHA stopped before their last epoch, in start order.
        reserved_seconds: the sum of every trial's reserved seconds (what the trials bill, CPUs x this).
        wall_seconds: from the first trial's start to the last trial's end, ``concurrent`` at a time.
        best_value: the best ``rank_value`` over the epochs each trial ran.
        best_trials: the trials reaching ``best_value``.
    """

    epochs_run: dict[str, int]
    stopped: tuple[str, ...]
    reserved_seconds: float
    wall_seconds: float
    best_value: float
    best_trials: tuple[str, ...]


def _sign(mode: str) -> float:
    """+1 for ``max``, -1 for ``min``: values times this are better when larger."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    return 1.0 if mode == "max" else -1.0


def replay_asha(curves: Sequence[TrialCurve], order: Sequence[str], rungs: Sequence[float],
                reduction_factor: float, stop_mode: str = "max", rank_mode: str = "max",
                concurrent: int = 1) -> ReplayOutcome:
    """Replay asynchronous successive halving over recorded full-length curves.

    At a trial's first report at or past a rung it has not passed yet, the rung's cutoff is the
    ``(1 - 1/reduction_factor)`` percentile of the values recorded there *before* it (none recorded: go on);
    the trial stops when its value is below the cutoff (``stop_mode='min'`` negates values, as Ray does), and
    its value is recorded either way. Trials start in ``order``, at most ``concurrent`` at once; a slot frees
    when its trial stops (after that report) or finishes (after ``total_seconds``).

    Args:
        curves: every trial of the full search.
        order: trial ids in the order the trials start (each exactly once).
        rungs: epochs at which ASHA may stop a trial (the scheduler's, e.g. ``asha_rungs(build_scheduler(..))``).
        reduction_factor: ASHA's reduction factor (> 1).
        stop_mode: ``max`` or ``min``, the direction of ``stop_value``.
        rank_mode: ``max`` or ``min``, the direction of ``rank_value``.
        concurrent: trials at once (>= 1).

    Returns:
        The replayed outcome.

    Raises:
        ValueError: ``order`` is not a permutation of the curves' ids, or a setting is out of range.
    """
    by_id = {c.trial_id: c for c in curves}
    if len(by_id) != len(curves):
        raise ValueError("trial ids must be unique")
    if sorted(order) != sorted(by_id):
        raise ValueError(f"order must hold each of the {len(by_id)} trial ids once, got {len(order)} ids")
    if reduction_factor <= 1 or concurrent < 1:
        raise ValueError(f"reduction_factor must be > 1 and concurrent >= 1, got {reduction_factor}, {concurrent}")
    stop_sign, rank_sign = _sign(stop_mode), _sign(rank_mode)
    milestones = sorted(rungs, reverse=True)  # Ray keeps its rungs descending and decides at the first match
    recorded: dict[float, list[float]] = {m: [] for m in milestones}
    passed: dict[str, set] = {t: set() for t in by_id}
    quantile = (1 - 1 / reduction_factor) * 100

    def on_report(tid: str, epoch: int, value: float) -> bool:
        """Ray's ``_Bracket.on_result``: True to stop."""
        value = stop_sign * value
        for milestone in milestones:
            if epoch < milestone or milestone in passed[tid]:
                continue
            seen = recorded[milestone]
            stop = bool(seen) and value < np.nanpercentile(seen, quantile)
            seen.append(value)
            passed[tid].add(milestone)
            return stop
        return False

    # Events: (report time, start index, report index, trial, trial start time); ties go to the trial started
    # first, then to its earlier report.
    queue, events, epochs_run, stopped = list(order), [], {}, set()
    reserved, clock, started = 0.0, 0.0, 0

    def start(now: float) -> None:
        nonlocal started
        tid = queue.pop(0)
        heapq.heappush(events, (now + by_id[tid].seconds[0], started, 0, tid, now))
        started += 1

    for _ in range(min(concurrent, len(queue))):
        start(0.0)
    while events:
        now, idx, k, tid, t0 = heapq.heappop(events)
        curve = by_id[tid]
        last = k == len(curve.epochs) - 1
        if on_report(tid, curve.epochs[k], curve.stop_value[k]) and not last:
            end, epochs_run[tid] = now, curve.epochs[k]
            stopped.add(tid)
        elif last:
            end, epochs_run[tid] = t0 + curve.total_seconds, curve.epochs[k]
        else:
            heapq.heappush(events, (t0 + curve.seconds[k + 1], idx, k + 1, tid, t0))
            continue
        reserved += end - t0
        clock = max(clock, end)
        if queue:
            start(end)

    kept = {}
    for tid, ran in epochs_run.items():
        curve = by_id[tid]
        values = [rank_sign * v for e, v in zip(curve.epochs, curve.rank_value) if e <= ran and not math.isnan(v)]
        kept[tid] = max(values) if values else -math.inf
    best = max(kept.values())
    return ReplayOutcome(epochs_run=epochs_run, stopped=tuple(t for t in order if t in stopped),
                         reserved_seconds=reserved, wall_seconds=clock,
                         best_value=rank_sign * best,
                         best_trials=tuple(t for t in order if kept[t] >= best - 1e-12))


def full_search_best(curves: Sequence[TrialCurve], rank_mode: str = "max") -> tuple[float, tuple[str, ...]]:
    """The full search's best ``rank_value`` (over all epochs) and the trials tied at it."""
    sign = _sign(rank_mode)
    kept = {c.trial_id: max(sign * v for v in c.rank_value if not math.isnan(v)) for c in curves}
    best = max(kept.values())
    return sign * best, tuple(t for t, v in kept.items() if v >= best - 1e-12)


def curves_from_grid(grid, stop_metric: str, rank_metric: str, time_attr: str = "epoch") -> list[TrialCurve]:
    """The full-length curves of a finished sweep (a ``ray.tune.ResultGrid``), in the order Tune created them.

    A trial's final report repeats its last epoch with the test metrics; its ``time_total_s`` is the trial's
    whole reserved time. A resumed trial reports its finished epochs again: the first report of each epoch
    counts (its time is the one the uninterrupted trial had).

    Raises:
        ValueError: a trial reported neither metric, or no trial reported.
    """
    from ser_models.tune.results import trial_id

    out = []
    for r in grid:
        df = r.metrics_dataframe
        tid = trial_id(r)
        if df is None or df.empty or time_attr not in df:
            raise ValueError(f"trial {tid} has no reports with {time_attr!r}")
        for metric in (stop_metric, rank_metric):
            if metric not in df:
                raise ValueError(f"trial {tid} never reported {metric!r}; it reported {sorted(df.columns)}")
        rows = df[df[time_attr].notna()].drop_duplicates(time_attr, keep="first").sort_values(time_attr)
        out.append(TrialCurve(trial_id=tid, epochs=tuple(int(e) for e in rows[time_attr]),
                              seconds=tuple(float(s) for s in rows["time_total_s"]),
                              stop_value=tuple(float(v) for v in rows[stop_metric]),
                              rank_value=tuple(float(v) for v in rows[rank_metric]),
                              total_seconds=float(df["time_total_s"].max())))
    if not out:
        raise ValueError("the sweep has no trials")
    return sorted(out, key=lambda c: c.trial_id)

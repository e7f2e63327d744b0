"""What active learning buys, with statistics that hold: paired differences to a baseline over seeds, the
area under the budget curve, and label savings. One module for ``jobs.compare``, the benchmarks and the demo.

Every function reads a tidy table of runs, one row per (strategy, seed, round), with at least the columns
``strategy``, ``seed``, ``labelled`` (clips labelled when the round's model was trained) and a metric column
(``test_ua`` by default). Seeds are *paired*: under one seed every strategy starts from the same initial set,
so a strategy's difference to the baseline is taken seed by seed, which removes the seed-to-seed spread that
both share (with 20 seeds this resolves gaps of 2-3 UA points that unpaired bands of 3 seeds cannot).

References:
    Zhan et al., "A Comparative Survey: Benchmarking for Pool-based Active Learning", IJCAI 2021 (the area
    under the budget curve, AUBC, as one number per run).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ser_models import io
from ser_models.io import save_figure
from ser_models.scoring.evaluation import headline_metric

#: Columns every runs table has (``jobs.after`` metrics give them per round; ``--runs`` CSVs hold them).
RUN_COLUMNS = ("strategy", "seed", "round", "labelled", "fraction", "test_ua")


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval of ``values``.

    Returns:
        ``(mean, low, high)``; with one value the interval is ``(nan, nan)`` (nothing to estimate a spread from).
    """
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided paired t-test of ``a - b`` (same seeds in the same order).

    Returns:
        ``(t statistic, p-value)``; ``(nan, nan)`` for fewer than two pairs; ``(0, 1)`` when every difference
        is 0, ``(±inf, 0)`` when all are equal and non-zero.
    """
    from scipy import stats

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(d) < 2:
        return math.nan, math.nan
    if np.ptp(d) <= 1e-12:  # no spread (up to float noise): scipy would return nan or warn
        mean = float(d.mean())
        return (0.0, 1.0) if abs(mean) <= 1e-12 else (math.copysign(math.inf, mean), 0.0)
    res = stats.ttest_1samp(d, 0.0)
    return float(res.statistic), float(res.pvalue)


def _check(runs: pd.DataFrame, metric: str, budget: str) -> None:
    missing = [c for c in ("strategy", "seed", budget, metric) if c not in runs.columns]
    if missing:
        raise ValueError(f"the runs table lacks column(s) {missing}; it has {list(runs.columns)}")


def budget_table(runs: pd.DataFrame, baseline: str | None = "random", metric: str = "test_ua",
                 budget: str = "labelled", confidence: float = 0.95) -> pd.DataFrame:
    """Per strategy and budget: the metric's mean and CI over seeds, and the paired difference to ``baseline``.

    Args:
        runs: one row per (strategy, seed, round).
        baseline: the strategy every other is compared with, seed by seed (None = no comparison).
        metric: the column compared (higher is better).
        budget: the column that names a budget (``labelled`` clips, or ``fraction``).
        confidence: of the intervals.

    Returns:
        One row per (strategy, budget) in the table's order: ``seeds``, ``mean``, ``low``, ``high`` and, where
        the baseline ran the same seed at the same budget, ``pairs``, ``diff`` (mean of strategy - baseline),
        ``diff_low``, ``diff_high``, ``t``, ``p`` (two-sided paired t-test) and ``verdict``: ``better`` /
        ``worse`` when the difference's interval excludes 0, else ``no difference resolved``.
    """
    _check(runs, metric, budget)
    base = (runs[runs.strategy == baseline].set_index(["seed", budget])[metric] if baseline is not None
            else pd.Series(dtype=float))
    rows = []
    for (strategy, b), g in runs.groupby(["strategy", budget], sort=False):
        mean, low, high = t_interval(g[metric], confidence)
        row = {"strategy": strategy, budget: b, "seeds": int(g.seed.nunique()), "mean": mean, "low": low,
               "high": high}
        keys = [(s, b) for s in g.seed if (s, b) in base.index]
        if baseline is not None and strategy != baseline and keys:
            mine = g.set_index("seed").loc[[s for s, _ in keys], metric].to_numpy()
            theirs = base.loc[keys].to_numpy()
            diff, dlow, dhigh = t_interval(mine - theirs, confidence)
            t, p = paired_t_test(mine, theirs)
            verdict = ("better" if dlow > 0 else "worse" if dhigh < 0 else "no difference resolved")
            row.update(pairs=len(keys), diff=diff, diff_low=dlow, diff_high=dhigh, t=t, p=p, verdict=verdict)
        rows.append(row)
    return pd.DataFrame(rows)


def aubc(budgets: Sequence[float], values: Sequence[float]) -> float:
    """Normalised area under one run's budget curve: the trapezoid area over its budget range divided by
    that range (so it reads as a mean metric over the budgets, in the metric's units).

    Args:
        budgets: [R] increasing budgets (labelled clips or fractions).
        values: [R] the metric at each budget.

    Returns:
        The AUBC; with one budget, that budget's value.
    """
    x, y = np.asarray(budgets, dtype=float), np.asarray(values, dtype=float)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"aubc needs as many values as budgets, got {len(x)} and {len(y)}")
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"aubc needs strictly increasing budgets, got {list(x)}")
    if len(x) == 1:
        return float(y[0])
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def aubc_table(runs: pd.DataFrame, baseline: str | None = "random", metric: str = "test_ua",
               budget: str = "fraction", confidence: float = 0.95) -> pd.DataFrame:
    """AUBC of every run (strategy, seed), then per strategy its mean and CI and the paired difference to
    the baseline's AUBC under the same seeds (the columns of :func:`budget_table`).

    Runs of one strategy must share their budgets (an all-labels run at fraction 1.0 is a run of its own).
    """
    _check(runs, metric, budget)
    per_run = []
    for (s, seed), g in runs.groupby(["strategy", "seed"], sort=False):
        g = g.sort_values(budget)
        per_run.append({"strategy": s, "seed": seed, "budget": "AUBC", "aubc": aubc(g[budget], g[metric])})
    return budget_table(pd.DataFrame(per_run), baseline, metric="aubc", budget="budget",
                        confidence=confidence).drop(columns="budget")


def labels_to_reach(budgets: Sequence[float], values: Sequence[float], target: float) -> float:
    """The budget at which one run's curve first reaches ``target``, linearly interpolated between rounds.

    Returns:
        The budget (the first budget when the curve starts at or above the target); NaN when it is never
        reached (a valid answer: "not reached").
    """
    x, y = np.asarray(budgets, dtype=float), np.asarray(values, dtype=float)
    for i in range(len(x)):
        if y[i] >= target:
            if i == 0:
                return float(x[0])
            # the straight line from the round before, which was below the target
            return float(x[i - 1] + (target - y[i - 1]) * (x[i] - x[i - 1]) / (y[i] - y[i - 1]))
    return math.nan


def _mean_reached(values) -> float:
    """Mean over the finite values (the seeds that reached a target); NaN when none did."""
    v = np.asarray(values, dtype=float)
    return float(np.nanmean(v)) if np.isfinite(v).any() else math.nan


def label_savings(runs: pd.DataFrame, baseline: str = "random", full: float | dict | None = None,
                  metric: str = "test_ua", budget: str = "labelled", share_of_full: float = 0.95) -> pd.DataFrame:
    """Labels each strategy needs, seed by seed, to reach (a) the baseline's metric at its largest budget
    under the same seed and (b) ``share_of_full`` of the all-labels metric.

    Args:
        runs: one row per (strategy, seed, round); the baseline's rows included.
        baseline: whose final value is target (a).
        full: the all-labels metric: one number, or ``{seed: value}``; None = no target (b).
        share_of_full: the share of ``full`` of target (b).

    Returns:
        One row per strategy: ``seeds``; ``to_baseline`` (mean labels over the seeds that reached it, NaN if
        none), ``to_baseline_reached`` (how many seeds did), ``saving`` (1 - to_baseline / the baseline's
        largest budget, mean over those seeds: the share of labels saved); the same ``to_full`` and
        ``to_full_reached`` for target (b).
    """
    _check(runs, metric, budget)
    base = runs[runs.strategy == baseline]
    final = {seed: (g.sort_values(budget)[metric].iloc[-1], g[budget].max()) for seed, g in base.groupby("seed")}
    rows = []
    for strategy, g in runs.groupby("strategy", sort=False):
        to_base, saved, to_full = [], [], []
        seeds = sorted(g.seed.unique())
        for seed in seeds:
            curve = g[g.seed == seed].sort_values(budget)
            x, y = curve[budget].to_numpy(), curve[metric].to_numpy()
            if seed in final:
                need = labels_to_reach(x, y, final[seed][0])
                to_base.append(need)
                saved.append(1 - need / final[seed][1])
            target = full.get(seed) if isinstance(full, dict) else full
            if target is not None:
                to_full.append(labels_to_reach(x, y, share_of_full * target))

        rows.append({"strategy": strategy, "seeds": len(seeds),
                     "to_baseline": _mean_reached(to_base), "to_baseline_reached": int(np.isfinite(to_base).sum()),
                     "saving": _mean_reached(saved),
                     "to_full": _mean_reached(to_full), "to_full_reached": int(np.isfinite(to_full).sum())})
    return pd.DataFrame(rows)


def format_ci(mean: float, low: float, high: float, digits: int = 3, signed: bool = False) -> str:
    """``0.612 [0.598, 0.626]``; a single seed gives just the mean."""
    if not np.isfinite(mean):
        return "-"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f.format(mean)
    return f"{f.format(mean)} [{f.format(low)}, {f.format(high)}]"




def runs_frame(runs: Sequence[tuple[str, int, Sequence[dict]]], split: str = "test") -> pd.DataFrame:
    """A runs table from ``(strategy, seed, rounds)`` triples, ``rounds`` as ``jobs.after`` writes them in
    ``metrics.jsonl`` (``round``, ``labelled``, ``fraction`` and ``test`` / ``dev`` evaluations).

    Returns:
        One row per round with :data:`RUN_COLUMNS` (``test_ua`` holds ``split``'s UA, or its mean CCC for a
        model without classes) and ``dev_ua``.
    """

    rows = []
    for strategy, seed, rounds in runs:
        for r in rounds:
            ev, dev = r.get(split) or {}, r.get("dev") or {}
            rows.append({"strategy": strategy, "seed": seed, "round": r.get("round", 0), "labelled": r["labelled"],
                         "fraction": r["fraction"], "test_ua": ev[headline_metric(ev)] if ev else math.nan,
                         "dev_ua": dev[headline_metric(dev)] if dev else math.nan})
    return pd.DataFrame(rows, columns=[*RUN_COLUMNS, "dev_ua"])


def plot_bands(runs: pd.DataFrame, path, full: float | None = None, metric: str = "UA",
               confidence: float = 0.95) -> None:
    """Mean test metric per strategy against labelled clips, with its t-interval over seeds as a band; the
    all-labels value as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    stats = budget_table(runs, baseline=None, confidence=confidence)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for strategy, g in stats.groupby("strategy", sort=False):
        line, = ax.plot(g.labelled, g["mean"], marker="o", label=f"{strategy} ({int(g.seeds.max())} seeds)")
        if g.low.notna().all():
            ax.fill_between(g.labelled, g.low, g.high, color=line.get_color(), alpha=0.18, linewidth=0)
    if full is not None:
        ax.axhline(full, linestyle="--", color="gray", label="all labels")
    _finish_plot(fig, ax, f"test {metric} (mean, {100 * confidence:g} % CI over seeds)", path)


def run_seed(run_dir) -> int | None:
    """The seed a ``jobs.after`` (``active.seed``) or ``jobs.finetune`` (``train.optim.seed``) run folder was made
    with, from its ``run.json``; None when it has none."""
    from ser_models.provenance import RUN_FILE

    path = f"{str(run_dir).rstrip('/')}/{RUN_FILE}"
    if not io.exists(path):
        return None
    config = io.read_json(path).get("config", {})
    # a run folder written before the optimiser keys moved into train.optim records train.seed
    seed = config.get("active.seed", config.get("train.optim.seed", config.get("train.seed")))
    return None if seed is None else int(seed)


def evidence_report(runs: pd.DataFrame, baseline: str | None = "random", full: float | dict | None = None,
                    metric: str = "UA") -> str:
    """The printed comparison of several seeds per strategy: per budget mean [95 % CI] and the paired
    difference to the baseline, then AUBC and label savings (plain text, one table each)."""
    def paired(r) -> str:
        if not isinstance(r.get("verdict"), str):
            return ""
        if identical(r):  # the same clips and the same UA under every seed: nothing was compared
            return f"   same as {baseline} under every seed: no comparison"
        return f"   {format_ci(r['diff'], r.diff_low, r.diff_high, signed=True)}  p={r.p:.3f}  {r.verdict}"

    def identical(r) -> bool:
        return all(abs(float(r[k])) <= 1e-12 for k in ("diff", "diff_low", "diff_high") if np.isfinite(r[k]))

    budgets = budget_table(runs, baseline if baseline in set(runs.strategy) else None)
    lines = [f"per budget: test {metric}, mean [95 % CI] over seeds"
             + (f"; paired difference to {baseline} [95 % CI], p (paired t-test)" if "diff" in budgets else "")]
    for _, r in budgets.iterrows():
        lines.append(f"  {r.strategy:<20} {int(r.labelled):>6} labels  {r.seeds:>3} seeds  "
                     f"{format_ci(r['mean'], r.low, r.high)}{paired(r)}")
    areas = aubc_table(runs, baseline if baseline in set(runs.strategy) else None)
    lines.append(f"\nAUBC (normalised area under the test {metric} budget curve), mean [95 % CI]")
    for _, r in areas.iterrows():
        lines.append(f"  {r.strategy:<20} {format_ci(r['mean'], r.low, r.high)}{paired(r)}")
    if baseline in set(runs.strategy):
        lines.append(f"\nlabel savings: labels to reach {baseline}'s test {metric} at its largest budget"
                     + (" / 95 % of the all-labels value" if full is not None else "") + " (per seed, interpolated)")
        for _, r in label_savings(runs, baseline, full=full).iterrows():
            # A saving is one strategy's labels against the baseline's: the baseline against itself saves nothing.
            reach = ("(the baseline)" if r.strategy == baseline else "not reached" if r.to_baseline_reached == 0
                     else f"{r.to_baseline:.0f} labels ({r.to_baseline_reached}/{r.seeds} seeds, saving "
                          f"{100 * r.saving:+.0f} %)")
            to_full = "" if full is None else ("  |  not reached" if r.to_full_reached == 0 else
                                               f"  |  {r.to_full:.0f} labels ({r.to_full_reached}/{r.seeds} seeds)")
            lines.append(f"  {r.strategy:<20} {reach}{to_full}")
    return "\n".join(lines)


#: Prefix of a runs table's per-class columns: ``labels_<class>`` holds the training labels of that class a
#: round's model was trained on (of ``labelled``), from the run's ledger.
CLASS_PREFIX = "labels_"


def class_columns(runs: pd.DataFrame) -> list[str]:
    """The classes a runs table counts labels of (its ``labels_<class>`` columns), in the table's order."""
    return [c[len(CLASS_PREFIX):] for c in runs.columns if c.startswith(CLASS_PREFIX)]


def rarest_class(counts: dict[str, float]) -> str:
    """The class with the fewest clips in ``counts`` (``{class: clips}``); a tie goes to the first listed.

    Raises:
        ValueError: ``counts`` is empty.
    """
    if not counts:
        raise ValueError("rarest_class needs at least one class count")
    return min(counts, key=lambda k: (counts[k], list(counts).index(k)))


def class_yield_table(runs: pd.DataFrame, rare: str, baseline: str | None = "random", budget: str = "labelled",
                      confidence: float = 0.95) -> pd.DataFrame:
    """Per strategy and budget: labels of class ``rare`` among the labelled clips, their share, and the paired
    difference to ``baseline`` seed by seed (the statistics of :func:`budget_table` on the class's count).

    Under one seed every strategy is at the same budget with the same number of labelled clips, so the
    paired difference of the share is the paired difference of the count divided by the budget.

    Args:
        runs: one row per (strategy, seed, round) with a ``labels_<rare>`` column (:data:`CLASS_PREFIX`).
        rare: the class counted (usually :func:`rarest_class` of the training clips).
        baseline: the strategy every other is compared with (None = no comparison).
        budget: the column that names a budget (labelled clips).
        confidence: of the intervals.

    Returns:
        :func:`budget_table`'s columns for the count (``mean``, ``low``, ``high``, ``diff``, ``diff_low``,
        ``diff_high``, ``t``, ``p``, ``verdict``), plus ``share`` (mean count / budget) and ``ratio`` (mean count
        / the baseline's mean count at that budget; NaN where the baseline found none or did not run); the
        verdict reads ``more`` / ``fewer`` / ``no difference resolved``.

    Raises:
        ValueError: the table has no ``labels_<rare>`` column (it names the columns it has).
    """
    column = CLASS_PREFIX + rare
    if column not in runs.columns:
        raise ValueError(f"the runs table has no {column!r} column (labels of class {rare!r} per round); it has "
                         f"{list(runs.columns)}")
    table = budget_table(runs, baseline, metric=column, budget=budget, confidence=confidence)
    if "verdict" in table:  # more of a class is not better in itself: say which way the difference goes
        table["verdict"] = table["verdict"].replace({"better": "more", "worse": "fewer"})
    table["share"] = table["mean"] / table[budget]
    base = (table[table.strategy == baseline].set_index(budget)["mean"] if baseline is not None
            else pd.Series(dtype=float))
    ref = table[budget].map(base) if len(base) else pd.Series(math.nan, index=table.index)
    table["ratio"] = (table["mean"] / ref.where(ref > 0)).astype(float)
    return table


def class_means(runs: pd.DataFrame, budget: str = "labelled") -> pd.DataFrame:
    """Mean labels per class over seeds, one row per (strategy, budget), one column per class."""
    classes = class_columns(runs)
    means = runs.groupby(["strategy", budget], sort=False)[[CLASS_PREFIX + c for c in classes]].mean()
    return means.rename(columns=lambda c: c[len(CLASS_PREFIX):]).reset_index()


def class_yield_report(runs: pd.DataFrame, rare: str, share: float | None = None,
                       baseline: str | None = "random") -> str:
    """The printed class yield: mean labels per class for every strategy and budget, then the rarest class's
    labels and share with the paired difference to ``baseline`` [95 % CI] over seeds.

    Args:
        runs: one row per (strategy, seed, round) with ``labels_<class>`` columns.
        rare: the class of the second table.
        share: ``rare``'s share of the training clips (what random labelling finds on average); None = unknown.
        baseline: the strategy compared with.
    """
    classes = class_columns(runs)
    lines = ["labels per class (mean over seeds), by strategy and budget",
             f"  {'strategy':<20} {'labels':>6}  " + "  ".join(f"{c:>8}" for c in classes)]
    for _, r in class_means(runs).iterrows():
        lines.append(f"  {r.strategy:<20} {int(r.labelled):>6}  " + "  ".join(f"{r[c]:>8.1f}" for c in classes))
    base = baseline if baseline in set(runs.strategy) else None
    table = class_yield_table(runs, rare, base)
    pool = f", {100 * share:.1f} % of the training clips" if share is not None else ""
    lines.append(f"\nrarest class: {rare}{pool}. Its labels, mean [95 % CI] over seeds (share of the labels)"
                 + (f"; paired difference to {base} [95 % CI], ratio to {base}'s mean" if base else ""))
    for _, r in table.iterrows():
        paired = (f"   {format_ci(r['diff'], r.diff_low, r.diff_high, digits=1, signed=True)}"
                  + (f"  x{r.ratio:.2f}" if np.isfinite(r.ratio) else "") + f"  {r.verdict}"
                  if isinstance(r.get("verdict"), str) else "")
        lines.append(f"  {r.strategy:<20} {int(r.labelled):>6} labels  {r.seeds:>3} seeds  "
                     f"{format_ci(r['mean'], r.low, r.high, digits=1)} ({100 * r.share:.1f} %){paired}")
    return "\n".join(lines)


def plot_class_yield(runs: pd.DataFrame, rare: str, path, share: float | None = None,
                     confidence: float = 0.95) -> None:
    """Labels of class ``rare`` per strategy against labelled clips, mean and t-interval band over seeds (the
    style of :func:`plot_bands`); what labelling in proportion to the training clips finds as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    stats = class_yield_table(runs, rare, baseline=None, confidence=confidence)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for strategy, g in stats.groupby("strategy", sort=False):
        line, = ax.plot(g.labelled, g["mean"], marker="o", label=f"{strategy} ({int(g.seeds.max())} seeds)")
        if g.low.notna().all():
            ax.fill_between(g.labelled, g.low, g.high, color=line.get_color(), alpha=0.18, linewidth=0)
    if share is not None:
        x = np.array(sorted(stats.labelled.unique()), dtype=float)
        ax.plot(x, share * x, linestyle="--", color="gray", label=f"{100 * share:.1f} % of the labels")
    _finish_plot(fig, ax, f"{rare} labels (mean, {100 * confidence:g} % CI over seeds)", path)


def _finish_plot(fig, ax, ylabel: str, path) -> None:
    """Label, grid and legend a curve-against-labels plot, then save it to ``path`` and close it."""
    import matplotlib.pyplot as plt


    ax.set_xlabel("labelled clips")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


__all__ = ["CLASS_PREFIX", "RUN_COLUMNS", "aubc", "aubc_table", "budget_table", "class_columns", "class_means",
           "class_yield_report", "class_yield_table", "evidence_report", "format_ci", "label_savings",
           "labels_to_reach", "paired_t_test", "plot_bands", "plot_class_yield", "rarest_class", "run_seed",
           "runs_frame", "t_interval"]

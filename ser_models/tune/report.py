"""The sweep's PNGs: the metric against each swept key, the scheduler's curves, and size against metric."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from ser_models.io import save_figure
from ser_models.tune.results import curves


def write_report(frame: pd.DataFrame, grid, plan, out_dir) -> list[str]:
    """Write ``metric_by_key.png``, ``curves.png`` and ``params_vs_metric.png`` (when sizes were reported).

    Returns:
        The paths written.
    """
    import matplotlib

    matplotlib.use("Agg")
    written = [_by_key(frame, plan, out_dir / "metric_by_key.png"),
               _curves(frame, curves(grid, plan), plan, out_dir / "curves.png")]
    if "trainable_params" in frame and frame["trainable_params"].notna().any():
        written.append(_pareto(frame, plan, out_dir / "params_vs_metric.png"))
    return written


def _by_key(frame, plan, path) -> str:
    """One panel per swept key: each trial's metric at its value (inactive values apart, log axes for
    loguniform keys)."""
    import matplotlib
    import matplotlib.pyplot as plt

    n = len(plan.params)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    done = frame.dropna(subset=["metric"])
    for ax, p in zip(axes.flat, plan.params):
        vals = done[p.key]
        colours = ["tab:red" if s == "stopped" else "tab:blue" for s in done["status"]]
        numeric = p.kind in ("uniform", "loguniform", "randint", "qrandint") or (
            p.kind in ("choice", "grid") and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 for v in p.values))
        if numeric:
            x = pd.to_numeric(vals, errors="coerce")
            ax.scatter(x, done["metric"], c=colours, s=28, alpha=0.8)
            if p.kind == "loguniform":
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        else:
            cats = [_label(v) for v in p.values] + ["(inactive)"]
            applied = [json.loads(c) for c in done["config_json"]]
            labels = [_label(a[p.key]) if p.key in a else "(inactive)" for a in applied]
            pos = {c: i for i, c in enumerate(cats)}
            xs = [pos.get(lbl, len(cats) - 1) + np.random.default_rng(i).uniform(-0.12, 0.12)
                  for i, lbl in enumerate(labels)]
            ax.scatter(xs, done["metric"], c=colours, s=28, alpha=0.8)
            used = sorted({pos.get(lbl, len(cats) - 1) for lbl in labels} | set(range(len(p.values))))
            ax.set_xticks(used, [cats[i] for i in used], rotation=20, fontsize=8)
        ax.set_title(p.key, fontsize=9)
        ax.set_ylabel(plan.metric)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"{plan.metric} by swept key (blue: ran to the end, red: stopped early)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return str(path)


def _label(value) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) or value is None else str(value)


def _curves(frame, hist: dict, plan, path) -> str:
    """The metric per epoch/round of every trial; a stopped trial's line ends in an x."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    status = dict(zip(frame["trial_id"], frame["status"]))
    best = frame["trial_id"].iloc[0] if len(frame) else None
    for tid, rows in hist.items():
        if rows.empty:
            continue
        stopped = status.get(tid) == "stopped"
        colour = "tab:green" if tid == best else ("tab:red" if stopped else "tab:blue")
        ax.plot(rows[plan.time_attr], rows[plan.metric], "-", color=colour, alpha=0.7,
                lw=2.2 if tid == best else 1.2)
        ax.plot(rows[plan.time_attr].iloc[-1], rows[plan.metric].iloc[-1], "x" if stopped else "o", color=colour,
                ms=7)
    ax.set_xlabel(plan.time_attr)
    ax.set_ylabel(plan.metric)
    ax.set_title(f"{plan.cfg.scheduler.name.upper()}: x = stopped early, o = ran to the end, green = best",
                 fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return str(path)


def pareto_front(params: np.ndarray, metric: np.ndarray, mode: str = "max") -> np.ndarray:
    """Indexes of the trials no other trial beats with fewer (or equal) trainable parameters.

    Args:
        params: [N] trainable parameter counts.
        metric: [N] metric values.
        mode: ``max`` or ``min`` for the metric.

    Returns:
        [K] indexes, by increasing parameter count.
    """
    sign = 1.0 if mode == "max" else -1.0
    order = np.lexsort((-sign * metric, params))  # fewest params first; best metric first among equals
    front, best = [], -np.inf
    for i in order:
        if sign * metric[i] > best:
            front.append(int(i))
            best = sign * metric[i]
    return np.asarray(front, dtype=np.int64)


def _pareto(frame, plan, path) -> str:
    import matplotlib.pyplot as plt

    done = frame.dropna(subset=["metric", "trainable_params"]).reset_index(drop=True)
    params = done["trainable_params"].to_numpy(dtype=np.float64)
    metric = done["metric"].to_numpy(dtype=np.float64)
    front = pareto_front(params, metric, plan.cfg.mode)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colours = ["tab:red" if s == "stopped" else "tab:blue" for s in done["status"]]
    ax.scatter(params, metric, c=colours, s=30, alpha=0.8)
    if len(front):
        ax.step(params[front], metric[front], where="post", color="black", lw=1.2)
        ax.scatter(params[front], metric[front], s=90, facecolors="none", edgecolors="black", lw=1.4,
                   label="Pareto front (no trial is better with fewer trainable parameters)")
        ax.legend(fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel(plan.metric)
    ax.set_title("size vs quality (red: stopped early)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return str(path)

"""Learning curves and tables over finished runs (``jobs.compare`` and every run's
``report/learning_curve.png``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ser_models.active.round_report import headline
from ser_models.io import save_figure


def plot_learning_curves(runs: dict[str, list[dict]], path: str | Path, split: str = "test") -> None:
    """UA vs labelled fraction, one line per run (a single-point run, e.g. full-data fine-tuning, is drawn as
    a dashed horizontal reference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, rows in runs.items():
        pts = [(r["fraction"], headline(r[split])[1]) for r in rows if r.get(split)]
        if not pts:
            continue
        if len(pts) == 1 and pts[0][0] >= 1.0:
            ax.axhline(pts[0][1], linestyle="--", color="gray", label=f"{name} (100%)")
            continue
        xs, ys = zip(*pts)
        line, = ax.plot([100 * x for x in xs], ys, marker="o", label=name)
        fired = [r for r in rows if (r.get("stopping") or {}).get("fired")]
        if fired:  # the first round a stopping criterion fired: where labelling could have ended
            first = fired[0]
            ax.axvline(100 * first["fraction"], color=line.get_color(), linestyle=":", alpha=0.7)
            ax.annotate("stop: " + "+".join(first["stopping"]["fired"]), (100 * first["fraction"], min(ys)),
                        fontsize=7, rotation=90, va="bottom", ha="right", color=line.get_color())
        if len(runs) == 1:
            dev = [(r["fraction"], headline(r["dev"])[1]) for r in rows if r.get("dev")]
            if dev:
                dx, dy = zip(*dev)
                ax.plot([100 * x for x in dx], dy, marker="s", linestyle=":", label=f"{name} (dev)")
    ax2 = _plot_kappa(ax, runs)
    ax.set_xlabel("labelled share of the training pool (%)")
    names = {headline(r[s])[0] for rows in runs.values() for r in rows for s in (split, "dev") if r.get(s)}
    ax.set_ylabel("UA (balanced accuracy)" if names == {"UA"} else "CCC (mean over dimensions)"
                  if names == {"CCC"} else " / ".join(sorted(names)))
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if ax2 is not None:  # one legend, drawn on the top axis so the kappa line cannot hide it
        more = ax2.get_legend_handles_labels()
        ax2.legend(handles + more[0], labels + more[1], fontsize=7, loc="lower right")
    else:
        ax.legend(handles, labels, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def _plot_kappa(ax, runs: dict[str, list[dict]]):
    """The stabilizing-predictions signal of the first run that has one, on its own right-hand axis (returned;
    None when no run has a kappa)."""
    for name, rows in runs.items():
        kappa = [(r["fraction"], r["stopping"]["kappa"]) for r in rows
                 if (r.get("stopping") or {}).get("kappa") is not None]
        if not kappa:
            continue
        kx, ky = zip(*kappa)
        ax2 = ax.twinx()
        ax2.plot([100 * x for x in kx], ky, marker="^", linestyle="--", color="gray", alpha=0.8,
                 label=f"{name}: kappa vs previous round (stop set)")
        ax2.set_ylabel("Cohen's kappa between rounds", fontsize=8)
        ax2.set_ylim(min(0.0, min(ky)), 1.02)
        return ax2
    return None


def table(runs: dict[str, list[dict]], split: str = "test") -> pd.DataFrame:
    """One row per (run, round): labelled share, dev/test UA and WA and/or mean CCC, seconds (a metric no run
    has, e.g. CCC of class-only runs, is left out)."""
    rows = []
    for name, rs in runs.items():
        for r in rs:
            rows.append({"run": name, "round": r["round"], "labelled": r["labelled"],
                         "fraction": round(r["fraction"], 4),
                         "dev_ua": (r.get("dev") or {}).get("ua"), "test_ua": (r.get("test") or {}).get("ua"),
                         "test_wa": (r.get("test") or {}).get("wa"),
                         "dev_ccc": (r.get("dev") or {}).get("ccc"), "test_ccc": (r.get("test") or {}).get("ccc"),
                         "kappa": (r.get("stopping") or {}).get("kappa"),
                         "pseudo_labels": (r.get("pseudo_labels") or {}).get("clips"),
                         "seconds": round(sum((r.get("seconds") or {}).values()), 1)})
    return pd.DataFrame(rows).dropna(axis=1, how="all")

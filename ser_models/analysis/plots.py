"""PNGs of the layer analysis: metric per layer, learned layer weights, layer-similarity heatmaps."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ser_models.io import save_figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metric_vs_layer(rows: pd.DataFrame, path, split: str = "test", title: str = "") -> None:
    """One line per task: the mean over seeds of the probe metric (UA or CCC) per layer, min-max band.

    Args:
        rows: probe rows (``task, layer, seed, metric, <split>``); weighted-sum rows (layer -1) are drawn as a
            dashed level line of the same colour.
        path: PNG path or URI.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (task, df) in enumerate(rows.groupby("task", sort=False)):
        colour = f"C{i}"
        layers = df[df["layer"] >= 0].groupby("layer")[split].agg(["mean", "min", "max"])
        metric = df["metric"].iloc[0].upper()
        ax.plot(layers.index, layers["mean"], "o-", color=colour, label=f"{task} ({metric})")
        ax.fill_between(layers.index, layers["min"], layers["max"], color=colour, alpha=0.2)
        weighted = df[df["layer"] < 0][split]
        if len(weighted):
            ax.axhline(weighted.mean(), color=colour, ls="--", lw=1)
    ax.set_xticks(sorted(x for x in rows["layer"].unique() if x >= 0))
    ax.set_xlabel("encoder layer (0 = input embedding)")
    ax.set_ylabel(f"{split} UA (categorical) / CCC (dimensions)")
    ax.set_title(title or f"probe per layer ({split}; band = seed range, dashed = learned weighted sum)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_layer_weights(weights: pd.DataFrame, path, title: str = "") -> None:
    """Grouped bars: the learned softmax layer weights per task (mean over seeds, error bar = std).

    Args:
        weights: rows ``task, seed, layer, weight``.
    """
    plt = _pyplot()
    tasks = list(dict.fromkeys(weights["task"]))
    layers = sorted(weights["layer"].unique())
    width = 0.8 / max(len(tasks), 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, task in enumerate(tasks):
        stats = weights[weights["task"] == task].groupby("layer")["weight"].agg(["mean", "std"]).reindex(layers)
        ax.bar(np.arange(len(layers)) + (i - (len(tasks) - 1) / 2) * width, stats["mean"], width,
               yerr=stats["std"].fillna(0), label=task, color=f"C{i}", capsize=2)
    ax.axhline(1 / len(layers), color="grey", ls=":", lw=1, label="uniform")
    ax.set_xticks(range(len(layers)), [str(x) for x in layers])
    ax.set_xlabel("encoder layer")
    ax.set_ylabel("softmax weight")
    ax.set_title(title or "learned layer weights of a weighted-sum head, per task")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_similarity(cka: np.ndarray, path, name_a: str, name_b: str, anchors: dict | None = None) -> None:
    """Heatmap of linear CKA between each layer of group A (rows) and of group B (columns)."""
    plt = _pyplot()
    cka = np.asarray(cka)
    fig, ax = plt.subplots(figsize=(0.55 * cka.shape[1] + 2.5, 0.55 * cka.shape[0] + 1.8))
    top = float(np.nanmax(cka)) if np.isfinite(cka).any() and np.nanmax(cka) > 0 else 1.0
    im = ax.imshow(cka, cmap="viridis", vmin=0, vmax=top)  # 0..max: cross-group CKA is often far below 1
    for i in range(cka.shape[0]):
        for j in range(cka.shape[1]):
            ax.text(j, i, f"{cka[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if cka[i, j] > 0.6 * top else "white")
    ax.set_xlabel(f"layer ({name_b})")
    ax.set_ylabel(f"layer ({name_a})")
    sub = ""
    if anchors:
        sub = "\n" + ", ".join(f"{k}: {v}" for k, v in anchors.items())
    ax.set_title(f"linear CKA, {name_a} vs {name_b}{sub}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)

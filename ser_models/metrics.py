"""Metrics used everywhere: classification (WA, UA, macro-F1, confusion), regression (CCC, Pearson r,
RMSE per dimension) and their plots.

WA (weighted accuracy) is plain accuracy; UA (unweighted accuracy) is the mean per-class recall over the
classes present in ``y_true`` -- the SER literature's headline metric because corpora are imbalanced. For
arousal / valence / dominance the headline is the concordance correlation coefficient (CCC).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from ser_models.io import save_figure


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> dict:
    """WA, UA, macro-F1 and the confusion matrix.

    Args:
        y_true: [N] true class indices.
        y_pred: [N] predicted class indices.
        num_classes: C; the confusion matrix is [C, C] even when a class is absent.

    Returns:
        ``{"wa", "ua", "macro_f1", "confusion" ([C][C] list of ints), "n"}``. Empty input gives NaNs.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    labels = list(range(num_classes))
    if y_true.size == 0:
        return {"wa": float("nan"), "ua": float("nan"), "macro_f1": float("nan"),
                "confusion": np.zeros((num_classes, num_classes), int).tolist(), "n": 0}
    present = sorted(set(y_true.tolist()))
    return {
        "wa": float(accuracy_score(y_true, y_pred)),
        # Only classes with support count: a recall over zero clips is undefined, not zero.
        "ua": float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "n": int(y_true.size),
    }


def balanced_nll(y_true: Sequence[int], probs: np.ndarray, eps: float = 1e-7) -> float:
    """Class-balanced negative log-likelihood (nats): the mean over the classes present in ``y_true`` of
    their clips' mean ``-log p(true class)``.

    A smooth companion of UA for early stopping (``scheduler.metric``): UA on a small dev set moves in steps
    of one clip's recall, while the likelihood of every clip moves with the weights. Balanced over classes
    like UA, so a majority class does not dominate it.

    Args:
        y_true: [N] true class indices.
        probs: [N, C] predicted class probabilities.
        eps: floor on a probability before the log (a confident miss costs at most ``-log eps``).

    Returns:
        The balanced NLL; NaN for empty input.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    if y_true.size == 0:
        return float("nan")
    nll = -np.log(np.clip(np.asarray(probs, dtype=np.float64)[np.arange(y_true.size), y_true], eps, 1.0))
    return float(np.mean([nll[y_true == c].mean() for c in np.unique(y_true)]))


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str]) -> dict:
    """CCC, Pearson r and RMSE per dimension, and the mean CCC over dimensions.

    Args:
        y_true: [N, K] true values, NaN where unknown (those rows are left out of that dimension only).
        y_pred: [N, K] predictions.
        names: K dimension names (``arousal``...).

    Returns:
        ``{"ccc_<name>", "pearson_<name>", "rmse_<name>"}`` per dimension plus ``"ccc"`` (their mean). A
        dimension with fewer than 2 known values gives NaNs; a constant one gives r = NaN and CCC = 0 (or 1
        when the predictions equal it exactly).
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1, len(names))
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1, len(names))
    out: dict = {}
    cccs = []
    for k, name in enumerate(names):
        keep = np.isfinite(y_true[:, k])
        t, p = y_true[keep, k], y_pred[keep, k]
        if len(t) < 2:
            out.update({f"ccc_{name}": float("nan"), f"pearson_{name}": float("nan"), f"rmse_{name}": float("nan")})
            cccs.append(float("nan"))
            continue
        mt, mp = t.mean(), p.mean()
        vt, vp, cov = t.var(), p.var(), ((t - mt) * (p - mp)).mean()
        denom = vt + vp + (mt - mp) ** 2
        ccc = 2 * cov / denom if denom > 0 else 1.0
        pearson = cov / np.sqrt(vt * vp) if vt > 0 and vp > 0 else float("nan")
        out.update({f"ccc_{name}": float(ccc), f"pearson_{name}": float(pearson),
                    f"rmse_{name}": float(np.sqrt(((t - p) ** 2).mean()))})
        cccs.append(float(ccc))
    finite = [c for c in cccs if np.isfinite(c)]
    out["ccc"] = float(np.mean(finite)) if finite else float("nan")
    return out


def metrics_table(by_split: dict[str, dict | None]) -> str:
    """A plain-text table of :func:`~ser_models.training.fitting.evaluate` results, one row per split.

    Columns are WA / UA / F1 when the results have classes, CCC (mean and per dimension) when they have
    dimensions, then n.
    """
    rows = {k: v for k, v in by_split.items() if v}
    if not rows:
        return "(no evaluated split)"
    first = next(iter(rows.values()))
    cols = [c for c in ("wa", "ua", "macro_f1") if c in first]
    cols += (["ccc"] + [k for k in first if k.startswith("ccc_")]) if "ccc" in first else []
    names = {"wa": "WA", "ua": "UA", "macro_f1": "F1", "ccc": "CCC"}
    heads = [names.get(c, c.replace("ccc_", "CCC ")) for c in cols]
    widths = [max(6, len(h)) for h in heads]
    first_w = max(6, *(len(str(k)) for k in rows))
    lines = [f"{'split':<{first_w}} " + " ".join(f"{h:>{w}}" for h, w in zip(heads, widths)) + f" {'n':>6}"]
    for split, m in rows.items():
        lines.append(f"{split:<{first_w}} " + " ".join(f"{m.get(c, float('nan')):{w}.3f}" for c, w in zip(cols, widths))
                     + f" {m.get('n', 0):6d}")
    return "\n".join(lines)


def plot_confusion(confusion: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path,
                   title: str = "") -> None:
    """Save a row-normalised confusion matrix (counts written in the cells) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.2 * len(labels) + 1.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)

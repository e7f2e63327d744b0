"""Classification metrics used everywhere (WA, UA, macro-F1, confusion) and their plots.

WA (weighted accuracy) is plain accuracy; UA (unweighted accuracy) is the mean per-class recall over the
classes present in ``y_true`` -- the SER literature's headline metric because corpora are imbalanced.
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

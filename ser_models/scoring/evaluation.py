"""Evaluating any checkpoint on any pool's split, and the cross-corpus matrix (train corpus x test corpus).

The clips are scored by the same Ray Data actor pool as active-learning scoring (:func:`score_dataset`,
which reads only the audio columns), and the truth is joined on the driver afterwards from the pool's
metadata: the driver holds [N, C + K] predictions and the labels, never the audio.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ser_models.exceptions import PoolError
from ser_models.io import save_figure

__all__ = ["evaluate_checkpoint", "headline_metric", "plot_matrix"]


def evaluate_checkpoint(checkpoint: str, pool_dir: str, split: str = "test", scorer_cfg=None,
                        in_process: bool = False, verbose: bool = False, where: dict[str, str] | None = None) -> dict:
    """Metrics of a model checkpoint on one split of a prepared pool.

    Args:
        checkpoint: a model checkpoint folder (``model.json`` + ``model.safetensors``), local or URI.
        pool_dir: a prepared pool (local or URI).
        split: the split to evaluate.
        scorer_cfg: a :class:`~ser_models.scoring.scorer.ScorerConfig` (actors, CPUs, GPUs, batch sizes).
        in_process: score in this process instead of on Ray Data actors.
        verbose: print the scoring speed.
        where: evaluate only the split's clips whose columns equal these values (``{"language": "xx"}``).

    Returns:
        What :func:`~ser_models.training.fitting.evaluate` returns for the model's outputs (UA / WA / F1 /
        confusion with classes, CCC / Pearson / RMSE per dimension with dimensions) and ``n``.

    Raises:
        PoolError: the split is missing, or holds labels outside the model's, or dimension values missing or
            outside its range (named, with an example clip).
    """
    from ser_models.data import Pool
    from ser_models.models.model import EmotionModel
    from ser_models.scoring.scorer import ScorerConfig, score_dataset
    from ser_models.training.fitting import evaluation_metrics

    model_cfg = EmotionModel.load_checkpoint(checkpoint).cfg  # also checks the checkpoint before any scoring
    pool = Pool.open(pool_dir)
    pool.check_targets(model_cfg.targets, (split,), key=f"the labels of checkpoint {checkpoint}")
    truth = pool.metadata(columns=["utt_id", "label", *model_cfg.dimensions], split=split, where=where)
    if truth.empty:
        raise PoolError(f"pool {pool_dir}, split {split!r} has no clips" + (f" where {where}" if where else ""))
    if model_cfg.labels and truth["label"].isna().any():
        missing = truth.loc[truth["label"].isna(), "utt_id"]
        raise PoolError(f"pool {pool_dir}, split {split!r}: {len(missing)} clips have no label (e.g. "
                        f"{missing.iloc[0]!r}); the checkpoint predicts classes")
    scores = score_dataset(pool.dataset(split, where=where), checkpoint, scorer_cfg or ScorerConfig(), verbose=verbose,
                           in_process=in_process, keep_embedding=False, inputs=model_cfg.inputs())
    truth = truth.set_index(truth["utt_id"].astype(str)).loc[scores.ids.astype(str)]
    index = {name: i for i, name in enumerate(model_cfg.labels)}
    labels = truth["label"].map(index).fillna(-1).to_numpy(np.int64) if model_cfg.labels else np.zeros(0)
    targets = truth[model_cfg.dimensions].to_numpy(np.float32)
    dims = scores.dims if scores.dims is not None else np.zeros((len(truth), 0), np.float32)
    return evaluation_metrics(model_cfg, labels, scores.probs, targets, dims)


def headline_metric(metrics: dict) -> str:
    """``ua`` for a model with classes, else ``ccc`` (the matrix's default cell value)."""
    return "ua" if "ua" in metrics else "ccc"


def plot_matrix(matrix: pd.DataFrame, path: str, title: str) -> None:
    """Save a train-corpus x test-corpus heatmap with the values written in the cells.

    Args:
        matrix: rows = models (what they were trained on), columns = test corpora; float values.
        path: PNG path (local or URI).
        title: figure title (name the metric and the split).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = matrix.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 * matrix.shape[1] + 3.2, 0.8 * matrix.shape[0] + 2.0))
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    ax.imshow(values, cmap="viridis", vmin=low, vmax=high if high > low else low + 1e-6, aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns], rotation=20, ha="right")
    ax.set_yticks(range(matrix.shape[0]), [str(r) for r in matrix.index])
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained on")
    mid = (low + high) / 2
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center",
                    color="black" if values[i, j] > mid else "white")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)

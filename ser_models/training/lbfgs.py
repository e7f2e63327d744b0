"""Full-batch L-BFGS for a head over cached frozen features: the platform's small-label solver.

With a few dozen to a few thousand labelled clips and a frozen encoder, the whole labelled set fits in one
batch, and an L2-regularised softmax head solved to convergence is the best simple learner: a standardised
logistic-regression probe (scikit-learn's ``LogisticRegression``) is exactly that. Minibatch AdamW with
early stopping on a small dev split reaches a noisier point that depends on the dev split's luck; this
solver needs no dev split, no epochs and no learning rate, and the regularisation grows as the labelled
set shrinks (the penalty is ``||W||^2 / (2 C n)``, scikit-learn's objective divided by ``n``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ser_models.exceptions import TrainingError
from ser_models.training.batching import ClipSet, make_batch
from ser_models.training.config import TrainConfig
from ser_models.training.distributed import is_distributed


def l2_penalty(model: nn.Module) -> torch.Tensor:
    """``sum ||W||^2`` over the head's weight matrices (biases, layer weights and norms are not penalised)."""
    head = model.head
    terms = [p.pow(2).sum() for n, p in head.named_parameters() if p.requires_grad and n.endswith("weight")
             and p.dim() == 2]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def fit_lbfgs(model: nn.Module, train: ClipSet, cfg: TrainConfig, device: torch.device,
              loss_fn: Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor],
              log: Callable[[str], None] = print) -> dict:
    """Minimise ``mean loss + ||W||^2 / (2 C n)`` over the labelled set in one batch with L-BFGS.

    Args:
        model: an ``EmotionModel`` whose trainable part is the featurizer and head (frozen encoder).
        train: the labelled clips as cached features ``[N, L, D]``.
        cfg: ``train.l2_c`` (C, or ``auto``: :func:`choose_l2_c`), ``train.lbfgs_max_iter``; ``train.seed``
            seeds the head's start and the CV folds.
        device: where to solve.
        loss_fn: ``(logits, dims, batch) -> scalar`` training loss (class-weighted cross-entropy + dimensions).
        log: a progress line.

    Returns:
        ``{"train_loss", "train_objective", "iterations", "train_clips", "train_seconds", "l2_c"}`` and, with
        ``l2_c=auto``, ``"l2_c_cv"`` (metric, folds, one score per grid value).

    Raises:
        TrainingError: audio clips, several workers, or trainable encoder weights (each named with the fix).
    """
    if not train.is_features:
        raise TrainingError("train.solver=lbfgs trains a head over cached frozen features: set "
                            "model.adapter.kind=frozen, model.pooling=mean and active.feature_cache=on (or auto), "
                            "or use train.solver=adamw")
    if is_distributed():
        raise TrainingError("train.solver=lbfgs solves the whole labelled set in one process: set "
                            "scaling.num_workers=1 (or scaling.backend=in_process)")
    encoder_params = [n for n, p in model.named_parameters() if p.requires_grad and n.startswith("encoder.")]
    if encoder_params:
        raise TrainingError(f"train.solver=lbfgs cannot train encoder weights ({encoder_params[0]}, ...): use "
                            "model.adapter.kind=frozen or train.solver=adamw")
    t0 = time.perf_counter()
    params = [p for p in model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    # Deterministic objective: dropout off while solving (MC-dropout scoring switches it on again).
    model.eval()
    c, cv = cfg.l2_c, None
    if c == "auto":
        c, cv = choose_l2_c(model, params, start, train, cfg, device, loss_fn)
        log(f"  lbfgs  l2_c=auto: C={c:g} by {cv['folds']}-fold CV on {len(train)} labelled clips ("
            + ", ".join(f"{k:g}: {v:.3f}" for k, v in zip(cv["grid"], cv["scores"])) + f" {cv['metric']})")
        _restore(params, start)
    batch = make_batch(train, np.arange(len(train)), None, None).to(device)
    objective, calls = _solve(model, params, batch, float(c), cfg, loss_fn)
    if not np.isfinite(objective):
        raise TrainingError(f"train.solver=lbfgs diverged (objective {objective}) on {len(train)} clips: check "
                            "the features (model.feature_norm=pool standardises them) or lower train.l2_c")
    strength = 1.0 / (2.0 * float(c) * len(train))
    with torch.no_grad():
        out = model.forward_features(batch.features, batch.lengths, batch.transcripts)
        loss = float(loss_fn(out.logits, out.dimensions, batch))
        objective = loss + float(strength * l2_penalty(model))
    seconds = time.perf_counter() - t0
    log(f"  lbfgs  {len(train)} clips  C {float(c):g}  loss {loss:.4f}  objective {objective:.4f}  ({calls} "
        f"evaluations, {seconds:.1f}s)")
    record = {"train_loss": loss, "train_objective": objective, "iterations": calls, "train_clips": len(train),
              "train_seconds": seconds, "l2_c": float(c)}
    if cv is not None:
        record["l2_c_cv"] = cv
    return record


def _restore(params: list[torch.Tensor], values: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, v in zip(params, values):
            p.copy_(v)


def _solve(model: nn.Module, params: list[torch.Tensor], batch, c: float, cfg: TrainConfig,
           loss_fn: Callable) -> tuple[float, int]:
    """Minimise ``mean loss + ||W||^2 / (2 C n)`` on one batch from the parameters' current values.

    Returns:
        (final objective, objective evaluations).
    """
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=cfg.lbfgs_max_iter, history_size=20,
                                  tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")
    strength = 1.0 / (2.0 * c * len(batch.ids))
    calls = [0]

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        out = model.forward_features(batch.features, batch.lengths, batch.transcripts)
        objective = loss_fn(out.logits, out.dimensions, batch) + strength * l2_penalty(model).to(batch.features.device)
        objective.backward()
        calls[0] += 1
        return objective

    return float(optimizer.step(closure).detach()), calls[0]


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """[N] fold id in ``[0, k)`` per clip: each class's clips dealt round-robin over the folds after a seeded
    shuffle (unlabelled clips, label -1, are dealt as one more group)."""
    rng = np.random.default_rng([int(seed), 104729])
    folds = np.empty(len(labels), np.int64)
    for c in np.unique(labels):
        pos = np.flatnonzero(labels == c)
        folds[rng.permutation(pos)] = np.arange(len(pos)) % k
    return folds


def choose_l2_c(model: nn.Module, params: list[torch.Tensor], start: list[torch.Tensor], train: ClipSet,
                cfg: TrainConfig, device: torch.device, loss_fn: Callable) -> tuple[float, dict]:
    """``train.l2_c=auto``: the C of ``train.l2_c_grid`` with the best stratified k-fold score on the labelled
    clips alone (UA with classes, else minus the mean squared error of the dimensions); ties go to the smaller C
    (the stronger penalty). Every fold starts from the same initial weights.

    Returns:
        (chosen C, ``{"metric", "folds", "grid": sorted C values, "scores": [one per grid value]}``).
    """
    labels = np.asarray(train.labels)
    has_classes = (labels >= 0).any()
    counts = np.bincount(labels[labels >= 0]) if has_classes else np.array([len(labels)])
    k = int(min(cfg.cv_folds, counts[counts > 0].min()))
    grid = sorted(float(c) for c in cfg.l2_c_grid)
    if k < 2:  # a class with one labelled clip: no fold can hold it out and still train on it
        fallback = 1.0 if 1.0 in grid else grid[len(grid) // 2]
        return fallback, {"metric": "none (a class has < 2 labelled clips)", "folds": 0, "grid": grid,
                          "scores": [float("nan")] * len(grid)}
    folds = stratified_folds(labels, k, cfg.seed)
    # Each fold's batches once, reused for every C.
    splits = [(make_batch(train, np.flatnonzero(folds != f), None, None).to(device), np.flatnonzero(folds == f),
               make_batch(train, np.flatnonzero(folds == f), None, None).to(device)) for f in range(k)]
    scores = []
    for c in grid:
        truth, preds = [], []
        for fit_batch, held, held_batch in splits:
            _restore(params, start)
            _solve(model, params, fit_batch, c, cfg, loss_fn)
            with torch.no_grad():
                out = model.forward_features(held_batch.features, held_batch.lengths, held_batch.transcripts)
            if has_classes:
                truth.append(labels[held])
                preds.append(out.logits.argmax(dim=1).cpu().numpy())
            else:
                truth.append(np.asarray(train.targets[held], np.float64))
                preds.append(out.dimensions.cpu().numpy().astype(np.float64))
        y, p = np.concatenate(truth), np.concatenate(preds)
        if has_classes:
            known = y >= 0
            recalls = [np.mean(p[known & (y == c_)] == c_) for c_ in np.unique(y[known])]
            scores.append(float(np.mean(recalls)))
        else:
            scores.append(-float(np.nanmean((y - p) ** 2)))
    best = int(np.argmax(scores))  # the first maximum: the smallest C among ties
    return grid[best], {"metric": "ua" if has_classes else "-mse", "folds": k, "grid": grid, "scores": scores}

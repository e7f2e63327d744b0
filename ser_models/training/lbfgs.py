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
        cfg: ``train.l2_c`` (C) and ``train.lbfgs_max_iter``; ``train.seed`` seeds the head's start.
        device: where to solve.
        loss_fn: ``(logits, dims, batch) -> scalar`` training loss (class-weighted cross-entropy + dimensions).
        log: a progress line.

    Returns:
        ``{"train_loss", "train_objective", "iterations", "train_clips", "train_seconds"}``.

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
    batch = make_batch(train, np.arange(len(train)), None, None).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=cfg.lbfgs_max_iter, history_size=20,
                                  tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")
    strength = 1.0 / (2.0 * cfg.l2_c * len(train))
    # Deterministic objective: dropout off while solving (MC-dropout scoring switches it on again).
    model.eval()
    calls = [0]

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        out = model.forward_from_pooled(batch.features, batch.transcripts)
        objective = loss_fn(out.logits, out.dimensions, batch) + strength * l2_penalty(model).to(device)
        objective.backward()
        calls[0] += 1
        return objective

    objective = float(optimizer.step(closure).detach())
    if not np.isfinite(objective):
        raise TrainingError(f"train.solver=lbfgs diverged (objective {objective}) on {len(train)} clips: check "
                            "the features (model.feature_norm=pool standardises them) or lower train.l2_c")
    with torch.no_grad():
        out = model.forward_from_pooled(batch.features, batch.transcripts)
        loss = float(loss_fn(out.logits, out.dimensions, batch))
        objective = loss + float(strength * l2_penalty(model))
    seconds = time.perf_counter() - t0
    log(f"  lbfgs  {len(train)} clips  loss {loss:.4f}  objective {objective:.4f}  ({calls[0]} evaluations, "
        f"{seconds:.1f}s)")
    return {"train_loss": loss, "train_objective": objective, "iterations": calls[0], "train_clips": len(train),
            "train_seconds": seconds}

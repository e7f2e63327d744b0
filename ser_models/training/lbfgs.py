"""Full-batch L-BFGS for a head over cached frozen features: the platform's small-label solver.

With a few dozen to a few thousand labelled clips and a frozen encoder, the whole labelled set fits in one
batch, and an L2-regularised softmax head solved to convergence is the best simple learner: a standardised
logistic-regression probe (scikit-learn's ``LogisticRegression``) is exactly that. Minibatch AdamW with
early stopping on a small dev split reaches a noisier point that depends on the dev split's luck; this
solver needs no dev split, no epochs and no learning rate, and the regularisation grows as the labelled
set shrinks (the penalty is ``||W||^2 / (2 C n)``, scikit-learn's objective divided by ``n``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from ser_models.data.clips import ClipSet
from ser_models.exceptions import TrainingError
from ser_models.io import exists, read_json, storage_path, write_json_atomic
from ser_models.training.batching import make_batch
from ser_models.training.config import TrainConfig
from ser_models.training.distributed import is_distributed

#: This process's threadpoolctl controller (:func:`_one_blas_thread`), made at the first solve.
_BLAS = None
#: Cross-validated C choices of this process (:func:`choose_l2_c`), by :func:`_cv_key`, most recent last.
_CV_CHOICES: OrderedDict[str, tuple[float, dict]] = OrderedDict()
#: How many choices :data:`_CV_CHOICES` keeps (each is a few hundred bytes).
CV_CHOICES_KEPT = 256
#: Folders (innermost last) where choices are also kept for other processes (:func:`sharing_cv_choices`).
_CV_FOLDERS: list = []
#: What the log says when a class has fewer than 2 labelled clips: no fold could hold one out and train on it.
_NO_CV = "too few labelled clips per class to cross-validate (a class has fewer than 2)"


def l2_penalty(model: nn.Module) -> torch.Tensor:
    """``sum ||W||^2`` over the head's weight matrices (biases, layer weights and norms are not penalised)."""
    head = model.head
    terms = [p.pow(2).sum() for n, p in head.named_parameters() if p.requires_grad and n.endswith("weight")
             and p.dim() == 2]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def fit_lbfgs(model: nn.Module, train: ClipSet, cfg: TrainConfig, device: torch.device,
              loss_fn: Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor],
              log: Callable[[str], None] = print, class_loss: nn.Module | None = None) -> dict:
    """Minimise ``mean loss + ||W||^2 / (2 C n)`` over the labelled set in one batch with L-BFGS.

    Args:
        model: an ``EmotionModel`` whose trainable part is the featurizer and head (frozen encoder).
        train: the labelled clips as cached features ``[N, L, D]``.
        cfg: ``train.l2_c`` (C, or ``auto``: :func:`choose_l2_c`), ``train.lbfgs_max_iter``; ``train.optim.seed``
            seeds the head's start and the CV folds.
        device: where to solve.
        loss_fn: ``(logits, dims, batch) -> scalar`` training loss (class-weighted cross-entropy + dimensions).
        log: a progress line.
        class_loss: the ``nn.CrossEntropyLoss`` inside ``loss_fn``. With it, a linear softmax head on a fixed
            layer with hard labels (the small-label recipe) is solved by :func:`solve_linear_softmax` (the same
            objective in float64 with its exact gradient, ~10x faster on 2 cores); otherwise by torch's L-BFGS.

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
    c, cv, norm = cfg.l2_c, None, None
    if chooses_features(model):
        norm, c, cv = choose_features(model, params, start, train, cfg, device, loss_fn, class_loss)
        if not cv["folds"] or any(v is None for v in norm["scores"].values()):  # no CV: no scores to show
            log(f"  lbfgs  {norm['what']}=auto: {norm['chosen']} kept, C={c:g}: {_NO_CV} ({len(train)} clips)")
        else:
            log(f"  lbfgs  {norm['what']}=auto: {norm['chosen']} by {cv['folds']}-fold CV on {len(train)} labelled "
                "clips (" + ", ".join(f"{k} {v:.3f}" for k, v in norm["scores"].items())
                + f" {cv['metric']}; {norm['reason']}); C={c:g}")
        _restore(params, start)
    elif c == "auto":
        c, cv = choose_l2_c(model, params, start, train, cfg, device, loss_fn, class_loss)
        log(f"  lbfgs  l2_c=auto: C={c:g} kept: {_NO_CV} ({len(train)} clips)" if not cv["folds"] else
            f"  lbfgs  l2_c=auto: C={c:g} by {cv['folds']}-fold CV on {len(train)} labelled clips ("
            + ", ".join(f"{k:g}: {v:.3f}" for k, v in zip(cv["grid"], cv["scores"])) + f" {cv['metric']})")
        _restore(params, start)
    batch = make_batch(train, np.arange(len(train)), None, None).to(device)
    objective, calls = _solve(model, params, batch, float(c), cfg, loss_fn, class_loss)
    if not np.isfinite(objective):
        raise TrainingError(f"train.solver=lbfgs diverged (objective {objective}) on {len(train)} clips: check "
                            "the features (model.feature_norm=pool standardises them) or lower train.l2_c")
    strength = 1.0 / (2.0 * float(c) * len(train))
    with torch.no_grad():
        out = model.forward_batch(batch)
        loss = float(loss_fn(out.logits, out.dimensions, batch))
        objective = loss + float(strength * l2_penalty(model))
    seconds = time.perf_counter() - t0
    log(f"  lbfgs  {len(train)} clips  C {float(c):g}  loss {loss:.4f}  objective {objective:.4f}  ({calls} "
        f"evaluations, {seconds:.1f}s)")
    record = {"train_loss": loss, "train_objective": objective, "iterations": calls, "train_clips": len(train),
              "train_seconds": seconds, "l2_c": float(c)}
    if cv is not None:
        record["l2_c_cv"] = cv
    if norm is not None:
        record["feature_norm_cv"] = norm
        record.update({k: v for k, v in norm["choice"].items() if v is not None})
    return record


def _restore(params: list[torch.Tensor], values: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, v in zip(params, values):
            p.copy_(v)


def _forward(model: nn.Module, batch) -> Callable[[], object]:
    """The model's output on ``batch`` as a function of the trainable weights alone.

    With per-layer means and a fixed featurizer layer, nothing before the head trains: the head's input is
    computed once here rather than at each of the solver's hundreds of objective evaluations (the same
    numbers; on 2 cores the standardisation alone was a quarter of a round's fit).
    """
    fixed_front = batch.features.dim() == 3 and not any(p.requires_grad for p in model.featurizer.parameters())
    if not fixed_front:
        return lambda: model.forward_batch(batch)
    with torch.no_grad():
        head_input = _head_input_tensor(model, batch)
    return lambda: model.head_from_input(head_input, batch.transcripts)


def _linear_softmax_layer(model: nn.Module, batch, class_loss: nn.Module | None) -> nn.Linear | None:
    """The head's output layer when the objective is exactly weighted softmax cross-entropy of a linear map of
    a fixed input plus the L2 penalty (what :func:`solve_linear_softmax` solves); else None."""
    head = getattr(model, "head", None)
    if not isinstance(class_loss, nn.CrossEntropyLoss) or class_loss.label_smoothing or head is None:
        return None
    if (batch.features is None or batch.features.dim() != 3 or batch.soft is not None or head.proj is not None
            or head.dimensions is not None or head.out is None or not isinstance(head.input_norm, nn.Identity)
            or getattr(model, "text", None) is not None or (batch.labels < 0).any()):
        return None
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    return head.out if trainable == {id(head.out.weight), id(head.out.bias)} else None


def solve_linear_softmax(x: np.ndarray, y: np.ndarray, weight: np.ndarray | None, w0: np.ndarray, b0: np.ndarray,
                         strength: float, max_iter: int) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Minimise ``weighted-mean CE(x W^T + b, y) + strength ||W||^2`` with SciPy's L-BFGS-B and the exact
    gradient: torch's ``nn.CrossEntropyLoss(weight)`` (sum of ``w[y_i] CE_i`` over the sum of ``w[y_i]``).

    Args:
        x: ``[N, D]`` head inputs.
        y: ``[N]`` class indices.
        weight: ``[C]`` class weights, or None (all 1).
        w0, b0: ``[C, D]`` / ``[C]`` start.
        strength: the penalty factor, ``1 / (2 C n)``.
        max_iter: most iterations (torch's ``max_iter``; evaluations may be up to 5/4 of it).

    Returns:
        ``(W [C, D], b [C], objective, evaluations)``; float64.
    """
    from scipy.optimize import minimize

    x = np.asarray(x, np.float64)
    classes, dim = w0.shape
    per_clip = np.ones(len(y)) if weight is None else np.asarray(weight, np.float64)[y]
    scale = per_clip / per_clip.sum()
    onehot = np.zeros((len(y), classes))
    onehot[np.arange(len(y)), y] = 1.0

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:classes * dim].reshape(classes, dim), theta[classes * dim:]
        logits = x @ w.T + b
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        value = -float(np.sum(scale * log_p[np.arange(len(y)), y])) + strength * float(np.sum(w * w))
        g_logits = scale[:, None] * (np.exp(log_p) - onehot)
        grad = np.concatenate([(g_logits.T @ x + 2.0 * strength * w).ravel(), g_logits.sum(axis=0)])
        return value, grad

    theta0 = np.concatenate([np.asarray(w0, np.float64).ravel(), np.asarray(b0, np.float64)])
    # One BLAS thread: these products are too small to split, and two threads made each evaluation 10x slower
    # on 2 cores (8 ms against 0.75 ms for 670 x 384 inputs).
    with _one_blas_thread():
        result = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                          options={"maxiter": max_iter, "maxfun": max_iter * 5 // 4, "gtol": 1e-6, "ftol": 0.0,
                                   "maxcor": 20})
    theta = result.x
    return theta[:classes * dim].reshape(classes, dim), theta[classes * dim:], float(result.fun), int(result.nfev)


def _one_blas_thread():
    """A context that holds the BLAS libraries at one thread (restoring their counts on exit).

    One ``threadpoolctl`` controller per process, made at the first solve: ``threadpool_limits`` scans every
    loaded shared library on each call (2-4 ms on 2 cores, a few hundred ms of a simulated run's hundred solves).
    The controller knows the libraries loaded when it was made; the products here run in numpy's BLAS, loaded
    with numpy, and the solver in SciPy's, loaded with ``scipy.optimize`` before the first solve.
    """
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1)


def _solve(model: nn.Module, params: list[torch.Tensor], batch, c: float, cfg: TrainConfig,
           loss_fn: Callable, class_loss: nn.Module | None = None,
           head_input: np.ndarray | None = None) -> tuple[float, int]:
    """Minimise ``mean loss + ||W||^2 / (2 C n)`` on one batch from the parameters' current values.

    Args:
        head_input: ``[N, D]`` float64 :func:`head_input` of ``batch``, when the caller solves the same batch
            for several C (it is fixed: only the output layer trains on the exact path).

    Returns:
        (final objective, objective evaluations).
    """
    layer = _linear_softmax_layer(model, batch, class_loss)
    if layer is not None:
        x = head_input if head_input is not None else _head_input(model, batch)
        weight = None if class_loss.weight is None else class_loss.weight.double().cpu().numpy()
        w, b, objective, calls = solve_linear_softmax(
            x, batch.labels.cpu().numpy(), weight, layer.weight.detach().double().cpu().numpy(),
            layer.bias.detach().double().cpu().numpy(), 1.0 / (2.0 * c * len(batch.ids)), cfg.lbfgs_max_iter)
        with torch.no_grad():
            layer.weight.copy_(torch.as_tensor(w, dtype=layer.weight.dtype))
            layer.bias.copy_(torch.as_tensor(b, dtype=layer.bias.dtype))
        return objective, calls
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=cfg.lbfgs_max_iter, history_size=20,
                                  tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")
    strength = 1.0 / (2.0 * c * len(batch.ids))
    calls = [0]
    forward = _forward(model, batch)

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        out = forward()
        objective = loss_fn(out.logits, out.dimensions, batch) + strength * l2_penalty(model).to(batch.features.device)
        objective.backward()
        calls[0] += 1
        return objective

    return float(optimizer.step(closure).detach()), calls[0]


def _head_input(model: nn.Module, batch) -> np.ndarray:
    """``[N, D]`` float64: what the output layer of a linear head sees for ``batch`` (standardised, weighted,
    pooled features)."""
    with torch.no_grad():
        return _head_input_tensor(model, batch).double().cpu().numpy()


def _head_input_tensor(model: nn.Module, batch) -> torch.Tensor:
    return model.head_input_from_pooled(batch.features, batch.speakers, batch.functionals)


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """[N] fold id in ``[0, k)`` per clip: each class's clips dealt round-robin over the folds after a seeded
    shuffle (unlabelled clips, label -1, are dealt as one more group)."""
    rng = np.random.default_rng([int(seed), 104729])
    folds = np.empty(len(labels), np.int64)
    for c in np.unique(labels):
        pos = np.flatnonzero(labels == c)
        folds[rng.permutation(pos)] = np.arange(len(pos)) % k
    return folds


def chooses_features(model: nn.Module) -> bool:
    """Whether ``model`` picks its features by CV at each fit (``model.feature_norm=auto`` or
    ``model.functionals=auto``)."""
    cfg = getattr(model, "cfg", None)
    return getattr(cfg, "feature_norm", None) == "auto" or getattr(cfg, "functionals", None) == "auto"


def feature_candidates(model_cfg) -> list[dict]:
    """What an ``auto`` model chooses among, simplest first (ties go to the earlier one): every
    ``model.feature_norm`` of :data:`~ser_models.models.model.AUTO_NORMS` under ``feature_norm=auto`` x every
    ``model.functionals`` of :data:`~ser_models.encoders.functionals.AUTO_FUNCTIONALS` under
    ``functionals=auto``; a fixed setting is None (unchanged)."""
    from ser_models.encoders.functionals import AUTO_FUNCTIONALS
    from ser_models.models.model import AUTO_NORMS

    norms = AUTO_NORMS if model_cfg.feature_norm == "auto" else (None,)
    functionals = AUTO_FUNCTIONALS if model_cfg.functionals == "auto" else (None,)
    return [{"feature_norm": n, "functionals": f} for f in functionals for n in norms]


def candidate_name(choice: dict) -> str:
    """``pool``, ``speaker+egemaps``, ...: a candidate of :func:`feature_candidates` for logs."""
    parts = [choice["feature_norm"]] if choice["feature_norm"] else []
    if choice["functionals"] == "egemaps":
        parts.append("egemaps")
    elif choice["functionals"] == "none" and not parts:
        parts.append("no functionals")
    return "+".join(parts)


def choose_features(model: nn.Module, params: list[torch.Tensor], start: list[torch.Tensor], train: ClipSet,
                    cfg: TrainConfig, device: torch.device, loss_fn: Callable,
                    class_loss: nn.Module | None = None) -> tuple[dict, float, dict]:
    """``model.feature_norm=auto`` and/or ``model.functionals=auto``: the candidate of
    :func:`feature_candidates` (pool or speaker standardisation; with or without the eGeMAPS functionals) with
    the best k-fold score on the labelled clips alone (the folds and grid of :func:`choose_l2_c`; with a fixed
    ``train.l2_c`` the grid is that C). Jointly with C: each candidate's best C competes. Ties, and too few
    clips to cross-validate, go to the simplest (pool, no functionals). The model is left using the choice.

    Returns:
        (``{"what", "chosen", "choice": {"feature_norm", "functionals"}, "scores": {name: best CV score},
        "reason"}``, the chosen candidate's C, its C-grid CV record).
    """
    fixed = cfg if cfg.l2_c == "auto" else dataclasses.replace(cfg, l2_c_grid=[float(cfg.l2_c)])
    candidates = feature_candidates(model.cfg)
    results = []
    for choice in candidates:
        model.use_features(norm=choice["feature_norm"], functionals=choice["functionals"])
        _restore(params, start)
        results.append(choose_l2_c(model, params, start, train, fixed, device, loss_fn, class_loss))
    scores = [float(np.nanmax(cv["scores"])) if np.isfinite(cv["scores"]).any() else None for _, cv in results]
    if any(v is None for v in scores):
        best, reason = 0, "too few labelled clips per class to cross-validate"
    else:
        best, reason = int(np.argmax(scores)), "best CV score"  # the first maximum: the simplest among ties
    choice = candidates[best]
    model.use_features(norm=choice["feature_norm"], functionals=choice["functionals"])
    what = " and ".join(k for k in ("feature_norm", "functionals") if choice[k] is not None)
    c, cv = results[best]
    return {"what": what, "chosen": candidate_name(choice), "choice": choice, "reason": reason,
            "scores": {candidate_name(k): v for k, v in zip(candidates, scores)}}, c, cv


def choose_l2_c(model: nn.Module, params: list[torch.Tensor], start: list[torch.Tensor], train: ClipSet,
                cfg: TrainConfig, device: torch.device, loss_fn: Callable,
                class_loss: nn.Module | None = None) -> tuple[float, dict]:
    """``train.l2_c=auto``: the C of ``train.l2_c_grid`` with the best stratified k-fold score on the labelled
    clips alone (UA with classes, else minus the mean squared error of the dimensions); ties go to the smaller C
    (the stronger penalty). Every fold starts from the same initial weights and walks the grid upwards, warm.

    A choice made by the exact solver is kept in this process (and in the folder of :func:`sharing_cv_choices`)
    by a hash of everything it depends on (:func:`_cv_key`), and returned as it was for the same problem again:
    paired simulations (every strategy of a seed starts from the same labelled clips and the same head) pose the
    same problem in their first round, and ``auto`` keeping ``random`` queries what the random run queries.

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
    folds = stratified_folds(labels, k, cfg.optim.seed)
    # Each fold's batches once, reused for every C.
    splits = [(make_batch(train, np.flatnonzero(folds != f), None, None).to(device), np.flatnonzero(folds == f),
               make_batch(train, np.flatnonzero(folds == f), None, None).to(device)) for f in range(k)]
    key = _cv_key(model, train, cfg, device, class_loss, [fit_batch for fit_batch, _, _ in splits])
    kept = _kept_choice(key)
    if kept is not None:
        return kept
    truth = [labels[held] if has_classes else np.asarray(train.targets[held], np.float64) for _, held, _ in splits]
    preds: list[list[np.ndarray]] = [[] for _ in grid]
    for fit_batch, _, held_batch in splits:
        # The C path from the strongest penalty up, each solve starting where the previous one ended: for a
        # linear head the objective is strictly convex, so the optimum is the same, in far fewer evaluations.
        _restore(params, start)
        exact = _linear_softmax_layer(model, fit_batch, class_loss) is not None
        x = _head_input(model, fit_batch) if exact else None  # once per fold, not once per C
        for i, c in enumerate(grid):
            _solve(model, params, fit_batch, c, cfg, loss_fn, class_loss, head_input=x)
            with torch.no_grad():
                out = model.forward_batch(held_batch)
            preds[i].append(out.logits.argmax(dim=1).cpu().numpy() if has_classes
                            else out.dimensions.cpu().numpy().astype(np.float64))
    scores = []
    y = np.concatenate(truth)
    for fold_preds in preds:
        p = np.concatenate(fold_preds)
        if has_classes:
            known = y >= 0
            recalls = [np.mean(p[known & (y == c_)] == c_) for c_ in np.unique(y[known])]
            scores.append(float(np.mean(recalls)))
        else:
            scores.append(-float(np.nanmean((y - p) ** 2)))
    best = int(np.argmax(scores))  # the first maximum: the smallest C among ties
    cv = {"metric": "ua" if has_classes else "-mse", "folds": k, "grid": grid, "scores": scores}
    if key is not None:
        _keep_choice(key, grid[best], cv, share=True)
    return grid[best], cv


@contextlib.contextmanager
def sharing_cv_choices(folder) -> Iterator[None]:
    """Within the block, :func:`choose_l2_c` also keeps its choices in ``folder`` (one JSON file per problem,
    written atomically) and looks there before solving: the processes of a fanned-out ``jobs.evidence`` then
    share them, as one process shares them in memory. A file holds the record as computed; JSON gives the same
    floats back."""

    _CV_FOLDERS.append(storage_path(folder))
    try:
        yield
    finally:
        _CV_FOLDERS.pop()


def _kept_choice(key: str | None) -> tuple[float, dict] | None:
    """``(C, CV record)`` kept for ``key`` in this process or in the shared folder (a copy); None if none is."""
    if key is None:
        return None
    if key not in _CV_CHOICES and _CV_FOLDERS:

        path = _CV_FOLDERS[-1] / f"{key}.json"
        if exists(path):
            stored = read_json(path)
            cv = {name: stored["cv"][name] for name in ("metric", "folds", "grid", "scores")}  # the computed order
            _keep_choice(key, float(stored["c"]), cv, share=False)
    if key not in _CV_CHOICES:
        return None
    _CV_CHOICES.move_to_end(key)
    c, cv = _CV_CHOICES[key]
    return c, copy.deepcopy(cv)


def _keep_choice(key: str, c: float, cv: dict, share: bool) -> None:
    """Keep a choice in this process and, with ``share`` inside :func:`sharing_cv_choices`, in its folder."""
    _CV_CHOICES[key] = (c, copy.deepcopy(cv))
    while len(_CV_CHOICES) > CV_CHOICES_KEPT:
        _CV_CHOICES.popitem(last=False)
    if share and _CV_FOLDERS:

        write_json_atomic(_CV_FOLDERS[-1] / f"{key}.json", {"c": c, "cv": cv})


def _cv_key(model: nn.Module, train: ClipSet, cfg: TrainConfig, device: torch.device,
            class_loss: nn.Module | None, fit_batches: list) -> str | None:
    """sha256 (hex) of everything :func:`choose_l2_c` reads when every fold is solved exactly
    (:func:`solve_linear_softmax`): the training config, the model's config and encoder fingerprint, every
    weight and buffer outside the encoder (the head's start, the pool statistics), the class weights, the
    labelled clips (ids, features, labels, targets, speakers, functionals), the device and torch's thread count.
    None (nothing is kept) for the torch solver, for a model in training mode (its dropout draws from the
    RNG), and for a model holding speaker statistics: they are kept outside its buffers.
    """
    if class_loss is None or any(_linear_softmax_layer(model, b, class_loss) is None for b in fit_batches):
        return None
    if any(m.training for m in model.modules()):
        return None
    held = [getattr(model, "speaker_norm", None), getattr(getattr(model, "functionals_norm", None), "speaker", None)]
    if any(m is not None and m.fitted for m in held):
        return None
    # The statistics files differ by run folder; their values are in the buffers hashed below.
    settings = {k: v for k, v in dataclasses.asdict(model.cfg).items()
                if k not in ("feature_stats", "functionals_stats")}
    h = hashlib.sha256(json.dumps(
        {"train": dataclasses.asdict(cfg), "model": settings, "encoder": model.encoder.fingerprint(), "device": str(device),
         "torch_threads": torch.get_num_threads(), "loss": [type(class_loss).__name__, class_loss.label_smoothing],
         "ids": list(train.ids), "speakers": train.speakers}, sort_keys=True, default=str).encode())

    def add(name: str, value) -> None:
        if value is None:
            h.update(f"{name}=None;".encode())
            return
        t = torch.as_tensor(value).detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())

    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if not name.startswith("encoder."):
            add(name, t)
    add("class_weight", class_loss.weight)
    for name in ("features", "labels", "targets", "functionals", "soft"):
        add(f"train.{name}", getattr(train, name))
    return h.hexdigest()

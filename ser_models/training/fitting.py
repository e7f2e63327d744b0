"""The fine-tuning algorithm itself, independent of Ray: epochs, evaluation, early stopping, resume state.

:func:`ser_models.training.loop.train_loop_per_worker` feeds it Ray Train shards and reports through
``ray.train.report``; tests and benchmarks can call it in-process with a plain reporter.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ser_models.data.clips import ClipSet
from ser_models.exceptions import TrainingError
from ser_models.failpoints import pausepoint
from ser_models.heads import soft_cross_entropy
from ser_models.heads.dimensional import dimensional_loss
from ser_models.metrics import balanced_nll, classification_metrics, regression_metrics
from ser_models.precision import autocast, configure_device, pin_for
from ser_models.training.anchoring import AnchorFeed, anchoring_loss, target_batch
from ser_models.training.batching import StreamingClips, epoch_batches, make_batch, plan_batches
from ser_models.training.config import FREEZABLE_PARTS, TrainConfig
from ser_models.training.distributed import all_reduce_min, broadcast_flag, rank, seed_epoch, wrap_ddp
from ser_models.training.lbfgs import chooses_features
from ser_models.training.schedule import tri_stage_scheduler

#: Training steps between checks that the loss is finite (and one at the end of every epoch). A check reads a
#: value back from the device, a host sync that stalls a GPU's queue: once a step it cost every step.
FINITE_CHECK_STEPS = 50


class _TrainForward(nn.Module):
    """What DDP wraps: one forward for both input modes, returning ``(logits [B, C], dimensions [B, K],
    anchoring loss or None)``. Target clips go through the same call, so DDP syncs the gradients of both."""

    def __init__(self, model: nn.Module, anchor: AnchorFeed | None = None):
        super().__init__()
        self.model = model
        self.anchor = anchor

    def forward(self, wavs=None, lengths=None, features=None, target_wavs=None, target_lengths=None,
                transcripts=None, speakers=None, functionals=None):
        if features is not None:
            out = self.model.forward_features(features, lengths, transcripts, speakers, functionals=functionals)
            return out.logits, out.dimensions, None
        if target_wavs is None:
            out = self.model(wavs, lengths, transcripts, speakers, functionals=functionals)
            return out.logits, out.dimensions, None

        layers = self.anchor.layers
        out, source = self.model.forward_with_layer_means(wavs, lengths, layers, transcripts, speakers)
        target = self.model.layer_means(target_wavs, target_lengths, layers)
        return out.logits, out.dimensions, anchoring_loss(source, target, self.anchor.groups, layers)


@dataclass
class FitState:
    """Everything needed to resume a fit after the last finished epoch."""

    epoch: int = 0  # epochs finished
    best_ua: float = -math.inf  # best dev score so far: UA, or the metric train.select_metric names
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)
    finished: bool = False
    best_weights: dict | None = None
    optimizer: dict | None = None
    scheduler: dict | None = None
    attempt: int = 0  # how many times this fit was resumed from a checkpoint (history rows carry it)
    resumed_after: list[int] = field(default_factory=list)  # epochs finished at each resume

    def mark_resumed(self) -> str:
        """Record a resume from this (just loaded) state; returns the line to print.

        The epoch after ``self.epoch`` had started in the previous attempt and is redone: history rows from
        here on carry the new ``attempt``, so a reader sees which epochs ran again.
        """
        self.attempt += 1
        self.resumed_after.append(self.epoch)
        return (f"resuming after epoch {self.epoch} (attempt {self.attempt}; best dev score {self.best_ua:.3f} "
                f"at epoch {self.best_epoch})")


def trainable_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached CPU copies of the trainable parameters (adapter + featurizer + pooling + head)."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load trainable weights; every trainable parameter must be present (no silent partial load)."""
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
    unknown = [n for n in weights if n not in params]
    if missing or unknown:
        raise TrainingError(f"weights do not match the model: missing {missing[:5]}, unexpected {unknown[:5]}")
    with torch.no_grad():
        for n, w in weights.items():
            params[n].copy_(w.to(params[n].device))


def class_weight_tensor(counts: list[int] | None, num_classes: int) -> torch.Tensor | None:
    """Inverse-frequency weights, mean 1 over the classes present; absent classes weigh 0."""
    if counts is None:
        return None
    c = np.asarray(counts, dtype=np.float64)  # may be fractional: summed vote shares of soft labels
    w = np.where(c > 0, 1.0 / np.where(c > 0, c, 1.0), 0.0)
    present = w > 0
    if not present.any():
        return None
    w[present] /= w[present].mean()
    return torch.as_tensor(w, dtype=torch.float32)


@torch.no_grad()
def predict_outputs(model: nn.Module, clips: ClipSet, cfg: TrainConfig,
                    device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """``(probs [N, C], dimensions [N, K])`` of every clip (eval mode), in ``clips`` order."""
    model.eval()
    probs = np.zeros((len(clips), len(model.cfg.labels)), np.float32)
    dims = np.zeros((len(clips), len(model.cfg.dimensions)), np.float32)
    max_samples = int(cfg.max_eval_seconds * 16000)
    for index in plan_batches(clips.lengths(), cfg.eval_batch_size, None):
        batch = make_batch(clips, index, max_samples, None, pin_for(device)).to(device)
        with autocast(device, getattr(cfg, "precision", "fp32")):
            out = model.forward_batch(batch)
        probs[index] = torch.softmax(out.logits.float(), dim=-1).cpu().numpy()
        dims[index] = out.dimensions.float().cpu().numpy()
    return probs, dims


def predict(model: nn.Module, clips: ClipSet, cfg: TrainConfig, device: torch.device) -> np.ndarray:
    """[N, C] class probabilities of every clip (eval mode), in ``clips`` order."""
    return predict_outputs(model, clips, cfg, device)[0]


def evaluate(model: nn.Module, clips: ClipSet | StreamingClips, cfg: TrainConfig, device: torch.device) -> dict:
    """Metrics on labelled clips (held, or streamed window by window).

    Returns:
        With classes: ``wa, ua, macro_f1, confusion, n`` and ``nll`` (class-balanced, nats). With
        dimensions: ``ccc_<dim>, pearson_<dim>, rmse_<dim>, ccc`` (mean), and ``n``. With both: also ``ua_plus_ccc``.
    """
    windows = clips.windows() if isinstance(clips, StreamingClips) else [clips]
    labels, probs, targets, dims = [], [], [], []
    for window in windows:
        if len(window):
            p, d = predict_outputs(model, window, cfg, device)
            labels.append(window.labels)
            targets.append(window.targets)
            probs.append(p)
            dims.append(d)
    if not labels:
        return evaluation_metrics(model.cfg, np.zeros(0, np.int64), np.zeros((0, len(model.cfg.labels))),
                                  np.zeros((0, len(model.cfg.dimensions))), np.zeros((0, len(model.cfg.dimensions))))
    return evaluation_metrics(model.cfg, np.concatenate(labels), np.concatenate(probs), np.concatenate(targets),
                              np.concatenate(dims))


def evaluation_metrics(model_cfg, labels: np.ndarray, probs: np.ndarray, targets: np.ndarray,
                       dims: np.ndarray) -> dict:
    """The metrics :func:`evaluate` returns, from true labels [N], probabilities [N, C], true dimensional
    values [N, K] and predicted ones [N, K]."""
    out: dict = {}
    if model_cfg.labels:
        out.update(classification_metrics(labels, probs.argmax(1), len(model_cfg.labels)))
        out["nll"] = balanced_nll(labels, probs)
    if model_cfg.dimensions:
        out.update(regression_metrics(targets, dims, model_cfg.dimensions))
        out["n"] = int(len(targets))
    if model_cfg.labels and model_cfg.dimensions:
        out["ua_plus_ccc"] = out["ua"] + out["ccc"]
    return out


def training_loss(logits: torch.Tensor, dims: torch.Tensor, batch, class_loss: nn.Module | None,
                  cfg: TrainConfig) -> torch.Tensor:
    """Cross-entropy on the classes (when the model has them) + ``train.dimensional_weight`` x the
    dimensional loss (1 - CCC or MSE, when it has dimensions)."""
    loss = logits.new_zeros(())
    if logits.shape[1]:
        if batch.soft is not None:  # several annotators' vote shares

            loss = loss + soft_cross_entropy(logits, batch.soft, getattr(class_loss, "weight", None))
        else:
            loss = loss + class_loss(logits, batch.labels)
    if dims.shape[1]:
        loss = loss + cfg.dimensional_weight * dimensional_loss(dims, batch.targets, cfg.dimensional_loss)
    return loss


def fit(model: nn.Module, train: ClipSet | StreamingClips, dev: ClipSet | None, cfg: TrainConfig, *,
        device: torch.device | None = None, class_counts: list[int] | None = None,
        state: FitState | None = None,
        on_epoch_end: Callable[[FitState, nn.Module, torch.optim.Optimizer, object], None] | None = None,
        log: Callable[[str], None] = print, anchor: AnchorFeed | None = None) -> FitState:
    """Train ``model``'s trainable parameters on ``train``; keep the weights with the best dev score.

    Args:
        model: an ``EmotionModel`` (only parameters with ``requires_grad`` train).
        train: this worker's labelled clips (audio or cached features), held (:class:`ClipSet`) or read
            from its shard every epoch (:class:`StreamingClips`).
        dev: labelled dev clips, evaluated on rank 0 only; None = select the last epoch.
        cfg: training hyperparameters.
        device: where to train (default CPU).
        class_counts: [C] labelled clips per class over ALL workers (for the class-weighted loss); soft labels
            count by their vote shares (fractional counts).
        state: a resumed :class:`FitState`; training continues after ``state.epoch``.
        on_epoch_end: called on every worker after each epoch (checkpoint + report); must be called by all
            workers the same number of times under Ray Train.
        log: progress lines (rank 0 only).
        anchor: layer anchoring (audio mode only): every step also encodes a random batch of these unlabelled
            target clips and adds ``anchor.weight`` x the CORAL loss at the anchor layers. None or weight 0 =
            plain training (the same batches, the same result).

    Returns:
        The final :class:`FitState`; ``model`` holds the best weights.
    """
    device = device or torch.device("cpu")
    model.to(device)
    configure_device(device, cfg.allow_tf32)  # TF32 on CUDA: set by the worker that trains
    standardizer = getattr(model, "standardizer", None)
    if standardizer is not None and not standardizer.fitted:
        raise TrainingError("model.feature_norm=pool but no pool statistics are loaded: set model.feature_stats (the "
                            "AL loop computes them from its feature cache) or model.feature_norm=none")
    speaker_norm = getattr(model, "speaker_norm", None)
    if speaker_norm is not None and not speaker_norm.fitted:
        raise TrainingError("model.feature_norm=speaker but no speaker statistics are loaded: set "
                            "model.speaker_stats (the AL loop computes them from its feature cache) or another "
                            "model.feature_norm")
    if chooses_features(model) and cfg.solver != "lbfgs":
        raise TrainingError("model.feature_norm=auto and model.functionals=auto choose by cross-validating the "
                            "L-BFGS head: set train.solver=lbfgs, or fix them (feature_norm=pool | speaker, "
                            "functionals=none | egemaps)")
    functionals_norm = getattr(model, "functionals_norm", None)
    if functionals_norm is not None and not functionals_norm.pool.fitted:
        raise TrainingError("model.functionals but no pool statistics of the functionals are loaded: set "
                            "model.functionals_stats (the AL loop and jobs.finetune compute them from the cache)")
    state = state or FitState()
    if state.finished:
        if state.best_weights is not None:
            load_trainable_weights(model, state.best_weights)
        last = state.history[-1] if state.history else {}
        if chooses_features(model):  # a resumed finished fit keeps the features it chose
            model.use_features(norm=last.get("feature_norm") if model.cfg.feature_norm == "auto" else None,
                               functionals=last.get("functionals") if model.cfg.functionals == "auto" else None)
        return state
    frozen = tuple(FREEZABLE_PARTS[p] for p in cfg.freeze)
    # A frozen part keeps requires_grad (its weights stay in the checkpoint, which holds the trainable
    # weights) and is only left out of the optimizer.
    learned = [(n, p) for n, p in model.named_parameters() if p.requires_grad and not n.startswith(frozen)]
    params_adapter = [p for n, p in learned if n.startswith("encoder.")]
    params_head = [p for n, p in learned if not n.startswith("encoder.")]
    groups = [g for g in ({"params": params_adapter, "lr": cfg.optim.lr},
                          {"params": params_head, "lr": cfg.lr_head}) if g["params"]]
    if not groups:
        raise TrainingError("the model has no trainable parameters: check model.adapter.kind"
                            + (f" and train.freeze={list(cfg.freeze)}" if cfg.freeze else ""))
    peak_lrs = [g["lr"] for g in groups]  # read now: the optimizer shares these dicts, the schedule rewrites lr
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.optim.weight_decay)
    n_local, _ = epoch_batches(train, cfg.optim.batch_size, cfg.optim.max_crop_seconds, np.random.default_rng(0))
    steps_per_epoch = all_reduce_min(n_local)
    if steps_per_epoch == 0:
        raise TrainingError(f"a worker got no training clips ({len(train)} here): use fewer scaling.num_workers "
                            "or label more clips")
    scheduler = tri_stage_scheduler(optimizer, steps_per_epoch * cfg.optim.epochs, cfg.optim.warmup_ratio,
                                    cfg.optim.hold_ratio)
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        _apply_hyperparameters(optimizer, scheduler, peak_lrs, cfg.optim.weight_decay)
    num_classes = len(model.cfg.labels)
    weights = class_weight_tensor(class_counts, num_classes) if cfg.class_weighted and num_classes else None
    loss_fn = nn.CrossEntropyLoss(weight=None if weights is None else weights.to(device))
    select = cfg.selection_metric(bool(num_classes), bool(model.cfg.dimensions))
    if anchor is not None and anchor.weight == 0:
        anchor = None
    if anchor is not None and (train.is_features if isinstance(train, ClipSet) else train.inputs.is_cached):
        raise TrainingError("layer anchoring needs audio (the anchor layers train through the encoder's adapters); "
                            "it cannot train from the frozen-encoder feature cache")
    if anchor is not None and len(anchor.clips) < 2:
        raise TrainingError(f"layer anchoring got {len(anchor.clips)} target clips; it needs at least 2")
    if cfg.solver == "lbfgs":
        return _fit_full_batch(model, train, dev, cfg, device, state, loss_fn, select, on_epoch_end, log, anchor)
    wrapped = wrap_ddp(_TrainForward(model, anchor), device)
    me = rank()
    for epoch in range(state.epoch, cfg.optim.epochs):
        pausepoint(f"train_epoch_{epoch + 1}")  # node-loss tests remove this worker's node here
        t0 = time.perf_counter()
        rng = seed_epoch(cfg.optim.seed, epoch)
        model.train()
        # Sums stay on the device (float64 where it has it: the same sums as Python floats on a CPU); they are
        # read once, after the epoch.
        total, coral_total = (torch.zeros((), dtype=_sum_dtype(device), device=device) for _ in range(2))
        count = 0
        window = _LossWindow(epoch)
        _, batches = epoch_batches(train, cfg.optim.batch_size, cfg.optim.max_crop_seconds, rng, pin=pin_for(device))
        # Its own generator (the source batches are the same with and without anchoring), one per replica (each
        # aligns with other target clips).
        target_rng = np.random.default_rng([cfg.optim.seed, epoch, 1, me])
        for step in range(steps_per_epoch):
            batch = next(batches, None)
            # Every replica takes the same steps: stop as soon as any shard runs dry (a streamed shard's
            # clips are only counted as they are read).
            if all_reduce_min(batch is not None) == 0:
                break
            batch = batch.to(device)
            target = target_batch(anchor, cfg, target_rng, device) if anchor is not None else None
            with autocast(device, cfg.precision):  # bf16: the forward only; weights and grads stay float32
                logits, dims, coral = wrapped(wavs=batch.wavs, lengths=batch.lengths, features=batch.features,
                                              target_wavs=None if target is None else target.wavs,
                                              target_lengths=None if target is None else target.lengths,
                                              transcripts=batch.transcripts, speakers=batch.speakers,
                                              functionals=batch.functionals)
            loss = training_loss(logits.float(), dims.float(), batch, loss_fn, cfg)
            if coral is not None:
                loss = loss + anchor.weight * coral.float()
                coral_total += coral.detach().to(coral_total.dtype) * len(batch.ids)
            window.add(step, loss, batch.ids)
            if len(window) >= FINITE_CHECK_STEPS:
                window.check()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], cfg.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            total += loss.detach().to(total.dtype) * len(batch.ids)
            count += len(batch.ids)
        window.check()
        # train_clips: what this replica saw (its shard); the loss is its mean over them.
        record = {"epoch": epoch + 1, "attempt": state.attempt, "train_loss": float(total) / max(count, 1),
                  "train_clips": count, "train_seconds": time.perf_counter() - t0}
        if anchor is not None:
            record["train_coral"] = float(coral_total) / max(count, 1)
        stop = False
        if me == 0:
            if dev is not None and len(dev):
                t1 = time.perf_counter()
                m = evaluate(model, dev, cfg, device)
                record.update({f"dev_{k}": v for k, v in m.items() if k != "n"}, eval_seconds=time.perf_counter() - t1)
                score = m[select] if math.isfinite(m[select]) else -math.inf
            else:
                score = float(epoch)  # no dev split: the last epoch wins
            if score > state.best_ua or state.best_epoch < 0:
                state.best_ua, state.best_epoch, state.bad_epochs = score, epoch + 1, 0
                state.best_weights = trainable_weights(model)
            else:
                state.bad_epochs += 1
            stop = cfg.early_stopping_patience > 0 and state.bad_epochs >= cfg.early_stopping_patience
            log("  epoch {epoch:>3}  loss {train_loss:.4f}".format(**record)
                + (f"  coral {record['train_coral']:.2e}" if "train_coral" in record else "")
                + (f"  dev UA {record['dev_ua']:.3f} WA {record['dev_wa']:.3f}" if "dev_ua" in record else "")
                + (f"  dev CCC {record['dev_ccc']:.3f}" if "dev_ccc" in record else "")
                + f"  ({record['train_seconds']:.1f}s)" + ("  early stop" if stop else ""))
        stop = broadcast_flag(stop)
        state.epoch = epoch + 1
        state.history.append(record)
        state.finished = stop or state.epoch >= cfg.optim.epochs
        state.optimizer, state.scheduler = optimizer.state_dict(), scheduler.state_dict()
        if on_epoch_end is not None:
            on_epoch_end(state, model, optimizer, scheduler)
        if stop:
            break
    state.finished = True
    if state.best_weights is not None:
        load_trainable_weights(model, state.best_weights)
    return state


def _sum_dtype(device: torch.device) -> torch.dtype:
    """float64 for on-device running sums, where the device has it (MPS does not)."""
    return torch.float32 if device.type == "mps" else torch.float64


class _LossWindow:
    """The step losses (on the device) and clip ids since the last finiteness check of one epoch.

    :meth:`check` reads them back once for the whole window instead of once a step; a non-finite loss is then
    reported by its exact step and clips, with the window it was found in.
    """

    def __init__(self, epoch: int):
        self.epoch = epoch
        self.steps: list[int] = []
        self.losses: list[torch.Tensor] = []
        self.ids: list[list[str]] = []

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: int, loss: torch.Tensor, ids) -> None:
        self.steps.append(step)
        self.losses.append(loss.detach())
        self.ids.append(list(ids))

    def check(self) -> None:
        """Empty the window.

        Raises:
            TrainingError: a loss in it is NaN or infinite: naming the epoch, the step, the window and up to 8
                clips of that step's batch.
        """
        if not self.steps:
            return
        losses = torch.stack(self.losses)
        bad = ~torch.isfinite(losses)
        if bool(bad.any()):  # the one host sync of the window
            k = int(bad.nonzero()[0, 0])
            shown = ", ".join(map(repr, self.ids[k][:8]))
            raise TrainingError(f"non-finite training loss ({float(losses[k])}) at epoch {self.epoch + 1}, step "
                                f"{self.steps[k] + 1}, batch of clips {shown} (checked over steps "
                                f"{self.steps[0] + 1}-{self.steps[-1] + 1}): lower train.lr_head / "
                                "train.optim.lr, set train.optim.grad_clip, or check those clips' audio")
        self.steps, self.losses, self.ids = [], [], []


def _fit_full_batch(model, train, dev, cfg: TrainConfig, device, state: FitState, loss_fn, select: str,
                    on_epoch_end, log, anchor) -> FitState:
    """``train.solver=lbfgs``: one full-batch solve recorded as a single epoch (dev is only evaluated)."""
    from ser_models.training.lbfgs import fit_lbfgs

    if anchor is not None:
        raise TrainingError("layer anchoring trains through the encoder: use train.solver=adamw")
    if not isinstance(train, ClipSet):
        # A labelled set of cached features is small (L x D floats a clip, 7.7 kB for Whisper-tiny) even when
        # its row count crosses the audio streaming limit: gather the windows into one batch.
        train = concat_clips(list(train.windows()))
    torch.manual_seed(cfg.optim.seed)
    record = {"epoch": 1, **fit_lbfgs(model, train, cfg, device,
                                      lambda logits, dims, batch: training_loss(logits, dims, batch, loss_fn, cfg),
                                      log, class_loss=loss_fn)}
    if dev is not None and len(dev):
        t1 = time.perf_counter()
        m = evaluate(model, dev, cfg, device)
        record.update({f"dev_{k}": v for k, v in m.items() if k != "n"}, eval_seconds=time.perf_counter() - t1)
        state.best_ua = m[select] if math.isfinite(m[select]) else -math.inf
    state.best_epoch, state.epoch, state.finished = 1, 1, True
    state.best_weights = trainable_weights(model)
    state.history.append(record)
    if on_epoch_end is not None:
        on_epoch_end(state, model, None, None)
    return state


def concat_clips(parts: list[ClipSet]) -> ClipSet:
    """One :class:`ClipSet` from several (cached features only; audio sets stay streamed)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return ClipSet()
    if not all(p.is_features for p in parts):
        raise TrainingError("only cached-feature clip sets can be gathered into one batch")
    texts = None if parts[0].transcripts is None else [t for p in parts for t in p.transcripts]
    speakers = None if any(p.speakers is None for p in parts) else [s for p in parts for s in p.speakers]
    functionals = None if any(p.functionals is None for p in parts) else np.concatenate([p.functionals for p in parts])
    frames = parts[0].frames is not None
    return ClipSet(ids=[i for p in parts for i in p.ids], labels=np.concatenate([p.labels for p in parts]),
                   features=None if frames else np.concatenate([p.features for p in parts]),
                   frames=[f for p in parts for f in p.frames] if frames else None,
                   targets=np.concatenate([p.targets for p in parts]), transcripts=texts, soft=_concat_soft(parts),
                   speakers=speakers, functionals=functionals)


def _concat_soft(parts: list[ClipSet]) -> np.ndarray | None:
    """The parts' soft labels in one [N, C] array (one-hot rows for parts without any), or None."""
    if all(p.soft is None for p in parts):
        return None
    width = next(p.soft.shape[1] for p in parts if p.soft is not None)
    eye = np.eye(width, dtype=np.float32)
    return np.concatenate([p.soft if p.soft is not None else eye[p.labels] for p in parts])


def _apply_hyperparameters(optimizer: torch.optim.Optimizer, scheduler, base_lrs: list[float],
                           weight_decay: float) -> None:
    """Make ``cfg``'s learning rates and weight decay win over a restored optimizer and schedule.

    Restoring state brings back the peak learning rates and weight decay the state was saved with. A plain
    resume has the same values; a fit that takes over another fit's state with other rates (a Population Based
    Training sweep trial, ``ser_models.tune.targets.adopt_checkpoint``) must go on with its own. The schedule's
    position (step count) and Adam's moments are kept.
    """
    scheduler.base_lrs = list(base_lrs)
    for group, base, lr_lambda in zip(optimizer.param_groups, base_lrs, scheduler.lr_lambdas):
        group["initial_lr"] = base
        group["weight_decay"] = weight_decay
        group["lr"] = base * lr_lambda(scheduler.last_epoch)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``{"trainable_params", "total_params"}`` of a model (what a sweep trades against its metric)."""
    params = list(model.parameters())
    return {"trainable_params": int(sum(p.numel() for p in params if p.requires_grad)),
            "total_params": int(sum(p.numel() for p in params))}


def epoch_row(state: FitState, counts: dict[str, int] | None = None) -> dict:
    """The metrics row reported after an epoch: the last history record (no confusion matrix) + counts."""
    row = {k: v for k, v in (state.history[-1] if state.history else {}).items() if not k.endswith("_confusion")}
    return {**row, **(counts or {})}


def final_row(result: dict) -> dict:
    """The last row a fit reports, from its result dict (``history``, ``best_*``, ``dev``, ``test``, counts).

    It repeats the last epoch's metrics, so a scheduler that reads ``dev_ua`` from every row finds it, and
    adds ``final=1``, the best dev UA and epoch, the test UA/WA/F1 and the parameter counts.
    """
    last = {k: v for k, v in (result.get("history") or [{}])[-1].items() if not k.endswith("_confusion")}
    row = {**last, "final": 1, "best_dev_ua": result.get("best_dev_ua"), "best_epoch": result.get("best_epoch")}
    for key in ("trainable_params", "total_params"):
        if key in result:
            row[key] = result[key]
    test = result.get("test") or {}
    row.update({f"test_{k}": v for k, v in test.items() if k not in ("confusion", "n")})
    return row

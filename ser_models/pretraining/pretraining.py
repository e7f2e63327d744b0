"""Self-supervised pre-training of an encoder, whatever the objective: one step, the epoch loop with resume,
and the Ray Train worker. TAPT (:mod:`ser_models.pretraining.tapt_objectives`) and layer-wise distillation
(:mod:`ser_models.pretraining.distill`) both plug in through the objective protocol:

- ``objective.encoder``: the :class:`~ser_models.encoders.Encoder` being trained (its ``hf_model`` is saved);
- ``objective.name``; ``objective.min_samples`` (shortest usable clip, 16 kHz samples);
- ``objective.set_step(step)`` (annealing hook); ``objective.prepare(inputs, lengths, rng) -> dict`` (masks,
  negatives, targets; no gradient) where ``inputs`` is the batch's audio ``[B, T]`` or, for objectives over
  cached frames, its ``features [B, F, L, D]``; ``objective(**inputs) -> {"loss", ...detached stats}``;
- optional: ``config_key`` (named in messages, default ``tapt``), ``log_keys`` (stats printed per epoch),
  ``start_epoch(epoch, clips) -> dict`` (e.g. refit targets; merged into the epoch's record),
  ``after_step(step, total_steps)`` (e.g. an EMA teacher's update), ``end_epoch(record)`` (e.g. a collapse
  guard that raises).

The driver passes the builder to the worker as ``config["build"]`` (``config -> (objective, settings)``;
settings with ``epochs, batch_size, lr, weight_decay, warmup_ratio, hold_ratio, grad_clip, max_crop_seconds,
seed``), so this module imports neither objective and neither imports the other.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ser_models.data.clips import ClipSet, collect_clips
from ser_models.exceptions import TrainingError
from ser_models.io import save_figure
from ser_models.training.batching import StreamingClips, epoch_batches
from ser_models.training.config import OptimConfig
from ser_models.training.distributed import all_reduce_min, rank, seed_epoch, wrap_ddp
from ser_models.training.schedule import tri_stage_scheduler
from ser_models.training.state_io import load_state, save_state

WEIGHTS_FILE = "encoder.safetensors"
STATE_FILE = "tapt_state.pt"
RESULT_FILE = "result.json"




def train_step(objective: nn.Module, optimizer: torch.optim.Optimizer, wavs: torch.Tensor,
               lengths: torch.Tensor, rng: np.random.Generator, *, grad_clip: float = 0.0,
               forward: nn.Module | None = None) -> dict[str, float]:
    """One optimisation step on a padded batch; returns the step's loss and stats as floats.

    Args:
        wavs: ``[B, T]`` audio, or ``[B, F, L, D]`` cached frames for objectives over the frame cache.
        forward: the module to call (a DDP wrapper of ``objective``); default ``objective``.
    """
    objective.train()
    inputs = objective.prepare(wavs, lengths, rng)
    out = (forward or objective)(**inputs)
    optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for p in objective.parameters() if p.requires_grad], grad_clip)
    optimizer.step()
    return {k: float(v.detach()) for k, v in out.items()}


@torch.no_grad()
def probe_loss(objective: nn.Module, wavs: torch.Tensor, lengths: torch.Tensor, seed: int = 0) -> float:
    """The loss on a fixed batch with fixed masks/negatives (eval mode, no dropout): comparable over time."""
    was_training = objective.training
    objective.eval()
    try:
        return float(objective(**objective.prepare(wavs, lengths, np.random.default_rng(seed)))["loss"])
    finally:
        objective.train(was_training)


@dataclass
class TaptState:
    """Progress of a TAPT run, enough to resume after the last finished epoch (weights are stored beside)."""

    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)


def drop_short_clips(clips: ClipSet, min_samples: int) -> tuple[ClipSet, int]:
    """``clips`` without those shorter than ``min_samples``; returns ``(kept, number dropped)``."""
    keep = [i for i, n in enumerate(clips.lengths()) if n >= min_samples]
    if len(keep) == len(clips):
        return clips, 0
    assert clips.audio is not None
    kept = clips.subset(keep)
    return kept, len(clips) - len(keep)


def pretrain(objective: nn.Module, clips: ClipSet | StreamingClips, cfg: OptimConfig, *,
             device: torch.device | None = None,
             resume: dict | None = None, on_epoch_end=None, log=print) -> TaptState:
    """Run pre-training epochs over this worker's clips (AdamW, tri-stage schedule, random crops).

    Args:
        objective: follows the protocol above; its trainable parameters are optimised.
        clips: audio clips (labels unused), at least ``objective.min_samples`` long, or cached frames: held, or
            streamed from the worker's shard every epoch (:class:`StreamingClips`, which drops short clips).
        cfg: the optimiser (the ``optim`` node of ``tapt``, ``tapt.adapter`` or ``distill``).
        device: where to train (default CPU).
        resume: ``{"state": TaptState, "model", "optimizer", "scheduler"}`` as saved by a checkpoint.
        on_epoch_end: ``f(state, objective, optimizer, scheduler)`` after every epoch on every worker
            (checkpoint + report); all workers call it equally often.
        log: progress lines (rank 0).

    Returns:
        The final :class:`TaptState` (``history``: one dict per epoch with ``loss`` and ``seconds``).

    Raises:
        TrainingError: a worker has no clips, or the loss becomes NaN/inf.
    """
    device = device or torch.device("cpu")
    objective.to(device)
    params = [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = all_reduce_min(epoch_batches(clips, cfg.batch_size, cfg.max_crop_seconds,
                                                   np.random.default_rng(0))[0])
    key = getattr(objective, "config_key", "tapt")
    if steps_per_epoch == 0:
        raise TrainingError(f"a worker got no clips long enough for {key} ({len(clips)} here, shortest allowed "
                            f"{getattr(objective, 'min_samples', 1)} samples): use fewer scaling.num_workers")
    total = steps_per_epoch * cfg.epochs
    scheduler = tri_stage_scheduler(optimizer, total, cfg.warmup_ratio, cfg.hold_ratio)
    start_epoch = getattr(objective, "start_epoch", None)
    after_step = getattr(objective, "after_step", None)
    end_epoch = getattr(objective, "end_epoch", None)
    log_keys = getattr(objective, "log_keys", ("contrastive", "diversity", "accuracy", "l1", "cos"))
    state = TaptState()
    if resume is not None:
        state = resume["state"]
        objective.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
    wrapped = wrap_ddp(objective, device)
    me = rank()
    for epoch in range(state.epoch, cfg.epochs):
        t0 = time.perf_counter()
        extra = start_epoch(epoch, clips) if start_epoch is not None else {}
        rng = seed_epoch(cfg.seed, epoch)  # a resumed run draws the same crops, masks and negatives
        sums: dict[str, float] = {}
        steps = 0
        _, batches = epoch_batches(clips, cfg.batch_size, cfg.max_crop_seconds, rng)
        while steps < steps_per_epoch:
            batch = next(batches, None)
            if all_reduce_min(batch is not None) == 0:  # every replica takes the same steps
                break
            objective.set_step(state.step)
            inputs = batch.features if batch.features is not None else batch.wavs
            stats = train_step(objective, optimizer, inputs.to(device), batch.lengths.to(device), rng,
                               grad_clip=cfg.grad_clip, forward=wrapped)
            if not math.isfinite(stats["loss"]):
                raise TrainingError(f"{key} loss is {stats['loss']} at epoch {epoch + 1} step {steps + 1}: lower "
                                    f"{key}.optim.lr")
            scheduler.step()
            if after_step is not None:
                after_step(state.step, total)
            state.step += 1
            steps += 1
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
        record = {"epoch": epoch + 1, **{k: v / max(steps, 1) for k, v in sums.items()},
                  "steps": steps, "lr": scheduler.get_last_lr()[0], **extra, "seconds": time.perf_counter() - t0}
        if me == 0:
            shown = "".join(f"  {k} {record[k]:.3f}" for k in log_keys if k in record)
            log(f"  epoch {epoch + 1:>3}/{cfg.epochs}  loss {record['loss']:.4f}{shown}  ({record['seconds']:.1f}s)")
        if end_epoch is not None:
            end_epoch(record)
        state.epoch = epoch + 1
        state.history.append(record)
        if on_epoch_end is not None:
            on_epoch_end(state, objective, optimizer, scheduler)
    return state




def resume_from_checkpoint(state_file: str, verbose: bool = True) -> dict | None:
    """Inside a Ray Train worker: ``{"state", "model", "optimizer", "scheduler"}`` from the run's last
    checkpoint (``state_file`` in it), or None on a fresh start."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        state, rest = load_state(Path(d) / state_file, TaptState)
    if verbose:
        print(f"resuming after epoch {state.epoch}")
    return {"state": state, **rest}


def save_progress(path: Path, state: TaptState, objective, optimizer, scheduler) -> None:
    """What :func:`resume_from_checkpoint` reads back: progress, weights, optimizer and schedule."""
    save_state(path, state, model=objective.state_dict(), optimizer=optimizer.state_dict(),
               scheduler=scheduler.state_dict())


def tapt_loop_per_worker(config: dict) -> dict:
    """Ray Train worker: TAPT on this worker's shard of ``train``; checkpoints every epoch.

    Args:
        config: ``{"build": config -> (objective, settings), "threads": int, ...}`` plus what the builder reads
            (TAPT: ``encoder``, ``tapt``, ``clusters``; distillation: ``encoder`` = the teacher, ``distill``).

    Returns:
        On rank 0 ``{"history", "objective", "final_loss", "clips", "dropped_short"}``
        (``Result.return_value``); ``{}`` elsewhere.
    """

    import ray.train
    import ray.train.torch

    from ser_models.encoders import save_encoder_weights

    torch.set_num_threads(max(int(config.get("threads", 1)), 1))
    me = ray.train.get_context().get_world_rank()
    device = ray.train.torch.get_device()
    # The driver names the builder (TAPT's or distillation's), so this module imports neither objective.
    objective, cfg = config["build"](config)
    encoder = objective.encoder
    shard = ray.train.get_dataset_shard("train")
    if config.get("stream_rows"):
        # Too large to hold: read the shard anew every epoch, one decoded window at a time.
        clips = StreamingClips(shard, [], int(config["stream_rows"]), require_labels=False,
                               window=int(config.get("stream_window", 256)), min_samples=objective.min_samples)
        dropped = 0  # counted while streaming
    else:
        clips = collect_clips(shard.iter_batches(batch_size=64, batch_format="numpy"), labels=[],
                              require_labels=False).sorted_by_id()
        clips, dropped = drop_short_clips(clips, objective.min_samples)
    if me == 0:
        print(f"{'distillation' if objective.name == 'distill' else f'TAPT ({objective.name})'} on {len(clips)} "
              "clips per worker"
              + (f"; dropped {dropped} shorter than {objective.min_samples / 16000:.2f}s" if dropped else ""))

    resume = resume_from_checkpoint(STATE_FILE, verbose=me == 0)
    save = save_progress

    last: dict = {}

    def on_epoch_end(state: TaptState, obj, opt, sched) -> None:
        metrics = dict(state.history[-1])
        if me != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        last["resume"] = (state, obj, opt, sched)
        with tempfile.TemporaryDirectory() as tmp:
            save(Path(tmp) / STATE_FILE, state, obj, opt, sched)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    state = pretrain(objective, clips, cfg.optim, device=device, resume=resume, on_epoch_end=on_epoch_end,
                     log=print if me == 0 else (lambda _: None))
    if me != 0:
        ray.train.report({"final": 1, "epoch": state.epoch}, checkpoint=None)  # every rank reports equally
        return {}
    if isinstance(clips, StreamingClips):
        dropped = clips.dropped // max(clips.epochs_read, 1)  # per epoch (each epoch reads the shard again)
    result = {"history": state.history, "objective": objective.name, "clips": len(clips), "dropped_short": dropped,
              "final_loss": state.history[-1]["loss"] if state.history else None}
    with tempfile.TemporaryDirectory() as tmp:
        save_encoder_weights(encoder.hf_model, str(Path(tmp) / WEIGHTS_FILE))
        (Path(tmp) / RESULT_FILE).write_text(json.dumps(result, default=float))
        if "resume" in last:  # keep the final checkpoint resumable too
            save(Path(tmp) / STATE_FILE, *last["resume"])
        elif resume is not None:
            save_state(Path(tmp) / STATE_FILE, resume["state"], **{k: v for k, v in resume.items() if k != "state"})  # nothing ran: keep what was loaded
        ray.train.report({"final": 1, "epoch": state.epoch}, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    return result


def plot_loss_curve(history: list[dict], path: Path, title: str) -> None:
    """Loss per epoch as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([h["epoch"] for h in history], [h["loss"] for h in history], marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("TAPT loss (per masked frame)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)

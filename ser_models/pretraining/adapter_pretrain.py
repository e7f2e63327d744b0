"""Pre-training the WAP-Transformer adapter on the unlabelled pool: teacher-student with local attributes.

The frozen encoder's frames come from the frame cache (``FeatureCache(kind="frames")``), so no epoch runs
the encoder. The student (:class:`~ser_models.adapters.wap.WAPTransformer`) sees frames with masked spans;
the teacher is an exponential moving average of the student (updated after every optimizer step, never by
gradient) and sees the unmasked frames. Four losses, each weighted by ``tapt.adapter.*_weight``:

- mask prediction: reconstruct the standardised input (the mean over hidden states) of masked frames;
- frame self-distillation: regress the teacher's targets on masked frames -- the average of its top
  ``target_layers`` block outputs, each instance-normalised over time (as data2vec does; it keeps targets
  from collapsing to a constant the student could trivially match);
- utterance self-distillation: 1 - cosine between a projection of the student's mean output and the
  teacher's mean target;
- local attributes: cross-entropy of the cluster id of each masked frame's teacher target, from FAISS k-means
  refitted on the teacher every ``refresh_every`` epochs (the "universal" unsupervised supervision).

Collapse guard: every step measures the teacher's raw output spread (mean over dimensions of the std across
frames) and the cluster usage (perplexity of the batch's cluster ids); both are logged per epoch, and an epoch
whose mean spread is below ``collapse_std`` stops the run with a :class:`TrainingError` that names the knobs.

Layers: objective (no Ray) -> :func:`pretrain_adapter` (epochs, EMA, cluster refresh, resume) ->
:func:`adapter_pretrain_loop_per_worker` (Ray Train worker) -> :func:`run_adapter_pretrain` (driver)::

    output_dir/
      adapter/wap.safetensors, adapter/wap.json   the pre-trained adapter: model.wap.checkpoint takes the first
      adapter_metrics.json                       losses and collapse statistics per epoch (written last)
      adapter_loss.png                           loss curve
      ray_train/adapter_pretrain/                per-epoch checkpoints; rerunning resumes from them

Where we differ from the paper's description: masking spans are drawn with wav2vec 2.0's span sampler, the
targets are instance-normalised averages of several teacher blocks (data2vec), and the clusters are fitted
on the teacher's targets rather than fixed once.

References:
    Baevski et al., "data2vec: A General Framework for Self-supervised Learning in Speech, Vision and
    Language", ICML 2022. Hsu et al., "HuBERT", IEEE/ACM TASLP 2021. Grill et al., "Bootstrap Your Own
    Latent", NeurIPS 2020 (EMA teacher).
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ser_models.adapters.config import WapConfig
from ser_models.adapters.wap import WAPTransformer, save_wap
from ser_models.config import from_dict, to_dict
from ser_models.data.clips import ClipSet, collect_clips
from ser_models.data.inputs import ModelInputs
from ser_models.exceptions import ConfigError, TrainingError
from ser_models.heads.pooling import frame_mask as valid_frames
from ser_models.io import StoragePath, save_figure
from ser_models.pretraining.driver import PretrainLayout, PretrainTraining, Say, run_pretraining
from ser_models.pretraining.kmeans_targets import fit_kmeans
from ser_models.pretraining.pretraining import TaptState, pretrain, resume_from_checkpoint, save_progress
from ser_models.pretraining.tapt_config import AdapterPretrainConfig
from ser_models.scoring.feature_cache import model_inputs
from ser_models.training.batching import StreamingClips, iterate_batches
from ser_models.training.distributed import is_distributed, rank

ADAPTER_DIR = "adapter"
METRICS_FILE = "adapter_metrics.json"
PLOT_FILE = "adapter_loss.png"
STATE_FILE = "adapter_state.pt"
RESULT_FILE = "result.json"
RUN_NAME = "adapter_pretrain"
#: Spans shorter than this many frames make the mask sampler refuse a clip.
MIN_FRAMES = 4


def ema_decay(cfg: AdapterPretrainConfig, step: int, total_steps: int) -> float:
    """Teacher decay at ``step``: linear from ``ema_decay`` to ``ema_decay_end`` over ``total_steps``."""
    frac = min(step / max(total_steps, 1), 1.0)
    return cfg.ema_decay + (cfg.ema_decay_end - cfg.ema_decay) * frac


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """``teacher = decay * teacher + (1 - decay) * student`` for every parameter; buffers are copied."""
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(decay).add_(s.detach(), alpha=1.0 - decay)
    for t, s in zip(teacher.buffers(), student.buffers()):
        t.copy_(s)


def instance_norm(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per clip and channel, zero mean and unit variance over the valid frames: ``[B, F, C]`` -> same (padding 0)."""
    w = valid[..., None].to(x.dtype)
    n = w.sum(1, keepdim=True).clamp(min=1)
    mean = (x * w).sum(1, keepdim=True) / n
    var = ((x - mean).pow(2) * w).sum(1, keepdim=True) / n
    return (x - mean) / (var + 1e-5).sqrt() * w


def _masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    w = valid[..., None].to(x.dtype)
    return (x * w).sum(1) / w.sum(1).clamp(min=1)


class AdapterPretrainObjective(nn.Module):
    """Student WAP-Transformer + prediction heads; the EMA teacher is a plain attribute (no gradient, not a
    submodule, so DDP neither syncs nor trains it; it is checkpointed separately).

    Args:
        num_layers, in_dim: the encoder's L hidden states of width D.
        wap: the adapter's architecture.
        cfg: pre-training settings.
        mean, std: ``[L, D]`` pool statistics of the frames (set into both standardizers), or None.
    """

    name = "adapter"

    def __init__(self, num_layers: int, in_dim: int, wap: WapConfig, cfg: AdapterPretrainConfig,
                 mean: np.ndarray | None = None, std: np.ndarray | None = None, clips: int = 0):
        super().__init__()
        self.cfg = cfg
        self.student = WAPTransformer(num_layers, in_dim, wap)
        if mean is not None:
            self.student.standardizer.set_statistics(mean, std, max(int(clips), 1))
        d = wap.dim
        self.recon_head = nn.Linear(d, in_dim)
        self.frame_head = nn.Linear(d, d)
        self.utterance_head = nn.Linear(d, d)
        self.cluster_head = nn.Linear(d, cfg.num_clusters)
        self.register_buffer("centroids", torch.zeros(cfg.num_clusters, d))
        self.register_buffer("clusters_fitted", torch.zeros((), dtype=torch.bool))
        teacher = copy.deepcopy(self.student)
        teacher.eval().requires_grad_(False)
        self.__dict__["teacher"] = teacher
        self.target_layers = cfg.target_layers or wap.depth
        if self.target_layers > wap.depth:
            raise ConfigError(f"tapt.adapter.target_layers={cfg.target_layers} but model.wap.depth={wap.depth}")

    config_key = "tapt.adapter"
    log_keys = ("recon", "frame", "utterance", "cluster", "cluster_perplexity", "spread")
    min_samples = 1  # clips are cached frames; masks adapt their span to the shortest clip

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.__dict__["teacher"]._apply(fn)
        return self

    # The teacher travels in the objective's state dict (``teacher.*``), so a checkpoint resumes it exactly.
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for name, value in self.__dict__["teacher"].state_dict(keep_vars=keep_vars).items():
            destination[f"{prefix}teacher.{name}"] = value

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        head = f"{prefix}teacher."
        teacher = {k[len(head):]: state_dict.pop(k) for k in [k for k in state_dict if k.startswith(head)]}
        if teacher:
            self.__dict__["teacher"].load_state_dict(teacher)
        elif strict:
            missing_keys.append(f"{head}*")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def set_step(self, step: int) -> None:
        """(Protocol hook: nothing anneals per step before it.)"""

    def start_epoch(self, epoch: int, clips) -> dict:
        """Refit the local attributes every ``refresh_every`` epochs (and whenever none are fitted yet)."""
        c = self.cfg
        if epoch % c.refresh_every and bool(self.clusters_fitted):
            return {}
        fit = self.refresh_clusters(clips, c.kmeans_max_clips, c.kmeans_iterations, c.optim.seed + epoch,
                                    c.optim.max_crop_seconds, c.optim.batch_size)
        return {"kmeans": {k: fit[k] for k in ("frames", "inertia", "clips", "seconds") if k in fit}}

    def after_step(self, step: int, total_steps: int) -> None:
        """The teacher follows the student: ``ema_update`` with the scheduled decay."""
        self.decay = ema_decay(self.cfg, step, total_steps)
        ema_update(self.__dict__["teacher"], self.student, self.decay)

    def end_epoch(self, record: dict) -> None:
        """Record the decay, then the collapse guard: raise when the epoch's mean teacher spread is too small."""
        record["ema_decay"] = getattr(self, "decay", self.cfg.ema_decay)
        if record.get("spread", math.inf) < self.cfg.collapse_std:
            raise TrainingError(
                f"adapter pre-training collapsed at epoch {record['epoch']}: the teacher's outputs vary by "
                f"{record['spread']:.2e} across frames (< tapt.adapter.collapse_std={self.cfg.collapse_std}); "
                "raise tapt.adapter.ema_decay / ema_decay_end (a slower teacher), lower tapt.adapter.optim.lr, or raise "
                "tapt.adapter.mask_weight (the reconstruction loss cannot be met by a constant)")

    @torch.no_grad()
    def teacher_targets(self, frames: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(targets [B, F, d], raw spread [scalar])``: the instance-normalised mean of the teacher's top blocks
        on unmasked frames, and the mean over dimensions of its last block's std across valid frames."""
        teacher = self.__dict__["teacher"]
        teacher.eval()
        _, blocks = teacher(frames, lengths, return_blocks=True)
        valid = valid_frames(lengths, frames.shape[1])
        top = blocks[-self.target_layers:]
        target = sum(instance_norm(b, valid) for b in top) / len(top)
        last = blocks[-1][valid]  # [N, d]
        spread = last.std(0).mean() if len(last) > 1 else torch.zeros((), device=frames.device)
        return target, spread

    @torch.no_grad()
    def assign(self, targets: torch.Tensor) -> torch.Tensor:
        """Nearest centroid of each target frame: ``[..., d]`` -> ``[...]`` int64."""
        flat = targets.reshape(-1, targets.shape[-1])
        return torch.cdist(flat, self.centroids).argmin(-1).view(targets.shape[:-1])

    def prepare(self, frames: torch.Tensor, lengths: torch.Tensor, rng: np.random.Generator) -> dict:
        """Masks and every target of a batch ``frames [B, F, L, D]``, ``lengths [B]`` (frames)."""
        from ser_models.pretraining.masking import sample_time_mask

        num_frames = frames.shape[1]
        mask = sample_time_mask(lengths.cpu(), num_frames, self.cfg.mask_prob,
                                min(self.cfg.mask_length, max(int(lengths.min()) - 1, 1)), 1, rng).to(frames.device)
        target, spread = self.teacher_targets(frames, lengths)
        with torch.no_grad():
            st = self.student.standardizer.forward_pooled(frames).mean(2)  # [B, F, D]
        ids = self.assign(target) if bool(self.clusters_fitted) else torch.full(mask.shape, -100, dtype=torch.long,
                                                                              device=frames.device)
        return {"frames": frames, "lengths": lengths, "mask": mask, "target": target, "recon": st,
                "cluster_ids": ids, "spread": spread}

    def forward(self, frames, lengths, mask, target, recon, cluster_ids, spread) -> dict:
        c = self.cfg
        out = self.student(frames, lengths, mask=mask)  # [B, F, d]
        valid = valid_frames(lengths, frames.shape[1])
        m = mask & valid
        h = out[m]  # [M, d]
        recon_loss = nn.functional.mse_loss(self.recon_head(h), recon[m])
        frame_loss = nn.functional.smooth_l1_loss(self.frame_head(h), target[m])
        utt = nn.functional.cosine_similarity(self.utterance_head(_masked_mean(out, valid)),
                                              _masked_mean(target, valid), dim=-1)
        utt_loss = (1.0 - utt).mean()
        loss = c.mask_weight * recon_loss + c.frame_weight * frame_loss + c.utterance_weight * utt_loss
        stats = {"recon": recon_loss, "frame": frame_loss, "utterance": utt_loss, "spread": spread}
        if bool(self.clusters_fitted) and c.cluster_weight > 0:
            logits = self.cluster_head(h)
            y = cluster_ids[m]
            cluster_loss = nn.functional.cross_entropy(logits.float(), y)
            loss = loss + c.cluster_weight * cluster_loss
            counts = torch.bincount(y, minlength=c.num_clusters).float()
            p = counts / counts.sum().clamp(min=1)
            stats.update(cluster=cluster_loss, cluster_accuracy=(logits.argmax(-1) == y).float().mean(),
                         cluster_perplexity=torch.exp(-(p * (p + 1e-12).log()).sum()))
        else:
            loss = loss + 0.0 * self.cluster_head.weight.sum()  # every parameter in the graph (DDP)
        return {"loss": loss, **{k: v.detach() for k, v in stats.items()}}

    @torch.no_grad()
    def refresh_clusters(self, clips: ClipSet | StreamingClips, max_clips: int, iterations: int, seed: int,
                         max_seconds: float, batch_size: int) -> dict:
        """Refit the local-attribute centroids with FAISS k-means on the teacher's targets of up to
        ``max_clips`` clips (rank 0 fits, the others receive them), and return the fit's statistics."""

        stats: dict = {}
        if rank() == 0:
            device = self.centroids.device
            chunks, seen = [], 0
            for batch in _batches_in_order(clips, batch_size, max_seconds):
                target, _ = self.teacher_targets(batch.features.to(device), batch.lengths.to(device))
                valid = valid_frames(batch.lengths.to(device), target.shape[1])
                chunks.append(target[valid].float().cpu().numpy())
                seen += len(batch.ids)
                if seen >= max_clips:
                    break
            frames = np.concatenate(chunks) if chunks else np.zeros((0, self.centroids.shape[1]), np.float32)
            centroids, stats = fit_kmeans(frames, self.cfg.num_clusters, iterations, seed)
            stats["clips"] = seen
            self.centroids.copy_(torch.from_numpy(centroids).to(device))
        if is_distributed():
            torch.distributed.broadcast(self.centroids, src=0)
        self.clusters_fitted.fill_(True)
        return stats


def _batches_in_order(clips: ClipSet | StreamingClips, batch_size: int, max_seconds: float):
    if isinstance(clips, StreamingClips):
        for window in clips.windows():
            yield from iterate_batches(window, batch_size, max_seconds, rng=None)
    else:
        yield from iterate_batches(clips, batch_size, max_seconds, rng=None)


#: Progress of a run (epoch, step, history): the shared loop's state.
AdapterPretrainState = TaptState


def pretrain_adapter(objective: AdapterPretrainObjective, clips: ClipSet | StreamingClips, *,
                     device: torch.device | None = None, resume: dict | None = None, on_epoch_end=None,
                     log=print) -> AdapterPretrainState:
    """Run the pre-training epochs over this worker's cached frames: the shared loop of
    :func:`ser_models.pretraining.pretraining.pretrain`, with this objective's hooks (cluster refresh at the start
    of an epoch, the EMA update after every step, the collapse guard at the end of an epoch).

    Args:
        objective: its student and heads are optimised; its teacher follows by EMA after every step.
        clips: frame clips (``ClipSet.frames``), held or streamed from the worker's shard every epoch.
        device: where to train (default CPU).
        resume: ``{"state", "model", "optimizer", "scheduler"}`` as saved by a checkpoint (``model`` holds the
            teacher too).
        on_epoch_end: ``f(state, objective, optimizer, scheduler)`` after every epoch on every worker.
        log: progress lines (rank 0).

    Returns:
        The final :class:`AdapterPretrainState` (``history``: one dict per epoch: losses, ``spread``,
        ``cluster_perplexity``, ``ema_decay``, ``kmeans`` on refresh epochs, ``seconds``).

    Raises:
        TrainingError: a worker has no clips, the loss is not finite, or the collapse guard fires.
    """

    return pretrain(objective, clips, objective.cfg.optim, device=device, resume=resume, on_epoch_end=on_epoch_end,
                    log=log)


# ------------------------------------------------------------------------------------------ Ray Train


def adapter_pretrain_loop_per_worker(config: dict) -> dict:
    """Ray Train worker: pre-train the adapter on this worker's shard of ``train`` (cached frames).

    Args:
        config: ``{"wap": WapConfig dict, "pretrain": AdapterPretrainConfig dict, "inputs": ModelInputs
            dict (frames, shape [-1, L, D]), "mean", "std": [L, D] lists, "stats_clips": int, "threads": int,
            "stream_rows": int | None}``.

    Returns:
        On rank 0 ``{"history", "clips", "final_loss"}``; ``{}`` elsewhere.
    """

    import ray.train
    import ray.train.torch


    torch.set_num_threads(max(int(config.get("threads", 1)), 1))
    wap = from_dict(WapConfig, config["wap"])
    cfg = from_dict(AdapterPretrainConfig, config["pretrain"])
    inputs = ModelInputs.from_dict(config["inputs"])
    shape = inputs.shape  # (-1, L, D)
    me = ray.train.get_context().get_world_rank()
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.optim.seed)  # identical initialisation on every replica
    objective = AdapterPretrainObjective(shape[1], shape[2], wap, cfg, np.asarray(config["mean"], np.float32),
                                         np.asarray(config["std"], np.float32), config.get("stats_clips", 1))
    shard = ray.train.get_dataset_shard("train")
    if config.get("stream_rows"):
        clips = StreamingClips(shard, [], int(config["stream_rows"]), inputs=inputs, require_labels=False,
                               window=int(config.get("stream_window", 256)))
    else:
        clips = collect_clips(shard.iter_batches(batch_size=64, batch_format="numpy"), labels=[],
                              inputs=inputs, require_labels=False).sorted_by_id()
    if me == 0:
        print(f"adapter pre-training on {len(clips)} clips per worker ({'streamed' if config.get('stream_rows') else 'held'})")


    resume = resume_from_checkpoint(STATE_FILE, verbose=me == 0)
    save = save_progress

    def on_epoch_end(state, obj, opt, sched) -> None:
        metrics = {k: v for k, v in state.history[-1].items() if not isinstance(v, dict)}
        if me != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory() as tmp:
            save(Path(tmp) / STATE_FILE, state, obj, opt, sched)
            if state.epoch == cfg.optim.epochs:  # the last epoch's checkpoint also carries the finished adapter
                save_wap(obj.student, tmp, {"epochs": state.epoch})
                (Path(tmp) / RESULT_FILE).write_text(json.dumps(
                    {"history": state.history, "clips": len(clips), "final_loss": state.history[-1]["loss"]},
                    default=float))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    state = pretrain_adapter(objective, clips, device=device, resume=resume, on_epoch_end=on_epoch_end,
                             log=print if me == 0 else (lambda _: None))
    if me != 0:
        return {}
    return {"history": state.history, "clips": len(clips),
            "final_loss": state.history[-1]["loss"] if state.history else None}


@dataclass
class AdapterPretrainResult:
    """What a finished run left: ``checkpoint`` is what ``model.wap.checkpoint`` takes."""

    output_dir: Path
    checkpoint: Path
    metrics: dict
    seconds: float
    reused: bool = False


def plot_adapter_curve(history: list[dict], path, title: str) -> None:
    """Total and component losses per epoch as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    epochs = [h["epoch"] for h in history]
    for key in ("loss", "recon", "frame", "utterance", "cluster"):
        if all(key in h for h in history):
            ax.plot(epochs, [h[key] for h in history], marker="o" if key == "loss" else None, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("pre-training loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def run_adapter_pretrain(cache, train_ids: list[str], wap: WapConfig, cfg: AdapterPretrainConfig, scaling,
                         output_dir: str, *, verbose: bool = True) -> AdapterPretrainResult:
    """Pre-train the adapter with Ray Train on the training clips' cached frames, or reuse a finished run.

    Args:
        cache: a ready frame cache (``FeatureCache(kind="frames")``).
        train_ids: the clips to learn from (the pool's training split: never dev or test).
        wap: the adapter architecture (``model.wap``).
        cfg: pre-training settings (``tapt.adapter``).
        scaling: Ray Train workers, CPUs, retries and streaming.
        output_dir: run folder (local or URI); rerunning with it resumes or reuses.

    Returns:
        An :class:`AdapterPretrainResult`.

    Raises:
        ConfigError: the cache is not a ready frame cache.
        TrainingError: Ray Train gives up after ``scaling.max_failures`` restarts, or no adapter came back.
    """

    layout = PretrainLayout("adapter pre-training", ADAPTER_DIR, "wap.safetensors", "wap.json", METRICS_FILE,
                            PLOT_FILE)

    def prepare(out: StoragePath, say: Say) -> PretrainTraining:
        if cache.kind != "frames" or not cache.ready:
            raise ConfigError(f"adapter pre-training needs a ready frame cache, got {cache!r}")
        t0 = time.perf_counter()
        mean, std, clips = cache.statistics(train_ids)
        say(f"adapter pre-training: frame statistics of {clips} training clips ({time.perf_counter() - t0:.1f}s)")
        loop_config = {"wap": to_dict(wap), "pretrain": to_dict(cfg), "inputs": model_inputs(cache).to_dict(),
                       "mean": mean.tolist(), "std": std.tolist(), "stats_clips": clips,
                       "threads": scaling.cpus_per_worker}
        dataset = cache.dataset(ids=train_ids)
        dataset.context.enable_progress_bars = False  # bars would interleave with the epoch lines

        def describe(metrics: dict, staged: dict | None) -> dict:
            # the architecture the worker saved beside the weights, plus how it was pre-trained
            return {**staged, "pretrain": to_dict(cfg), "clips": metrics["clips"],
                    "final_loss": metrics["final_loss"], "frame_cache": str(cache.dir)}

        return PretrainTraining(
            adapter_pretrain_loop_per_worker, loop_config, dataset, len(train_ids), t0,
            missing=f"adapter pre-training: the last checkpoint in {out}/ray_train has no wap.safetensors",
            describe=describe, title=lambda metrics: f"adapter pre-training ({metrics['clips']} clips)",
            staged_info="wap.json")

    run = run_pretraining(output_dir, layout, scaling, RUN_NAME, prepare, plot=plot_adapter_curve,
                          verbose=verbose)
    if verbose and not run.reused:
        print(f"adapter pre-training: {len(run.metrics['history'])} epochs in {run.seconds:.0f}s -> {run.weights}")
    return AdapterPretrainResult(run.output_dir, run.weights, run.metrics, run.seconds, reused=run.reused)

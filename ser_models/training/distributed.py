"""Small helpers over torch.distributed that also work in a single process (no process group)."""

from __future__ import annotations

import inspect

import numpy as np
import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


#: The process-group backend Ray Train is asked for under ``scaling.use_gpu``: gloo carries CPU tensors (the
#: small scalars of :func:`all_reduce_min` / :func:`broadcast_flag`, with no device sync), NCCL the gradients.
GPU_BACKEND = "cpu:gloo,cuda:nccl"


def collective_device(backend: str) -> torch.device:
    """The device a collective's tensor must live on for a process group of ``backend``.

    NCCL rejects CPU tensors; gloo takes CPU tensors (and CUDA ones, staged through the host). A mixed backend
    (``"cpu:gloo,cuda:nccl"``) routes by the tensor's device, so CPU is the cheap choice there.

    Args:
        backend: ``torch.distributed.get_backend()``: ``"gloo"``, ``"nccl"``, ``"cpu:gloo,cuda:nccl"``, ...

    Returns:
        ``cuda:<current device>`` when only NCCL serves the group, else ``cpu``.
    """
    names = [part.strip().lower() for part in str(backend).split(",") if part.strip()]
    if any(n.startswith("cpu:") for n in names):  # the group has a CPU backend of its own
        return torch.device("cpu")
    if any(n.rpartition(":")[2] == "nccl" for n in names):
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _in_group() -> bool:
    # Any process group, one process included: a one-worker group runs the collective too (microseconds), so
    # the path that multi-worker runs take is the one every run and the one-process tests exercise.
    return dist.is_available() and dist.is_initialized()


def _group_device() -> torch.device:
    return collective_device(dist.get_backend())


def all_reduce_min(value: int) -> int:
    """The minimum of ``value`` over workers: every DDP replica must run the same number of steps, or the
    replica with the longer shard waits forever in its gradient all-reduce."""
    if not _in_group():
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.long, device=_group_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's decision (e.g. early stopping) applied on every worker."""
    if not _in_group():
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.long, device=_group_device())
    dist.broadcast(t, src=0)
    return bool(t.item())


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def wrap_ddp(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``module`` wrapped in DistributedDataParallel when a process group runs, else as is.

    Buffers are not re-broadcast before every forward: the platform's buffers are registered statistics (pool
    and speaker feature statistics, mel filters, k-means centroids that their owner broadcasts itself) that no
    training step changes, so a broadcast each step would be a collective for nothing. DDP still syncs them
    once at construction where torch offers that separately (``forward_sync_buffers``, torch >= 2.13).
    """
    if not is_distributed():
        return module

    ddp = torch.nn.parallel.DistributedDataParallel
    no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
               else {"broadcast_buffers": False})
    return ddp(module, device_ids=[device.index] if device.type == "cuda" else None, **no_sync)


def seed_epoch(seed: int, epoch: int):
    """Seed everything random in one epoch of one worker, and return the epoch's numpy Generator.

    Seeded per epoch, not once per run, so that a run resumed after epoch k draws exactly the crops, batches,
    dropout and masks an uninterrupted run would. numpy's global RNG is seeded too: HF speech encoders draw
    their SpecAugment masks from it in train mode.
    """

    me = rank()
    mixed = seed * 100_003 + epoch * 31 + me
    torch.manual_seed(mixed)
    np.random.seed(mixed % 2**32)
    return np.random.default_rng([seed, epoch, me])

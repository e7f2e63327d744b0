"""Small helpers over torch.distributed that also work in a single process (no process group)."""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def all_reduce_min(value: int) -> int:
    """The minimum of ``value`` over workers: every DDP replica must run the same number of steps, or the
    replica with the longer shard waits forever in its gradient all-reduce."""
    if not is_distributed():
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.long)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's decision (e.g. early stopping) applied on every worker."""
    if not is_distributed():
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.long)
    dist.broadcast(t, src=0)
    return bool(t.item())


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def wrap_ddp(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``module`` wrapped in DistributedDataParallel when a process group runs, else as is."""
    if not is_distributed():
        return module
    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None)


def seed_epoch(seed: int, epoch: int):
    """Seed everything random in one epoch of one worker, and return the epoch's numpy Generator.

    Seeded per epoch, not once per run, so that a run resumed after epoch k draws exactly the crops, batches,
    dropout and masks an uninterrupted run would. numpy's global RNG is seeded too: HF speech encoders draw
    their SpecAugment masks from it in train mode.
    """
    import numpy as np

    me = rank()
    mixed = seed * 100_003 + epoch * 31 + me
    torch.manual_seed(mixed)
    np.random.seed(mixed % 2**32)
    return np.random.default_rng([seed, epoch, me])

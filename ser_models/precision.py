"""Numeric precision of forward passes (bf16 autocast, TF32 matmuls) and GPU micro-batch sizing.

Two keys choose the precision wherever a stage runs a model (``active.scorer`` / ``scorer`` for scoring and the
feature cache's encoder, ``train`` for fine-tuning):

- ``precision``: ``fp32`` runs every op in float32; ``bf16`` runs the forward under ``torch.autocast`` with
  bfloat16 (matmuls and convolutions in bf16, reductions and normalisations in float32), on a GPU or a CPU.
  Parameters, gradients and optimizer states stay float32, and outputs are cast back to float32 before a
  softmax, a loss or numpy; bf16 has float32's exponent range, so no loss scaling is needed.
- ``allow_tf32``: on CUDA, float32 matmuls and convolutions use TF32 tensor cores (10-bit mantissa inputs,
  float32 accumulation). bench/gpu_check.py measured wav2vec2-base scoring at 2.4x the strict fp32 rate on an
  H100. It is a process-wide switch, set by the actor or worker that uses the device; a CPU run never
  touches it (CPU matmuls are unaffected).

Torch only (no other ``ser_models`` import but the typed errors), and torch imported on first use: the configs
validate their keys with it on drivers that never load torch.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING

from ser_models.exceptions import ConfigError

if TYPE_CHECKING:
    import torch

#: ``precision`` values: float32 throughout, or bfloat16 autocast over float32 weights.
PRECISIONS = ("fp32", "bf16")
#: Auto micro-batches on a GPU: at most this many clips per forward (bench/gpu_check.py: wav2vec2-base bf16
#: scoring ran 1456 audio-s/s at 8 clips, 3802 at 32, 4623 at 64, 5010 at 128 on an H100; the default Ray
#: Data batch of 128 clips bounds it anyway) ...
AUTO_MICRO_BATCH_CAP = 128
#: ... and at least this many (also the probe that measures memory per clip).
AUTO_MICRO_BATCH_FLOOR = 8
#: Share of the free device memory an auto micro-batch may fill: the probe measures one batch's peak, and
#: longer clips, other shapes and the allocator's fragmentation need room beyond it.
MEMORY_SAFETY = 0.6


def check_precision(value, key: str) -> str:
    """``value`` if it is one of :data:`PRECISIONS`.

    Args:
        value: the configured value.
        key: the dotted config key, named in the error (``active.scorer.precision``).

    Raises:
        ConfigError: naming ``key``, the value and the choices.
    """
    if value not in PRECISIONS:
        raise ConfigError(f"{key} must be one of {list(PRECISIONS)}, got {value!r}")
    return value


def check_flag(value, key: str) -> bool:
    """``value`` if it is a bool (a YAML ``true`` / ``false``), for keys such as ``allow_tf32``.

    Raises:
        ConfigError: naming ``key`` and the value (a string such as ``"yes"`` is refused, not read as true).
    """
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def autocast(device: torch.device | str, precision: str):
    """The context a forward pass runs in for ``precision`` on ``device``.

    Args:
        device: where the forward runs (its type picks the autocast backend: ``cuda``, ``cpu``).
        precision: ``fp32`` or ``bf16``.

    Returns:
        ``torch.autocast(device.type, dtype=torch.bfloat16)`` for ``bf16`` (a CPU too), else a null context.

    Raises:
        ConfigError: an unknown ``precision``.
    """
    import torch

    if check_precision(precision, "precision") == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def allow_tf32(enabled: bool) -> None:
    """Let CUDA float32 matmuls (cuBLAS) and convolutions (cuDNN) use TF32 tensor cores, or forbid it.

    Process-wide. PyTorch's own defaults are matmuls off, convolutions on; ``False`` turns both off (strict
    float32), ``True`` both on.
    """
    import torch

    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)


def configure_device(device: torch.device | str, tf32: bool) -> bool:
    """Apply ``allow_tf32`` for a stage that runs on ``device``: only a CUDA device changes anything.

    Returns:
        Whether the switch was set (False on a CPU, where it would have no effect).
    """
    import torch

    if torch.device(device).type != "cuda":
        return False
    allow_tf32(tf32)
    return True


def pin_for(device: torch.device | str) -> bool:
    """Whether host batches bound for ``device`` should be built in pinned (page-locked) memory: only for
    CUDA, where a pinned source lets the copy run asynchronously (``non_blocking``); on a CPU-only run
    pinning is a wasted copy (and needs a CUDA driver)."""
    import torch

    return torch.device(device).type == "cuda"


def micro_batch_from_memory(free_bytes: float, bytes_per_clip: float, cap: int = AUTO_MICRO_BATCH_CAP,
                            floor: int = AUTO_MICRO_BATCH_FLOOR, safety: float = MEMORY_SAFETY) -> int:
    """Clips per forward that fit ``safety`` x ``free_bytes`` at ``bytes_per_clip`` each.

    Args:
        free_bytes: device memory this actor may use (bytes).
        bytes_per_clip: peak memory one clip of the longest scored length takes in a forward (bytes); 0 or
            less (nothing measurable) gives ``cap``.
        cap: the largest size returned.
        floor: the smallest size returned (a probe of this many clips already ran).
        safety: share of ``free_bytes`` to fill, in (0, 1].

    Returns:
        An int in ``[floor, cap]``, rounded down to a multiple of 8 when above 8 (whole warps of rows).
    """
    if not 0 < safety <= 1 or floor < 1 or cap < floor:
        raise ValueError(f"need 0 < safety <= 1 and 1 <= floor <= cap, got {safety}, {floor}, {cap}")
    if bytes_per_clip <= 0 or not math.isfinite(bytes_per_clip):
        return cap
    fits = int(max(free_bytes, 0.0) * safety // bytes_per_clip)
    if fits > 8:
        fits -= fits % 8
    return max(floor, min(cap, fits))


def free_device_bytes(device: torch.device) -> int:
    """Memory a CUDA ``device`` can still give this process: the driver's free bytes plus what torch's caching
    allocator holds reserved but unused."""
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def measure_bytes_per_clip(forward, device: torch.device, clips: int, length: int, max_length: int) -> float:
    """Peak CUDA memory per clip of one forward, scaled to ``max_length``.

    Args:
        forward: runs the forward of a batch already on ``device`` (its result is dropped).
        device: a CUDA device.
        clips: clips in that batch.
        length: its longest clip (samples, after cropping).
        max_length: the longest a clip can be (samples); activations grow about linearly with length.

    Returns:
        ``(peak allocated - allocated before) / clips x max_length / length`` in bytes.
    """
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    with torch.no_grad():
        forward()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    return peak / max(clips, 1) * max(max_length, length) / max(length, 1)


def size_micro_batch(stage: str, forward, device: torch.device, clips: int, length: int, max_length: int,
                     share: float = 1.0) -> int:
    """The auto micro-batch of a CUDA actor from one probe forward (:func:`measure_bytes_per_clip`) and the
    memory left (:func:`free_device_bytes` x ``share``, the actor's fraction of a shared GPU); printed once.

    Returns:
        :func:`micro_batch_from_memory` of the measured figures.
    """
    per_clip = measure_bytes_per_clip(forward, device, clips, length, max_length)
    free = free_device_bytes(device) * min(max(share, 0.0), 1.0)
    micro = micro_batch_from_memory(free, per_clip)
    print(f"  {stage}: micro-batch {micro} clips (auto: {per_clip / 2**20:.1f} MiB per clip at "
          f"{max_length / 16000:g} s, {free / 2**30:.1f} GiB free)", flush=True)
    return micro


def gpu_share(num_gpus: float) -> float:
    """The fraction of one GPU an actor that reserved ``num_gpus`` may fill (0.5: two actors share it)."""
    return min(float(num_gpus), 1.0) if num_gpus and num_gpus > 0 else 1.0


__all__ = ["AUTO_MICRO_BATCH_CAP", "AUTO_MICRO_BATCH_FLOOR", "MEMORY_SAFETY", "PRECISIONS", "allow_tf32", "autocast",
           "check_flag", "check_precision", "configure_device", "free_device_bytes", "gpu_share",
           "measure_bytes_per_clip", "micro_batch_from_memory", "pin_for", "size_micro_batch"]

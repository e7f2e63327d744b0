"""Per-row MC-dropout masks, drawn on the device of the values they mask.

References:
    Gal and Ghahramani, 2016. Dropout as a Bayesian Approximation. ICML.
"""

from __future__ import annotations

import contextlib
import contextvars
import math

import torch
from torch import nn


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for int64 ``x`` in [0, 2**32), in two 16-bit halves so nothing overflows int64."""
    return ((((x >> 16) * c) & 0xFFFF) << 16) + (x & 0xFFFF) * c & 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with full avalanche (C. Wellons' ``lowbias32``), elementwise on int64 in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def counter_uniforms(seeds: torch.Tensor, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``[B, *shape]`` uniforms in [0, 1): element ``i`` (row-major) of row ``b`` is a hash of
    ``(seeds[b], i)`` alone, so a row's values do not depend on its batch, and its first frames (axis 0 of
    ``shape``) not on its padded length. The same numbers on every device, in a handful of elementwise kernels
    for the whole batch (a generator per row and block costs a kernel launch each: 31x slower on an H100).

    Args:
        seeds: ``[B]`` int64 row seeds (any values; both 32-bit halves are used).
        shape: one row's shape, frames first.
        device: where to compute.

    Returns:
        float32 ``[B, *shape]``, multiples of 2**-24.
    """
    seeds = seeds.to(device=device, dtype=torch.int64)
    key = _mix32((seeds & 0xFFFFFFFF) ^ _mix32(((seeds >> 32) + 0x9E3779B9) & 0xFFFFFFFF))
    count = torch.arange(math.prod(shape), device=device, dtype=torch.int64)
    h = _mix32(key[:, None] ^ _mix32(count[None] ^ 0x85EBCA6B))
    h = _mix32((h + key[:, None]) & 0xFFFFFFFF)
    return ((h >> 8).to(torch.float32) * 2.0**-24).reshape(len(seeds), *shape)


def row_uniforms(seed: int, shape: tuple[int, ...], device: torch.device, counter: bool | None = None) -> torch.Tensor:
    """``[*shape]`` uniforms in [0, 1) drawn on ``device`` from ``seed`` alone, so the first ``k`` frames
    (axis 0) of a row are the same whatever the row's padded length.

    On the CPU one Mersenne Twister generator draws the row (the historical masks): it fills a tensor
    row-major, so any prefix of frames is padding-free. Elsewhere the values are :func:`counter_uniforms`:
    CUDA's Philox kernel maps elements to random streams by the launch grid, which depends on the tensor's
    size, so a generator would not give a padding-free prefix there.

    Args:
        seed: the row's seed (any int).
        shape: one row's shape, frames first (``[T, D]``, or ``[D]`` for a pooled vector).
        device: where to draw.
        counter: use :func:`counter_uniforms`; None = off the CPU only.
    """
    if counter is None:
        counter = device.type != "cpu"
    if counter:
        return counter_uniforms(torch.tensor([int(seed)], dtype=torch.int64), shape, device)[0]
    gen = torch.Generator(device=device).manual_seed(seed % (2**63))
    return torch.rand(shape, generator=gen, device=device)


#: The rows of the hook's batch that the next forward holds (:func:`row_subset`); None = all of them.
_ROWS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("mc_dropout_rows", default=None)


@contextlib.contextmanager
def row_subset(rows: list[int]):
    """Forwards inside see only ``rows`` of the batch whose ``row_seeds`` a hook holds (an encoder that runs
    its batch in groups, such as Whisper's trimmed windows), so each row keeps its own seed."""
    token = _ROWS.set([int(r) for r in rows])
    try:
        yield
    finally:
        _ROWS.reset(token)


def _int64(value: int) -> int:
    """``value`` wrapped into int64's range (a tensor holds it; the CPU generator takes it mod 2**63)."""
    return (value + 2**63) % 2**64 - 2**63


def row_seeded_dropout(row_seeds: list[int], salt: int, p: float):
    """A forward hook that drops ``p`` of each row's values with a mask from that row's own seed, drawn on the
    output's device (:func:`row_uniforms`; one vectorised draw off the CPU)."""

    def hook(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        rows = _ROWS.get()
        seeds = list(row_seeds) if rows is None else [row_seeds[r] for r in rows]
        if output.shape[0] != len(seeds):
            raise ValueError(f"mc_dropout(row_seeds=...) got {len(seeds)} seeds for a batch of {output.shape[0]}")
        shape = tuple(output.shape[1:])
        salted = [_int64(int(seed) * 1_000_003 + salt) for seed in seeds]
        if output.device.type == "cpu":
            uniforms = torch.stack([row_uniforms(s, shape, output.device) for s in salted])
        else:
            uniforms = counter_uniforms(torch.tensor(salted, dtype=torch.int64), shape, output.device)
        return output * (uniforms >= p).to(output.dtype) / (1.0 - p)

    return hook

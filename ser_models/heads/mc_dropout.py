"""Per-row MC-dropout masks, drawn on the device of the values they mask.

References:
    Gal and Ghahramani, 2016. Dropout as a Bayesian Approximation. ICML.
"""

from __future__ import annotations

import torch
from torch import nn

#: Frames per mask block off the CPU (see :func:`row_uniforms`).
MASK_BLOCK_FRAMES = 32


def row_uniforms(seed: int, shape: tuple[int, ...], device: torch.device, blocked: bool | None = None) -> torch.Tensor:
    """``[*shape]`` uniforms in [0, 1) drawn on ``device`` from generators seeded by ``seed`` alone, so the
    first ``k`` frames (axis 0) of a row are the same whatever the row's padded length.

    On the CPU one generator draws the row: its Mersenne Twister fills a tensor row-major, so any prefix of
    frames is padding-free. CUDA's Philox kernel maps elements to random streams by the launch grid, which
    depends on the tensor's size, so there the row is drawn in blocks of :data:`MASK_BLOCK_FRAMES` frames, each
    of a fixed size and with a generator of its own (seed, block). Both draw on the device: no host mask is
    built and copied (BALD reruns the encoder T times, and LoRA's dropout sees ``[T, D]`` per layer).

    Args:
        seed: the row's seed (any int).
        shape: one row's shape, frames first (``[T, D]``, or ``[D]`` for a pooled vector).
        device: where to draw.
        blocked: draw in frame blocks; None = off the CPU only (the CPU keeps its historical masks).
    """
    if blocked is None:
        blocked = device.type != "cpu"
    if not blocked or len(shape) < 2:
        gen = torch.Generator(device=device).manual_seed(seed % (2**63))
        return torch.rand(shape, generator=gen, device=device)
    frames, rest = shape[0], tuple(shape[1:])
    blocks = []
    for b in range(0, frames, MASK_BLOCK_FRAMES):
        gen = torch.Generator(device=device).manual_seed((seed * 1_000_033 + b) % (2**63))
        blocks.append(torch.rand((MASK_BLOCK_FRAMES, *rest), generator=gen, device=device))
    return torch.cat(blocks)[:frames]


def row_seeded_dropout(row_seeds: list[int], salt: int, p: float):
    """A forward hook that drops ``p`` of each row's values with a mask from that row's own generator(s), drawn
    on the output's device (:func:`row_uniforms`)."""

    def hook(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        if output.shape[0] != len(row_seeds):
            raise ValueError(f"mc_dropout(row_seeds=...) got {len(row_seeds)} seeds for a batch of {output.shape[0]}")
        shape = tuple(output.shape[1:])
        keep = torch.stack([row_uniforms(int(seed) * 1_000_003 + salt, shape, output.device) >= p
                            for seed in row_seeds])
        return output * keep.to(output.dtype) / (1.0 - p)

    return hook

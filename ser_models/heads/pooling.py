"""Pooling frame-level features ``[B, F, D]`` into one vector per utterance, respecting padding."""

from __future__ import annotations

import torch
from torch import nn

from ser_models.exceptions import ConfigError

POOLINGS = ("mean", "attentive_stats")


def frame_mask(frame_lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``[B, F]`` bool, true on valid frames."""
    return torch.arange(num_frames, device=frame_lengths.device)[None, :] < frame_lengths[:, None]


def masked_mean(x: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames: ``x [..., B, F, D]`` -> ``[..., B, D]`` (leading dims, e.g. layers, allowed)."""
    mask = frame_mask(frame_lengths, x.shape[-2]).to(x.dtype)  # [B, F]
    total = torch.einsum("...bfd,bf->...bd", x, mask)
    return total / frame_lengths.clamp(min=1).to(x.dtype)[:, None]


class MeanPooling(nn.Module):
    """Masked mean over valid frames: ``[B, F, D]`` -> ``[B, D]``."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.in_dim = in_dim
        self.output_dim = in_dim

    def forward(self, x: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        """Args: x ``[B, F, D]``; frame_lengths ``[B]``. Returns ``[B, D]``."""
        return masked_mean(x, frame_lengths)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}"


class AttentiveStatisticsPooling(nn.Module):
    """Attention-weighted mean and standard deviation over valid frames: ``[B, F, D]`` -> ``[B, 2D]``.

    A small MLP scores each frame, a softmax over the valid frames turns the scores into weights, and the
    weighted first and second moments are concatenated, so the head sees both what is said most saliently
    and how much it varies (emotion is carried by variation in prosody as much as by its level).

    Args:
        in_dim: D.
        attention_hidden: width of the scoring MLP.

    References:
        Okabe, Koshinaka and Shinoda, 2018. Attentive Statistics Pooling for Deep Speaker Embedding.
        Interspeech.
    """

    def __init__(self, in_dim: int, attention_hidden: int = 128):
        super().__init__()
        self.in_dim = in_dim
        self.output_dim = 2 * in_dim
        self.attention = nn.Sequential(nn.Linear(in_dim, attention_hidden), nn.Tanh(),
                                       nn.Linear(attention_hidden, 1))

    def forward(self, x: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        """Args: x ``[B, F, D]``; frame_lengths ``[B]``. Returns ``[B, 2D]`` (mean then std)."""
        mask = frame_mask(frame_lengths, x.shape[1])
        scores = self.attention(x).squeeze(-1).float().masked_fill(~mask, float("-inf"))
        w = torch.softmax(scores, dim=1).to(x.dtype).unsqueeze(-1)  # [B, F, 1]
        mean = (w * x).sum(1)
        # Clamped before the sqrt: a constant input (or one frame) has zero variance and sqrt'(0) is inf.
        var = (w * (x - mean[:, None]).pow(2)).sum(1)
        return torch.cat([mean, var.clamp(min=1e-6).sqrt()], dim=-1)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}"


def build_pooling(kind: str, in_dim: int) -> nn.Module:
    """``mean`` -> :class:`MeanPooling`, ``attentive_stats`` -> :class:`AttentiveStatisticsPooling`."""
    if kind == "mean":
        return MeanPooling(in_dim)
    if kind == "attentive_stats":
        return AttentiveStatisticsPooling(in_dim)
    raise ConfigError(f"model.pooling must be one of {list(POOLINGS)}, got {kind!r}")

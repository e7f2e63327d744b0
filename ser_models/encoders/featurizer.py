"""Layer featurizer: one hidden state, or a learned softmax-weighted sum of all of them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ser_models.exceptions import ConfigError, EncoderError


class LayerFeaturizer(nn.Module):
    """Pick one encoder layer or learn a softmax-weighted sum over all L layers.

    Args:
        num_layers: L, hidden states the encoder returns.
        layer: ``None`` learns the weights (initialised to zeros, i.e. a plain average); an int picks that
            layer (negative counts from the end, as in Python).

    The weighted sum is linear in the hidden states, so it commutes with mean pooling over frames:
    ``forward_pooled(mean_t(h))`` equals ``mean_t(forward(h))``. The frozen-encoder feature cache stores
    per-layer means ``[L, D]`` and relies on this.

    References:
        Yang et al., 2021. SUPERB: Speech processing Universal PERformance Benchmark. Interspeech.
    """

    def __init__(self, num_layers: int, layer: int | None = None):
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"LayerFeaturizer needs num_layers >= 1, got {num_layers}")
        if layer is not None and not -num_layers <= layer < num_layers:
            raise ConfigError(f"model.featurizer_layer={layer} is out of range for an encoder with {num_layers} "
                              f"hidden states (use {-num_layers}..{num_layers - 1}, or null for a weighted sum)")
        self.num_layers = num_layers
        self.layer = None if layer is None else layer % num_layers
        self.layer_weights = nn.Parameter(torch.zeros(num_layers)) if layer is None else None

    def weights(self) -> torch.Tensor:
        """``[L]`` the layer weights in use (softmax of the learned logits, or one-hot)."""
        if self.layer_weights is not None:
            return torch.softmax(self.layer_weights, dim=0)
        w = torch.zeros(self.num_layers)
        w[self.layer] = 1.0
        return w

    def forward(self, hidden_states: Sequence[torch.Tensor]) -> torch.Tensor:
        """Combine frame-level hidden states.

        Args:
            hidden_states: L tensors ``[B, F, D]``.

        Returns:
            ``[B, F, D]``.
        """
        if len(hidden_states) != self.num_layers:
            raise EncoderError(f"LayerFeaturizer built for {self.num_layers} layers got {len(hidden_states)} "
                               "hidden states (layerdrop must be 0)")
        if self.layer is not None:
            return hidden_states[self.layer]
        w = torch.softmax(self.layer_weights, dim=0)
        return torch.einsum("l,lbfd->bfd", w.to(hidden_states[0].dtype), torch.stack(tuple(hidden_states)))

    def forward_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """Combine per-layer utterance vectors.

        Args:
            pooled: ``[B, L, D]`` (e.g. per-layer masked means over frames); with a fixed layer ``[B, S, D]``
                for any ``S`` above it (the first S hidden states).

        Returns:
            ``[B, D]``.
        """
        # A fixed layer also reads a cache of the first hidden states alone (scoring.cache_keys.cache_states).
        fits = pooled.shape[1] == self.num_layers or (self.layer is not None and self.layer < pooled.shape[1])
        if pooled.dim() != 3 or not fits:
            raise EncoderError(f"forward_pooled expects [B, {self.num_layers}, D], got {tuple(pooled.shape)}")
        if self.layer is not None:
            return pooled[:, self.layer]
        w = torch.softmax(self.layer_weights, dim=0)
        return torch.einsum("l,bld->bd", w.to(pooled.dtype), pooled)

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}, layer={'weighted' if self.layer is None else self.layer}"

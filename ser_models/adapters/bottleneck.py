"""Bottleneck adapters and layer gates, added to an encoder's transformer layers with forward hooks.

Neither ``transformers`` nor ``peft`` offers these for all four families (``adapter_attn_dim`` builds one
adapter at the end of each stable-layer-norm wav2vec2 / HuBERT layer, from the config, for MMS language
adapters; WavLM and Whisper have none), so they are small modules here:

- :class:`BottleneckAdapter` (Houlsby et al., 2019): ``h + scale * up(gelu(down(LayerNorm(h))))`` on the
  output of a layer's attention and/or feed-forward block, before the layer's residual connection. ``up``
  starts at zero, so an adapted encoder starts out computing exactly what the pretrained one computes.
- :class:`LayerGate`: a learned gate ``2 * sigmoid(w)`` (one scalar, or one per channel) on each transformer
  layer's output; ``w`` starts at zero, i.e. a gate of 1. A gate below 1 damps what a layer passes on to the
  next layers and to the featurizer.

The modules are registered as children of the layer they adapt (so they are in ``state_dict`` and a
trainable-only checkpoint reloads them by name) and hooked on with bound methods (so ``copy.deepcopy`` and
pickling keep each hook pointing at its own module).
"""

from __future__ import annotations

import torch
from torch import nn

from ser_models.encoders.encoder import Encoder

#: Family -> (path of the transformer layer list in ``hf_model``, {block: child module whose output it adapts}).
LAYER_BLOCKS: dict[str, tuple[str, dict[str, str]]] = {
    "wav2vec2": ("encoder.layers", {"attention": "attention", "feed_forward": "feed_forward"}),
    "hubert": ("encoder.layers", {"attention": "attention", "feed_forward": "feed_forward"}),
    "wavlm": ("encoder.layers", {"attention": "attention", "feed_forward": "feed_forward"}),
    # Whisper's feed-forward is fc1 -> activation -> fc2 inline in the layer: fc2's output is the block's.
    "whisper": ("layers", {"attention": "self_attn", "feed_forward": "fc2"}),
}
#: Name prefixes of the children this module registers (what ``is_adapter_parameter`` recognises).
BOTTLENECK_PREFIX = "ser_bottleneck_"
GATE_NAME = "ser_gate"


def _replace_first(output, value: torch.Tensor):
    """``output`` with its hidden states replaced: HF blocks return a tensor or a tuple led by one."""
    if isinstance(output, tuple):
        return (value, *output[1:])
    return value


def _first(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


class BottleneckAdapter(nn.Module):
    """Houlsby adapter on a block's output.

    Args:
        dim: D, the hidden size.
        bottleneck: the down-projection's width (D -> bottleneck -> D).
        scale: multiplies the adapter's branch.
    """

    def __init__(self, dim: int, bottleneck: int, scale: float = 1.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        self.scale = float(scale)
        nn.init.zeros_(self.up.weight)  # identity at the start: the pretrained encoder's outputs are kept
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``[B, F, D]`` -> ``[B, F, D]``."""
        return h + self.scale * self.up(nn.functional.gelu(self.down(self.norm(h))))

    def hook(self, module: nn.Module, inputs, output):
        return _replace_first(output, self(_first(output)))


class LayerGate(nn.Module):
    """A learned gate in (0, 2) on a layer's output, 1 at initialisation.

    Args:
        dim: D, the hidden size.
        per_channel: one gate per channel (D of them) instead of one per layer.
    """

    def __init__(self, dim: int, per_channel: bool = False):
        super().__init__()
        self.logit = nn.Parameter(torch.zeros(dim if per_channel else 1))

    def gate(self) -> torch.Tensor:
        """``[D]`` or ``[1]``: the current gate values."""
        return 2.0 * torch.sigmoid(self.logit)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``[B, F, D]`` -> ``[B, F, D]``."""
        return h * self.gate().to(h.dtype)

    def hook(self, module: nn.Module, inputs, output):
        return _replace_first(output, self(_first(output)))


def transformer_layers(encoder: Encoder) -> list[nn.Module]:
    """The encoder's transformer layers, in order."""
    module: nn.Module = encoder.hf_model
    for part in LAYER_BLOCKS[encoder.family][0].split("."):
        module = getattr(module, part)
    return list(module)


def _selected(encoder: Encoder, layers: list[int] | None) -> list[nn.Module]:
    """The chosen transformer layers (None = all); ``apply_adapter`` has checked the indexes."""
    all_layers = transformer_layers(encoder)
    return all_layers if layers is None else [all_layers[i] for i in layers]


def add_bottlenecks(encoder: Encoder, dim: int, blocks: list[str], scale: float,
                    layers: list[int] | None = None) -> int:
    """Hook a :class:`BottleneckAdapter` onto each chosen block of each chosen layer.

    Args:
        encoder: the encoder (mutated).
        dim: bottleneck width.
        blocks: a subset of :data:`~ser_models.adapters.config.BOTTLENECK_BLOCKS`.
        scale: the adapters' branch scale.
        layers: transformer layer indexes (None = all).

    Returns:
        The number of adapters added.
    """
    children = LAYER_BLOCKS[encoder.family][1]
    hidden = encoder.hidden_size
    n = 0
    for layer in _selected(encoder, layers):
        for block in blocks:
            adapter = BottleneckAdapter(hidden, dim, scale)
            layer.add_module(f"{BOTTLENECK_PREFIX}{block}", adapter)
            getattr(layer, children[block]).register_forward_hook(adapter.hook)
            n += 1
    return n


def add_gates(encoder: Encoder, per_channel: bool, layers: list[int] | None = None) -> int:
    """Hook a :class:`LayerGate` onto the output of each chosen transformer layer; returns how many."""
    n = 0
    for layer in _selected(encoder, layers):
        gate = LayerGate(encoder.hidden_size, per_channel)
        layer.add_module(GATE_NAME, gate)
        layer.register_forward_hook(gate.hook)
        n += 1
    return n

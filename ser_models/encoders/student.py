"""A smaller student built from a teacher encoder's own architecture: its first layers, narrower feed-forwards.

The student keeps the teacher's front end (CNN or Whisper's convolutions and positions), its width D and its
first ``layers`` transformer layers, each with only a fraction of its feed-forward units. It starts from the
teacher's weights (DistilHuBERT initialises its layers the same way); the kept feed-forward units are those
with the largest ``||w_in[i]|| * ||w_out[:, i]||``, the units that move the residual stream most. Distillation
(:mod:`ser_models.pretraining.distill`) then trains it to predict several teacher layers.

References:
    Chang, Yang, Lee, 2022. DistilHuBERT: Speech Representation Learning by Layer-wise Distillation of
    Hidden-Unit BERT. ICASSP.
"""

from __future__ import annotations

import torch
from torch import nn

from ser_models.exceptions import ConfigError


def _layers_and_ffn(family: str, hf_model: nn.Module):
    """The transformer layer list and, per layer, its (in, out) feed-forward Linear attribute paths."""
    if family == "whisper":
        return hf_model.layers, ("fc1", "fc2")
    return hf_model.encoder.layers, ("feed_forward.intermediate_dense", "feed_forward.output_dense")


def _get(module: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        module = getattr(module, part)
    return module


def _set(module: nn.Module, path: str, value: nn.Module) -> None:
    *parents, last = path.split(".")
    for part in parents:
        module = getattr(module, part)
    setattr(module, last, value)


@torch.no_grad()
def shrink_encoder(family: str, hf_config, hf_model: nn.Module, layers: int, ffn_ratio: float) -> None:
    """Cut ``hf_model`` (in place) to its first ``layers`` transformer layers with ``ffn_ratio`` of their
    feed-forward units, and update ``hf_config`` to match (so the encoder reports L = layers + 1).

    Args:
        family: ``wav2vec2`` | ``hubert`` | ``wavlm`` | ``whisper``.
        hf_config: the model's config (``num_hidden_layers`` / ``intermediate_size`` or Whisper's
            ``encoder_layers`` / ``encoder_ffn_dim`` are rewritten).
        hf_model: the HF base model (a ``WhisperEncoder`` for Whisper).
        layers: transformer layers kept (1..the teacher's).
        ffn_ratio: fraction of feed-forward units kept, in (0, 1].

    Raises:
        ConfigError: ``layers`` or ``ffn_ratio`` out of range (naming ``model.encoder.student_*``).
    """
    blocks, (fc_in, fc_out) = _layers_and_ffn(family, hf_model)
    total = len(blocks)
    if not 1 <= layers <= total:
        raise ConfigError(f"model.encoder.student_layers={layers} must be in 1..{total} (the teacher's layers)")
    if not 0 < ffn_ratio <= 1:
        raise ConfigError(f"model.encoder.student_ffn_ratio must be in (0, 1], got {ffn_ratio}")
    kept = nn.ModuleList(list(blocks)[:layers])
    width = None
    for block in kept:
        w_in, w_out = _get(block, fc_in), _get(block, fc_out)
        units = w_in.out_features
        width = max(1, round(units * ffn_ratio))
        if width == units:
            continue
        score = w_in.weight.norm(dim=1) * w_out.weight.norm(dim=0)  # [units]
        keep = torch.sort(torch.topk(score, width).indices).values
        new_in = nn.Linear(w_in.in_features, width, bias=w_in.bias is not None)
        new_out = nn.Linear(width, w_out.out_features, bias=w_out.bias is not None)
        new_in.weight.copy_(w_in.weight[keep])
        if w_in.bias is not None:
            new_in.bias.copy_(w_in.bias[keep])
        new_out.weight.copy_(w_out.weight[:, keep])
        if w_out.bias is not None:
            new_out.bias.copy_(w_out.bias)
        _set(block, fc_in, new_in.to(w_in.weight.dtype))
        _set(block, fc_out, new_out.to(w_out.weight.dtype))
    if family == "whisper":
        hf_model.layers = kept
        hf_config.encoder_layers = layers
        if width is not None:
            hf_config.encoder_ffn_dim = width
    else:
        hf_model.encoder.layers = kept
        hf_config.num_hidden_layers = layers
        if width is not None:
            hf_config.intermediate_size = width
    hf_model.config = hf_config

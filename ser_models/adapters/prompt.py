"""Embedding prompt: learned vectors prepended to the CNN features before the transformer layers.

For wav2vec2, HuBERT and WavLM the HF model hands the projected CNN features (``[B, F, D]``) and the frame
mask (``[B, F]``) to its ``encoder`` (positional convolution + transformer layers). A forward pre-hook on that
module prepends P learned vectors (and P valid frames to the mask). Forward hooks strip the P prompt frames
again: from the encoder's last hidden state, and from the hidden states the outer model returns (transformers
5 records them with hooks on the layers). What the rest of the model sees keeps one frame per 20 ms of audio
and the frame lengths stay right; the prompt acts through attention only.

Whisper is not supported: its encoder adds the positional table and runs the layers inside one ``forward``
with no module boundary in between, and it encodes fixed 30 s windows.
"""

from __future__ import annotations

import torch
from torch import nn

from ser_models.encoders.encoder import Encoder
from ser_models.exceptions import AdapterError

PROMPT_NAME = "ser_prompt"
PROMPT_FAMILIES = ("wav2vec2", "hubert", "wavlm")


class PromptEmbedding(nn.Module):
    """P learned vectors in front of the encoder's input frames.

    Args:
        length: P, prompt vectors.
        dim: D, the hidden size.
    """

    def __init__(self, length: int, dim: int):
        super().__init__()
        self.length = int(length)
        self.vectors = nn.Parameter(torch.empty(self.length, dim))
        nn.init.normal_(self.vectors, std=0.02)  # small next to the layer-normed CNN features

    def prepend(self, module: nn.Module, args: tuple, kwargs: dict):
        """Forward pre-hook: ``hidden_states [B, F, D] -> [B, P+F, D]``, ``attention_mask [B, F] -> [B, P+F]``."""
        if args:
            hidden, args = args[0], args[1:]
        else:
            hidden = kwargs.pop("hidden_states")
        prompt = self.vectors.to(hidden.dtype).unsqueeze(0).expand(hidden.shape[0], -1, -1)
        hidden = torch.cat([prompt, hidden], dim=1)
        mask = kwargs.get("attention_mask")
        if mask is not None:
            ones = torch.ones(mask.shape[0], self.length, dtype=mask.dtype, device=mask.device)
            kwargs["attention_mask"] = torch.cat([ones, mask], dim=1)
        return (hidden, *args), kwargs

    def strip_inner(self, module: nn.Module, args: tuple, kwargs: dict, output):
        """Forward hook on the inner encoder: its last hidden state (which the outer model returns) and any
        hidden states lose the P prompt frames."""
        output.last_hidden_state = output.last_hidden_state[:, self.length:]
        return self.strip_outer(module, args, kwargs, output)

    def strip_outer(self, module: nn.Module, args: tuple, kwargs: dict, output):
        """Forward hook on the outer model: hidden states that still hold the P prompt frames lose them."""
        p, frames = self.length, output.last_hidden_state.shape[1]
        hidden = getattr(output, "hidden_states", None)
        if hidden is not None:
            output.hidden_states = tuple(h[:, p:] if h.shape[1] == frames + p else h for h in hidden)
        return output


def add_prompt(encoder: Encoder, length: int) -> PromptEmbedding:
    """Register a :class:`PromptEmbedding` on ``encoder.hf_model.encoder`` and hook it on.

    Raises:
        AdapterError: the encoder's family has no place for a prompt (Whisper).
    """
    if encoder.family not in PROMPT_FAMILIES:
        raise AdapterError(f"model.adapter.add=[prompt] needs a {'/'.join(PROMPT_FAMILIES)} encoder (learned "
                           f"vectors before the transformer layers); the {encoder.family} encoder has no such "
                           "input: drop prompt from model.adapter.add")
    outer = encoder.hf_model
    inner = outer.encoder
    prompt = PromptEmbedding(length, encoder.hidden_size)
    inner.add_module(PROMPT_NAME, prompt)
    inner.register_forward_pre_hook(prompt.prepend, with_kwargs=True)
    inner.register_forward_hook(prompt.strip_inner, with_kwargs=True)
    # transformers 5 collects hidden_states with hooks on the layers and returns them from the outer model
    # (``capture_outputs``), so they are stripped there too.
    outer.register_forward_hook(prompt.strip_outer, with_kwargs=True)
    return prompt

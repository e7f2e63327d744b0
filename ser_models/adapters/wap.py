"""The WAP-Transformer: a weighted average of a frozen encoder's hidden states, enriched by a small Transformer.

It runs on per-layer frame features (``[B, F, L, D]``, e.g. from the frame cache), so training it never needs
an encoder forward. Pre-training (``ser_models.pretraining.adapter_pretrain``) teaches it from the unlabelled
pool; fine-tuning trains it with attentive statistics pooling and the emotion head.

Weights live in ``wap.safetensors`` next to ``wap.json`` (the architecture and the encoder [L, D] they fit);
the module's own :class:`LayerStandardizer` holds the pool statistics its input was standardised with at
pre-training, so a checkpoint is self-contained.

References:
    The "adapter with local attributes" source paper (WAP-Transformer, teacher-student adapter, local
    attributes, statistical attentive pooling). Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    Baevski et al., "wav2vec 2.0", NeurIPS 2020 (convolutional positional embedding).
"""

from __future__ import annotations

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from ser_models.adapters.config import WapConfig
from ser_models.encoders.standardizer import LayerStandardizer
from ser_models.exceptions import CheckpointError
from ser_models.heads.pooling import frame_mask as valid_frames
from ser_models.io import exists, read_bytes, read_json, write_bytes_atomic, write_json_atomic

WEIGHTS_FILE = "wap.safetensors"
INFO_FILE = "wap.json"


class WAPTransformer(nn.Module):
    """Weighted average of L hidden states -> projection -> (mask embedding) -> Transformer blocks.

    Args:
        num_layers: L hidden states of the encoder.
        in_dim: D, their width.
        cfg: the adapter's architecture (``model.wap``).
    """

    def __init__(self, num_layers: int, in_dim: int, cfg: WapConfig):
        super().__init__()
        self.num_layers, self.in_dim, self.cfg = num_layers, in_dim, cfg
        self.output_dim = cfg.dim
        self.standardizer = LayerStandardizer(num_layers, in_dim)
        self.layer_logits = nn.Parameter(torch.zeros(num_layers))
        self.in_norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, cfg.dim)
        self.mask_embedding = nn.Parameter(torch.randn(cfg.dim) * 0.02)
        self.pos_conv = (nn.Conv1d(cfg.dim, cfg.dim, cfg.pos_kernel, padding=cfg.pos_kernel // 2, groups=cfg.dim)
                         if cfg.pos_kernel else None)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(cfg.dim, cfg.heads, cfg.ff_dim, cfg.dropout, activation="gelu",
                                       batch_first=True, norm_first=True) for _ in range(cfg.depth))
        self.out_norm = nn.LayerNorm(cfg.dim)

    def layer_weights(self) -> torch.Tensor:
        """``[L]`` softmax weights of the hidden states."""
        return torch.softmax(self.layer_logits, dim=0)

    def forward(self, frames: torch.Tensor, frame_lengths: torch.Tensor, mask: torch.Tensor | None = None,
                return_blocks: bool = False):
        """Enrich frames.

        Args:
            frames: ``[B, F, L, D]`` per-layer encoder frames (raw: standardised here), zero-padded.
            frame_lengths: ``[B]`` valid frames.
            mask: ``[B, F]`` bool, frames replaced by the mask embedding (pre-training), or None.
            return_blocks: also return every block's output.

        Returns:
            ``[B, F, dim]`` (padding frames zeroed); with ``return_blocks`` also a list of ``depth`` tensors
            ``[B, F, dim]`` (each block's output, before the final LayerNorm).
        """
        x = self.standardizer.forward_pooled(frames)  # affine per layer: [B, F, L, D]
        x = torch.einsum("bfld,l->bfd", x, self.layer_weights().to(x.dtype))
        x = self.proj(self.in_norm(x))
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_embedding.to(x.dtype), x)
        valid = valid_frames(frame_lengths, x.shape[1])
        x = x * valid[..., None].to(x.dtype)
        if self.pos_conv is not None:
            x = x + nn.functional.gelu(self.pos_conv(x.transpose(1, 2)).transpose(1, 2))
        pad = ~valid
        blocks = []
        for block in self.blocks:
            x = block(x, src_key_padding_mask=pad)
            x = x.masked_fill(pad[..., None], 0.0)
            blocks.append(x)
        out = self.out_norm(x).masked_fill(pad[..., None], 0.0)
        return (out, blocks) if return_blocks else out

    def extra_repr(self) -> str:
        return f"layers={self.num_layers}, in_dim={self.in_dim}, {self.cfg.architecture()}"


def save_wap(module: WAPTransformer, directory: str, info: dict | None = None) -> str:
    """Write ``directory/wap.safetensors`` (every parameter and the standardizer's buffers) and ``wap.json``
    (architecture, [L, D], ``info``); weights first, so a reader that finds the json finds the weights.
    Returns the weights path."""
    base = str(directory).rstrip("/")
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    write_bytes_atomic(f"{base}/{WEIGHTS_FILE}", save_safetensors_bytes(state, metadata={"format": "pt"}))
    write_json_atomic(f"{base}/{INFO_FILE}", {"architecture": module.cfg.architecture(),
                                              "num_layers": module.num_layers, "in_dim": module.in_dim,
                                              **(info or {})})
    return f"{base}/{WEIGHTS_FILE}"


def load_wap_weights(module: WAPTransformer, path: str) -> dict:
    """Load a :func:`save_wap` checkpoint (``path`` = its ``wap.safetensors``) into ``module``; returns its info.

    Raises:
        CheckpointError: a file is missing, or the architecture or [L, D] differ from ``module``'s.
    """
    info_path = f"{str(path).rsplit('/', 1)[0]}/{INFO_FILE}" if "/" in str(path) else INFO_FILE
    for p in (path, info_path):
        if not exists(p):
            raise CheckpointError(f"model.wap.checkpoint: {p} not found (an adapter pre-training run writes "
                                  f"adapter/{WEIGHTS_FILE} and adapter/{INFO_FILE})")
    info = read_json(info_path)
    want = {"architecture": module.cfg.architecture(), "num_layers": module.num_layers, "in_dim": module.in_dim}
    got = {k: info.get(k) for k in want}
    if got != want:
        raise CheckpointError(f"model.wap.checkpoint {path} was pre-trained as {got}, but model.wap and the encoder "
                              f"give {want}: set model.wap.* to the pre-trained architecture")
    try:
        state = load_safetensors_bytes(read_bytes(path))
        module.load_state_dict(state, strict=True)
    except Exception as exc:
        raise CheckpointError(f"cannot load {path}: {type(exc).__name__}: {exc}") from exc
    return info

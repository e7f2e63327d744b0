"""Public fake-data builders for tests (tiny models, synthetic waveforms). Never downloads anything."""

from __future__ import annotations

import torch

from ser_models.adapters import AdapterConfig
from ser_models.encoders import EncoderConfig
from ser_models.model import ModelConfig


def tiny_model_config(source: str = "tiny-wav2vec2", adapter: str = "lora", *, pooling: str = "mean",
                      featurizer_layer: int | None = None, labels: list[str] | None = None,
                      normalize_waveform: bool = True, head_hidden: int = 16, head_dropout: float = 0.1,
                      **adapter_kwargs) -> ModelConfig:
    """A :class:`ModelConfig` over a tiny random encoder (``tiny-wav2vec2`` | ``tiny-hubert`` | ``tiny-wavlm``).

    Args:
        source: tiny preset name (or any ``model.encoder.source``).
        adapter: ``model.adapter.kind``.
        pooling, featurizer_layer, labels, head_hidden, head_dropout: the ``ModelConfig`` fields.
        normalize_waveform: ``model.encoder.normalize_waveform``.
        **adapter_kwargs: other :class:`AdapterConfig` fields (``r``, ``target_modules``, ...).
    """
    return ModelConfig(
        encoder=EncoderConfig(source=source, normalize_waveform=normalize_waveform),
        adapter=AdapterConfig(kind=adapter, **adapter_kwargs),
        featurizer_layer=featurizer_layer,
        pooling=pooling,
        head_hidden=head_hidden,
        head_dropout=head_dropout,
        labels=list(labels) if labels is not None else ["neutral", "happy", "angry", "sad"],
    )


def random_waveforms(batch: int = 2, seconds: float = 0.5, seed: int = 0,
                     min_fraction: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded random clips of different lengths at 16 kHz.

    Clip 0 is ``seconds`` long; the others have random lengths in ``[min_fraction, 1] * seconds``. The audio
    is a mix of a few sinusoids and noise, so it has structure without being trivially constant.

    Returns:
        ``(wavs [B, T] float32, lengths [B] int64 samples)``.
    """
    gen = torch.Generator().manual_seed(seed)
    n = int(round(seconds * 16_000))
    lengths = torch.full((batch,), n, dtype=torch.long)
    if batch > 1:
        frac = min_fraction + (1 - min_fraction) * torch.rand(batch - 1, generator=gen)
        lengths[1:] = (frac * n).long().clamp(min=1)
    t = torch.arange(n, dtype=torch.float32) / 16_000
    freqs = 100 + 400 * torch.rand(batch, 3, generator=gen)
    wavs = torch.sin(2 * torch.pi * freqs[:, :, None] * t).sum(1) * 0.1
    wavs = wavs + 0.05 * torch.randn(batch, n, generator=gen)
    wavs = wavs * (torch.arange(n)[None, :] < lengths[:, None])
    return wavs.float(), lengths

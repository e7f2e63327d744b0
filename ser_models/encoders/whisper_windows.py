"""Whisper encoder windows cut to the audio they hold, and the encoder run on them.

``WhisperEncoder`` refuses any input but its full window (30 s for OpenAI's checkpoints, 8 s for Smart Turn).
For a 3 s clip that is 2.7-10x the compute of the audio itself, spent on attention over padding. In ``trim``
mode each window is cut to the audio it holds, rounded up to a bucket (1 s by default), and the encoder is run
here layer by layer on the first ``n`` positional embeddings. A clip's windows depend on its own length only,
never on the other clips of its batch, so its features stay batch-invariant; windows of the same length are
encoded together.

Trimming changes what the encoder sees (less padding to attend to than Whisper saw in pre-training): on the
bundled encoder it cost a fraction of a UA point, so ``full`` stays the default (docs/encoders.md, "Whisper
encoders", has the measurement).

The log-mel front end lives here too. This module imports only torch and ``transformers.audio_utils``, so
``bench/gpu_check.py`` can load it by file on a machine without the platform's other dependencies.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers.audio_utils import mel_filter_bank

#: Whisper reads 16 kHz audio.
SAMPLE_RATE = 16_000
#: STFT of Whisper's front end: 25 ms window, 10 ms hop at 16 kHz.
N_FFT = 400
HOP_LENGTH = 160
#: 16 kHz samples per Whisper encoder frame (10 ms mel hop x conv2 stride 2).
SAMPLES_PER_FRAME = 2 * HOP_LENGTH


def whisper_mel_filters(num_mel_bins: int) -> torch.Tensor:
    """``[N_FFT // 2 + 1, num_mel_bins]`` Slaney mel filters, 0-8 kHz, as ``WhisperFeatureExtractor`` builds."""
    filters = mel_filter_bank(num_frequency_bins=1 + N_FFT // 2, num_mel_filters=num_mel_bins, min_frequency=0.0,
                              max_frequency=8000.0, sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney")
    return torch.from_numpy(filters).float()


def log_mel_spectrogram(wavs: torch.Tensor, mel_filters: torch.Tensor) -> torch.Tensor:
    """Whisper's log-mel features of fixed-length windows.

    Args:
        wavs: ``[M, W]`` float waveforms at 16 kHz (W a multiple of 160 samples).
        mel_filters: ``[201, n_mels]`` from :func:`whisper_mel_filters`.

    Returns:
        ``[M, n_mels, W // 160]`` float32, roughly in [-1, 1]; each window is floored at its own maximum - 8
        (log10 units), as in ``WhisperFeatureExtractor``.
    """
    # Always float32, also under bf16 autocast: the power spectrum spans ~10 decades before the log, which an
    # 8-bit mantissa would coarsen before the encoder ever saw it.
    with torch.autocast(device_type=wavs.device.type, enabled=False):
        window = torch.hann_window(N_FFT, device=wavs.device)
        stft = torch.stft(wavs.float(), N_FFT, HOP_LENGTH, window=window, return_complex=True)
        power = stft[..., :-1].abs() ** 2  # [M, 201, W // 160]: the extra centred frame is dropped
        mel = torch.einsum("fm,bft->bmt", mel_filters.to(power.device).float(), power)
        log_spec = torch.clamp(mel, min=1e-10).log10()
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        return (log_spec + 4.0) / 4.0


def window_frames(lengths: list[int], window: int, bucket: int) -> list[list[int]]:
    """Encoder frames of each window of each clip, trimmed to the audio it holds.

    Args:
        lengths: valid 16 kHz samples per clip (B values).
        window: frames per full window (``max_source_positions``).
        bucket: frames a trimmed window is rounded up to (50 = 1 s); ``window`` or more = no trimming.

    Returns:
        Per clip, the frame count of each of its ``ceil(frames / window)`` windows (at least one): every window
        but the last is full; the last holds the clip's remaining frames rounded up to ``bucket``, at most
        ``window``.
    """
    bucket = max(1, min(int(bucket), int(window)))
    out = []
    for length in lengths:
        frames = max(1, math.ceil(int(length) / SAMPLES_PER_FRAME))
        full, rest = divmod(frames, window)
        sizes = [window] * full
        if rest:
            sizes.append(min(window, math.ceil(rest / bucket) * bucket))
        out.append(sizes)
    return out


def encode(hf_encoder: nn.Module, features: torch.Tensor) -> list[torch.Tensor]:
    """Run a ``WhisperEncoder`` on log-mel features of ``n <= max_source_positions`` frames.

    The same computation as ``WhisperEncoder.forward`` (conv front end, positional embeddings, dropout and
    layer drop in training, the layers, the closing layer norm), but on the first ``n`` positions rather than
    the whole window.

    Args:
        hf_encoder: a ``transformers`` ``WhisperEncoder`` (or a wrapper that forwards its attributes).
        features: ``[M, n_mels, 2 * n]`` log-mel frames.

    Returns:
        ``layers + 1`` hidden states ``[M, n, D]``: the front end's output, each layer's output, the last one
        after the closing layer norm (what ``output_hidden_states=True`` returns).
    """
    x = nn.functional.gelu(hf_encoder.conv1(features))
    x = nn.functional.gelu(hf_encoder.conv2(x)).permute(0, 2, 1)  # [M, n, D]
    positions = hf_encoder.embed_positions.weight
    if x.shape[1] > positions.shape[0]:
        raise ValueError(f"Whisper window of {x.shape[1]} frames exceeds the encoder's {positions.shape[0]}")
    x = x + positions[: x.shape[1]].to(x.dtype)
    x = nn.functional.dropout(x, p=float(hf_encoder.dropout), training=hf_encoder.training)
    states = [x]
    layerdrop = float(getattr(hf_encoder, "layerdrop", 0.0))
    for layer in hf_encoder.layers:
        if not (hf_encoder.training and layerdrop > 0 and torch.rand([]) < layerdrop):
            out = layer(x, None)
            x = out[0] if isinstance(out, tuple) else out  # transformers 4 returns a tuple, 5 a tensor
        states.append(x)
    states[-1] = hf_encoder.layer_norm(x)
    return states

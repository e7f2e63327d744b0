"""MFCC frames aligned with a speech encoder's frames (the targets of HuBERT's first clustering iteration).

Pure torch (accepts numpy too), no torchaudio. Frame ``i`` covers 16 kHz samples ``[320 i, 320 i + 400)``
(25 ms window, 20 ms hop): the receptive field and stride of the wav2vec2 / HuBERT / WavLM CNN, so MFCC
frame ``i`` describes the same audio as encoder frame ``i``. Pass the encoder's ``frame_lengths`` as
``num_frames`` and the counts match exactly; frames that run past the clip see zeros.

References:
    Hsu et al., "HuBERT: Self-Supervised Speech Representation Learning by Masked Prediction of Hidden
    Units", IEEE/ACM TASLP 2021 (39-d MFCC + deltas clustered with k-means as first targets).
"""

from __future__ import annotations

import math

import numpy as np
import torch

SAMPLE_RATE = 16_000
WIN_SAMPLES = 400  # 25 ms
HOP_SAMPLES = 320  # 20 ms = the encoders' total conv stride
N_FFT = 512
N_MELS = 23  # Kaldi's default for MFCC
N_CEPS = 13
PREEMPHASIS = 0.97
#: Dimensions of :func:`mfcc` output with deltas: 13 cepstra + 13 deltas + 13 delta-deltas.
MFCC_DIM = 3 * N_CEPS


def default_num_frames(lengths: torch.Tensor) -> torch.Tensor:
    """[B] frames of clips of ``lengths`` [B] samples: ``floor((n - 400) / 320) + 1`` (0 if shorter)."""
    lengths = torch.as_tensor(lengths).long()
    return torch.where(lengths >= WIN_SAMPLES, (lengths - WIN_SAMPLES) // HOP_SAMPLES + 1,
                       torch.zeros_like(lengths))


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * np.expm1(mel / 1127.0)


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE,
                   low_hz: float = 20.0, high_hz: float | None = None) -> torch.Tensor:
    """Triangular filters equally spaced on the mel scale: ``[n_fft // 2 + 1, n_mels]`` float32."""
    high_hz = sample_rate / 2 if high_hz is None else high_hz
    edges = _mel_to_hz(np.linspace(_hz_to_mel(low_hz), _hz_to_mel(high_hz), n_mels + 2))
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (bins[None, :] - left) / (centre - left)
    fall = (right - bins[None, :]) / (right - centre)
    fb = np.clip(np.minimum(rise, fall), 0.0, None)
    return torch.from_numpy(fb.T.astype(np.float32))


def dct_matrix(n_mels: int = N_MELS, n_ceps: int = N_CEPS) -> torch.Tensor:
    """Orthonormal DCT-II basis ``[n_mels, n_ceps]``."""
    n = np.arange(n_mels)[:, None]
    k = np.arange(n_ceps)[None, :]
    basis = np.cos(math.pi / n_mels * (n + 0.5) * k) * math.sqrt(2.0 / n_mels)
    basis[:, 0] /= math.sqrt(2.0)
    return torch.from_numpy(basis.astype(np.float32))


def deltas(feats: torch.Tensor, frame_lengths: torch.Tensor, window: int = 2) -> torch.Tensor:
    """Regression deltas over time, each clip's edges replicated inside its own valid frames.

    Args:
        feats: ``[B, F, D]``.
        frame_lengths: ``[B]`` valid frames per clip (padding is never read into a valid frame's delta).

    Returns:
        ``[B, F, D]``.
    """
    b, f, d = feats.shape
    t = torch.arange(f, device=feats.device)[None, :]
    last = (frame_lengths.to(feats.device).long() - 1).clamp(min=0)[:, None]
    out = torch.zeros_like(feats)
    for k in range(1, window + 1):
        ahead = torch.minimum(t + k, last).clamp(min=0)
        behind = torch.minimum((t - k).clamp(min=0), last)
        gather = (lambda idx: torch.gather(feats, 1, idx[:, :, None].expand(b, f, d)))  # noqa: E731
        out = out + k * (gather(ahead) - gather(behind))
    return out / (2 * sum(k * k for k in range(1, window + 1)))


def mfcc(wavs: torch.Tensor | np.ndarray, lengths: torch.Tensor | np.ndarray,
         num_frames: torch.Tensor | np.ndarray | None = None, with_deltas: bool = True) -> torch.Tensor:
    """MFCCs (+ deltas) of a padded batch, frame-aligned with the encoders.

    Args:
        wavs: ``[B, T]`` float waveforms at 16 kHz (anything after ``lengths`` is ignored).
        lengths: ``[B]`` valid samples per clip.
        num_frames: ``[B]`` frames wanted per clip (pass ``EncoderOutput.frame_lengths``); default
            :func:`default_num_frames`. Frames past a clip's end read zeros.
        with_deltas: append deltas and delta-deltas (39-d output) as HuBERT did.

    Returns:
        ``[B, F, 39]`` (or ``[B, F, 13]``) float32 with ``F = max(num_frames)``; frames at or beyond
        ``num_frames[b]`` are zero.
    """
    wavs = torch.as_tensor(wavs, dtype=torch.float32)
    lengths = torch.as_tensor(lengths).long().to(wavs.device)
    frames_per_clip = default_num_frames(lengths) if num_frames is None else torch.as_tensor(num_frames).long()
    frames_per_clip = frames_per_clip.to(wavs.device)
    n_frames = int(frames_per_clip.max()) if len(frames_per_clip) else 0
    dim = MFCC_DIM if with_deltas else N_CEPS
    if n_frames == 0:
        return torch.zeros(wavs.shape[0], 0, dim)
    need = (n_frames - 1) * HOP_SAMPLES + WIN_SAMPLES
    x = wavs * (torch.arange(wavs.shape[1], device=wavs.device)[None, :] < lengths[:, None])
    x = torch.nn.functional.pad(x, (0, max(need - x.shape[1], 0)))[:, :need]
    frames = x.unfold(1, WIN_SAMPLES, HOP_SAMPLES)  # [B, F, 400]
    frames = frames - frames.mean(-1, keepdim=True)  # per-frame DC removal (Kaldi)
    frames = torch.cat([frames[..., :1] * (1 - PREEMPHASIS), frames[..., 1:] - PREEMPHASIS * frames[..., :-1]], -1)
    frames = frames * torch.hamming_window(WIN_SAMPLES, periodic=False, device=wavs.device)
    power = torch.fft.rfft(frames, n=N_FFT).abs().pow(2)  # [B, F, 257]
    mel = power @ mel_filterbank().to(wavs.device)
    # The floor keeps silent (all-zero) frames finite: log(0) would poison k-means.
    ceps = torch.log(mel.clamp(min=1e-10)) @ dct_matrix().to(wavs.device)  # [B, F, 13]
    if with_deltas:
        d1 = deltas(ceps, frames_per_clip)
        ceps = torch.cat([ceps, d1, deltas(d1, frames_per_clip)], dim=-1)
    valid = torch.arange(n_frames, device=wavs.device)[None, :] < frames_per_clip[:, None]
    return ceps * valid[..., None]

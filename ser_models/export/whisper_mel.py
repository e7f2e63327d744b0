"""Whisper's log-mel front end and window layout in numpy, for the exported Whisper graph.

The platform computes the log-mel features with ``torch.stft`` inside the model; ONNX export does not carry
that STFT faithfully, so the exported Whisper graph starts at the log-mel windows and the runtime computes them
here, without torch: the same centred, reflect-padded, periodic-Hann STFT (400 samples, hop 160), the last
frame dropped, Slaney mel filters (stored in the graph's metadata), ``log10``, each window floored at its
maximum - 8, then ``(x + 4) / 4`` (:func:`ser_models.encoders.whisper_windows.log_mel_spectrogram`).
"""

from __future__ import annotations

import numpy as np

N_FFT = 400
HOP_LENGTH = 160
SAMPLES_PER_FRAME = 2 * HOP_LENGTH


def log_mel(windows: np.ndarray, mel_filters: np.ndarray) -> np.ndarray:
    """``[M, W]`` float32 16 kHz windows -> ``[M, n_mels, W // 160]`` float32 log-mel features.

    Args:
        windows: M windows of W samples (W a multiple of 160).
        mel_filters: ``[201, n_mels]``.
    """
    x = np.pad(windows.astype(np.float64), ((0, 0), (N_FFT // 2, N_FFT // 2)), mode="reflect")
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic, as torch.hann_window
    frames = windows.shape[1] // HOP_LENGTH  # the centred STFT's extra last frame is dropped
    index = np.arange(N_FFT)[None, :] + HOP_LENGTH * np.arange(frames)[:, None]
    spec = np.fft.rfft(x[:, index] * hann, axis=-1)  # [M, frames, 201]
    power = np.abs(spec) ** 2
    mel = np.einsum("fm,btf->bmt", mel_filters.astype(np.float64), power)
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max(axis=(1, 2), keepdims=True) - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def window_layout(lengths: list[int], window_frames: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Each clip's windows, as the platform's Whisper encoder cuts them (``whisper_windows=full``).

    Args:
        lengths: valid 16 kHz samples per clip (B values).
        window_frames: encoder frames per window (``max_source_positions``).

    Returns:
        ``(windows, frame_mask)``: ``(clip, start sample)`` of each window holding a sample of its clip (M),
        and ``[M, window_frames]`` float32, 1 on frames within the clip's ``ceil(length / 320)`` frames.
    """
    window = window_frames * SAMPLES_PER_FRAME
    windows, masks = [], []
    for b, n in enumerate(lengths):
        valid = -(-int(n) // SAMPLES_PER_FRAME)
        for k in range(max(1, -(-int(n) // window))):
            windows.append((b, k * window))
            mask = np.zeros(window_frames, np.float32)
            mask[:max(0, min(window_frames, valid - k * window_frames))] = 1.0
            masks.append(mask)
    return windows, np.stack(masks)


def whisper_inputs(wavs: list[np.ndarray], window_frames: int, mel_filters: np.ndarray) -> dict[str, np.ndarray]:
    """The exported Whisper graph's inputs for B clips.

    Returns:
        ``features [M, n_mels, 2 * window_frames]``, ``frame_mask [M, window_frames]`` and ``assign [B, M]``
        (1 where window m belongs to clip b).
    """
    window = window_frames * SAMPLES_PER_FRAME
    layout, mask = window_layout([w.size for w in wavs], window_frames)
    cut = np.zeros((len(layout), window), np.float32)
    assign = np.zeros((len(wavs), len(layout)), np.float32)
    for m, (b, start) in enumerate(layout):
        piece = wavs[b][start:start + window]
        cut[m, :piece.size] = piece
        assign[b, m] = 1.0
    return {"features": log_mel(cut, mel_filters), "frame_mask": mask, "assign": assign}


__all__ = ["log_mel", "whisper_inputs", "window_layout"]

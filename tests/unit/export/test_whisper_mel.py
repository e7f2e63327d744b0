"""The numpy Whisper front end of the exported graph equals the platform's torch one."""

from __future__ import annotations

import numpy as np
import torch

from ser_models.encoders.whisper_windows import log_mel_spectrogram, whisper_mel_filters
from ser_models.export.whisper_mel import log_mel, window_layout


def test_log_mel_matches_torch_stft_front_end():
    rng = np.random.default_rng(0)
    windows = (rng.standard_normal((3, 32000)) * 0.1).astype(np.float32)
    windows[2, 20000:] = 0  # a zero-padded tail, as a clip's last window has
    filters = whisper_mel_filters(80)
    want = log_mel_spectrogram(torch.from_numpy(windows), filters).numpy()
    got = log_mel(windows, filters.numpy())
    assert got.shape == want.shape == (3, 80, 200)
    assert np.abs(got - want).max() < 1e-5


def test_window_layout_counts_started_frames_per_window():
    windows, mask = window_layout([320, 32001, 64000], window_frames=100)  # 100 frames = 32000 samples
    assert windows == [(0, 0), (1, 0), (1, 32000), (2, 0), (2, 32000)]
    assert mask.sum(1).tolist() == [1, 100, 1, 100, 100]

"""Generated audio for the format tests: two short recordings, one mono and one two-channel."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf


@pytest.fixture
def audio(tmp_path):
    """``{"mono": path, "stereo": path}``: 3 s of tones at 16 kHz (the two-channel file has a different tone per
    channel)."""
    rng = np.random.default_rng(0)
    t = np.arange(48000) / 16000
    folder = tmp_path / "wavs"
    folder.mkdir()
    mono = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    stereo = np.stack([mono, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)], axis=1)
    sf.write(folder / "mono.wav", mono, 16000, subtype="PCM_16")
    sf.write(folder / "stereo.wav", stereo, 16000, subtype="PCM_16")
    return {"mono": str(folder / "mono.wav"), "stereo": str(folder / "stereo.wav")}

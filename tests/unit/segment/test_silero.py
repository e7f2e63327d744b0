"""The batched Silero VAD against the wheel's own TorchScript model, and the thread-count trap."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ser_models.segment.silero import FRAME_SAMPLES, SileroVAD, model_file


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise with a voiced, syllable-modulated stretch in the middle third (16 kHz)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    x = 0.01 * rng.standard_normal(n)
    t = np.arange(n // 3) / 16000
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / 16000) / k for k in range(1, 12))
    x[n // 3: n // 3 + len(t)] += 0.2 * voiced * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def vad():
    return SileroVAD.from_wheel()


def test_probabilities_equal_the_stock_model_frame_by_frame(vad):
    x = speechlike(12.0)
    jit = torch.jit.load(str(model_file()))
    jit.reset_states()
    ref = []
    for i in range(0, len(x), FRAME_SAMPLES):
        chunk = torch.from_numpy(x[i:i + FRAME_SAMPLES])
        ref.append(jit(F.pad(chunk, (0, FRAME_SAMPLES - len(chunk))), 16000).item())
    ours = vad.probabilities(x)
    assert len(ours) == len(ref)
    np.testing.assert_allclose(ours, np.asarray(ref), atol=1e-4)
    assert ours.max() > 0.5 > ours[:100].max()  # it does find the voiced stretch, and only there


def test_blocks_and_batched_streams_equal_whole_signals(vad):
    a, b = speechlike(9.0, seed=1), speechlike(9.0, seed=2)[::-1].copy()
    state = vad.new_state(2)
    x = torch.from_numpy(np.stack([a, b])[:, : len(a) // FRAME_SAMPLES * FRAME_SAMPLES])
    block = FRAME_SAMPLES * 37  # blocks that are not a divisor of the signal
    out = torch.cat([vad(x[:, i:i + block], state) for i in range(0, x.shape[1], block)], dim=1).numpy()
    np.testing.assert_allclose(out[0], vad.probabilities(a)[: out.shape[1]], atol=1e-5)
    np.testing.assert_allclose(out[1], vad.probabilities(b)[: out.shape[1]], atol=1e-5)


def test_block_length_must_be_whole_frames(vad):
    with pytest.raises(ValueError, match="multiple of 512"):
        vad(torch.zeros(1, 1000), vad.new_state(1))


def test_loading_and_running_never_imports_silero_vad_nor_changes_the_thread_count():
    code = (
        "import sys, torch; torch.set_num_threads(2); import numpy as np\n"
        "from ser_models.segment.silero import SileroVAD\n"
        "v = SileroVAD.from_wheel(); v.probabilities(np.zeros(16000, np.float32))\n"
        "print(torch.get_num_threads(), 'silero_vad' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "False"]

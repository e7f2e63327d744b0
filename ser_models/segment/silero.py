"""Silero VAD, batched: the weights of the ``silero-vad`` wheel run over whole blocks of frames at once.

The wheel's TorchScript model takes one 32 ms frame (512 samples at 16 kHz, plus 64 samples of context) per
call and carries an LSTM state between calls, so a Python loop makes one call per frame (31 per second of
audio). Everything before the LSTM (an STFT as a convolution, four small convolutions) looks at one frame
only, so it runs here on every frame of a block in one batched call; the LSTM then runs over the block as one
sequence (``torch.nn.LSTM``), with its state carried to the next block, and several streams (the channels of
a call) share each call as a batch. The frame probabilities equal the stock model's to float precision (a
test checks this against the TorchScript model frame by frame).

The model file is found through the wheel's install location, **without importing the ``silero_vad``
package**: its ``__init__`` calls ``torch.set_num_threads(1)`` for the whole process.

References:
    Silero Team, "Silero VAD: pre-trained enterprise-grade Voice Activity Detector", 2024,
    https://github.com/snakers4/silero-vad (MIT licence).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ser_models.exceptions import ConfigError

#: The model's rate (Hz), frame and context lengths (samples): one probability per 32 ms frame.
VAD_SAMPLE_RATE = 16000
FRAME_SAMPLES = 512
CONTEXT_SAMPLES = 64
FRAME_SECONDS = FRAME_SAMPLES / VAD_SAMPLE_RATE
_JIT_FILE = "silero_vad.jit"
_PREFIX = "_model."  # the 16 kHz model inside the TorchScript file (``_model_8k.`` is the 8 kHz one)


def model_file(name: str = _JIT_FILE) -> Path:
    """Path of a model file inside the installed ``silero-vad`` wheel (the package is not imported).

    Raises:
        ConfigError: the wheel is not installed, or lacks the file.
    """
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the segmenter needs the silero-vad wheel (pip install 'silero-vad>=6.2,<7'; "
                          "its weights ship inside it, nothing is downloaded)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    if not path.is_file():
        raise ConfigError(f"{path} is missing from the installed silero-vad wheel (reinstall silero-vad>=6.2,<7)")
    return path


class SileroVAD(torch.nn.Module):
    """Frame speech probabilities of the Silero VAD v6 16 kHz model, batched over frames and streams.

    Use :meth:`from_wheel`. A :class:`VADState` carries each stream's LSTM state and last context samples
    between blocks, so a long recording is processed block by block with the same result as all at once.
    """

    def __init__(self, weights: dict[str, torch.Tensor]):
        super().__init__()
        for key, value in weights.items():
            self.register_buffer(key.replace(".", "_"), value.detach().clone().float())
        self.lstm = torch.nn.LSTM(128, 128, batch_first=True)
        with torch.no_grad():
            for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.lstm, f"{part}_l0").copy_(weights[f"decoder.rnn.{part}"])
        self.eval().requires_grad_(False)

    @classmethod
    def from_wheel(cls, path: str | Path | None = None) -> SileroVAD:
        """Load the weights from the wheel's TorchScript file (or ``path``) without running its code."""
        jit = torch.jit.load(str(path or model_file()), map_location="cpu")
        weights = {k[len(_PREFIX):]: v for k, v in jit.state_dict().items() if k.startswith(_PREFIX)}
        return cls(weights)

    def _frame_features(self, windows: torch.Tensor) -> torch.Tensor:
        """``windows [N, 576]`` (context + frame) -> ``[N, 128]`` features, every frame independently."""
        x = F.pad(windows, (0, CONTEXT_SAMPLES), mode="reflect").unsqueeze(1)
        x = F.conv1d(x, self.stft_forward_basis_buffer, stride=FRAME_SAMPLES // 4)
        half = x.shape[1] // 2
        x = torch.sqrt(x[:, :half] ** 2 + x[:, half:] ** 2)  # magnitude spectrum, 129 bins x 4 hops
        for i, stride in enumerate((1, 2, 2, 1)):
            w = getattr(self, f"encoder_{i}_reparam_conv_weight")
            b = getattr(self, f"encoder_{i}_reparam_conv_bias")
            x = F.relu(F.conv1d(x, w, b, stride=stride, padding=1))
        return x.squeeze(-1)

    @torch.inference_mode()
    def forward(self, audio: torch.Tensor, state: VADState) -> torch.Tensor:
        """Speech probabilities of the next frames of every stream.

        Args:
            audio: ``[B, T]`` float32 16 kHz samples, ``T`` a multiple of 512 (pad the last block with zeros).
            state: the streams' state after the previous block (updated in place).

        Returns:
            ``[B, T // 512]`` float32 probabilities in [0, 1], one per 32 ms frame.
        """
        b, t = audio.shape
        if t % FRAME_SAMPLES:
            raise ValueError(f"block length {t} is not a multiple of {FRAME_SAMPLES} samples")
        n = t // FRAME_SAMPLES
        if n == 0:
            return audio.new_zeros((b, 0))
        frames = audio.reshape(b, n, FRAME_SAMPLES)
        context = torch.cat([state.context.unsqueeze(1), frames[:, :-1, -CONTEXT_SAMPLES:]], dim=1)
        windows = torch.cat([context, frames], dim=2).reshape(b * n, -1)
        feats = self._frame_features(windows).reshape(b, n, -1)
        out, (h, c) = self.lstm(feats, (state.h, state.c))
        state.h, state.c = h, c
        state.context = frames[:, -1, -CONTEXT_SAMPLES:].clone()
        logits = F.relu(out) @ self.decoder_decoder_2_weight[0, :, 0] + self.decoder_decoder_2_bias
        return torch.sigmoid(logits)

    def new_state(self, streams: int) -> VADState:
        """A fresh state for ``streams`` streams (zeros, as the stock model starts)."""
        return VADState(streams)

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Frame probabilities of one whole 16 kHz signal ``[T]`` (tests and short clips): ``[ceil(T/512)]``."""
        n = -(-len(audio) // FRAME_SAMPLES)
        padded = np.zeros((1, n * FRAME_SAMPLES), np.float32)
        padded[0, :len(audio)] = audio
        return self(torch.from_numpy(padded), self.new_state(1))[0].numpy()


class VADState:
    """Per-stream state between blocks: LSTM ``h``, ``c`` ``[1, B, 128]`` and the last 64 samples ``[B, 64]``."""

    def __init__(self, streams: int):
        self.h = torch.zeros(1, streams, 128)
        self.c = torch.zeros(1, streams, 128)
        self.context = torch.zeros(streams, CONTEXT_SAMPLES)


__all__ = ["CONTEXT_SAMPLES", "FRAME_SAMPLES", "FRAME_SECONDS", "VAD_SAMPLE_RATE", "SileroVAD", "VADState",
           "model_file"]

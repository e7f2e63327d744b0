"""The Whisper family: ``transformers``' ``WhisperEncoder`` behind the :class:`Encoder` contract.

Whisper differs from the wav2vec2 family in three ways that this module hides from the rest of the platform:

- **Input.** It reads an 80 (or 128) bin log-mel spectrogram, not the waveform. The log-mel is computed here,
  in torch, from the padded 16 kHz waveforms (the recipe of ``WhisperFeatureExtractor``: 25 ms Hann window,
  10 ms hop, Slaney mel filters, ``log10``, floor at ``max - 8``, ``(x + 4) / 4``), so it runs on the GPU with
  the model and needs no numpy round trip. A test checks it against ``WhisperFeatureExtractor``.
- **A fixed window.** The encoder's positional embeddings cover exactly ``max_source_positions`` frames
  (1500 = 30 s for OpenAI's checkpoints, 400 = 8 s for Smart Turn) and ``WhisperEncoder`` refuses any other
  input length. Clips are therefore cut into consecutive windows: a shorter clip is zero-padded to one window
  (what Whisper saw in pre-training), a longer one is split into ``ceil(T / window)`` windows, each encoded on
  its own, and the windows' frames are concatenated in time. Frame ``f`` of the output is always the 20 ms
  of audio starting at ``f * 320`` samples, so pooling, attention and frame masks work as for wav2vec2. We
  chose chunking over cropping (which would drop audio) and over slicing the positional embeddings to the
  clip's length (which feeds the encoder inputs it was never trained on and changes a clip's features with
  the batch's padding). Windows that hold no sample of a clip are skipped, not encoded.
- **No attention mask.** Whisper attends to the padded tail of a window. Its outputs are still exactly
  batch-invariant here, because every clip is padded to whole windows of zeros whatever else is in the batch;
  frames past ``frame_lengths`` are masked out downstream.

References:
    Radford et al., 2023. Robust Speech Recognition via Large-Scale Weak Supervision. ICML.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn
from transformers.audio_utils import mel_filter_bank

from ser_models.encoders.encoder import SAMPLE_RATE, Encoder, EncoderOutput

#: STFT of Whisper's front end: 25 ms window, 10 ms hop at 16 kHz.
N_FFT = 400
HOP_LENGTH = 160
#: Two mel frames (10 ms each) per encoder frame: conv2 has stride 2.
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
    window = torch.hann_window(N_FFT, device=wavs.device)
    stft = torch.stft(wavs.float(), N_FFT, HOP_LENGTH, window=window, return_complex=True)
    power = stft[..., :-1].abs() ** 2  # [M, 201, W // 160]: the extra centred frame is dropped
    mel = torch.einsum("fm,bft->bmt", mel_filters.to(power.device), power)
    log_spec = torch.clamp(mel, min=1e-10).log10()
    peak = log_spec.amax(dim=(1, 2), keepdim=True)
    log_spec = torch.maximum(log_spec, peak - 8.0)
    return (log_spec + 4.0) / 4.0


class WhisperSpeechEncoder(Encoder):
    """A ``WhisperEncoder`` that takes padded 16 kHz waveforms of any length and returns all hidden states.

    ``hidden_states[0]`` is the convolutional front end plus positional embeddings, ``hidden_states[i]`` the
    input of transformer layer ``i + 1`` (Whisper is pre-norm), and the last one the final layer's output after
    the encoder's closing layer norm (``last_hidden_state``). See the module docstring for windows and padding.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frame_rate = SAMPLE_RATE / SAMPLES_PER_FRAME
        # Not persistent: the filters are a function of the config, and must stay out of any state dict.
        self.register_buffer("mel_filters", whisper_mel_filters(int(self.hf_config.num_mel_bins)),
                             persistent=False)

    def limit_depth(self, states: int) -> bool:
        """Keep transformer layers ``1 .. states - 1`` and drop the closing layer norm, so that
        ``hidden_states[states - 1]`` is that layer's raw output: what the whole encoder returns there (Whisper is
        pre-norm; only its last state passes the closing norm). See :meth:`Encoder.limit_depth`."""
        layers = int(states) - 1
        if not 1 <= layers < len(self.hf_model.layers):
            return False
        self.hf_model.layers = self.hf_model.layers[:layers]
        self.hf_model.layer_norm = nn.Identity()
        self._states = layers + 1
        return True

    @property
    def window_frames(self) -> int:
        """Encoder frames per window (``max_source_positions``)."""
        return int(self.hf_config.max_source_positions)

    @property
    def window_samples(self) -> int:
        """16 kHz samples per window (``max_source_positions * 320``: 480,000 = 30 s for OpenAI's models)."""
        return self.window_frames * SAMPLES_PER_FRAME

    @property
    def min_samples(self) -> int:
        """Shortest clip (16 kHz samples) that fills one encoder frame (20 ms)."""
        return SAMPLES_PER_FRAME

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """``[B]`` valid frames for ``[B]`` valid samples: every started 20 ms counts."""
        return torch.div(lengths.long() + SAMPLES_PER_FRAME - 1, SAMPLES_PER_FRAME, rounding_mode="floor")

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """Encode a padded batch window by window.

        Args:
            wavs: ``[B, T]`` float32 waveforms at 16 kHz.
            lengths: ``[B]`` valid samples per clip.

        Returns:
            :class:`EncoderOutput` with L hidden states ``[B, F, D]``, ``F = ceil(max(lengths) / 320)``.
        """
        x, mask = self.prepare_inputs(wavs, lengths)
        lengths = mask.sum(1)
        batch, window = x.shape[0], self.window_samples
        num_windows = max(1, math.ceil(int(lengths.max()) / window))
        total = num_windows * window
        x = nn.functional.pad(x, (0, total - x.shape[1])) if x.shape[1] < total else x[:, :total]
        starts = torch.arange(num_windows, device=x.device) * window
        in_use = (lengths[:, None] > starts[None, :]).reshape(-1)  # [B * K]: windows holding any sample
        features = log_mel_spectrogram(x.reshape(batch * num_windows, window)[in_use], self.mel_filters)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*input_features.*")
            out = self.hf_model(features.to(next(self.hf_model.parameters()).dtype), output_hidden_states=True)
        frames = self.frame_lengths(lengths)
        num_frames = int(frames.max())
        hidden = []
        for h in out.hidden_states:
            full = h.new_zeros(batch * num_windows, h.shape[1], h.shape[2])
            full[in_use] = h
            hidden.append(full.reshape(batch, num_windows * h.shape[1], h.shape[2])[:, :num_frames])
        if len(hidden) != self.num_layers:
            raise RuntimeError(f"Whisper encoder returned {len(hidden)} hidden states, expected {self.num_layers}")
        return EncoderOutput(hidden_states=tuple(hidden), frame_lengths=frames)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", window_seconds={self.window_samples / SAMPLE_RATE:g}"

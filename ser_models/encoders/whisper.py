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
  chose chunking over cropping (which would drop audio). Windows that hold no sample of a clip are skipped,
  not encoded. With ``model.encoder.whisper_windows=trim`` a clip's last window is instead cut to its audio
  rounded up to ``whisper_trim_seconds`` and encoded on the first positional embeddings only
  (:mod:`ser_models.encoders.whisper_windows`): a clip then costs its length rounded up, not 8 s or 30 s,
  and the encoder attends to less padding than it saw in pre-training (docs/encoders.md has the accuracy
  measured).
- **No attention mask.** Whisper attends to the padded tail of a window. Its outputs are still batch-invariant
  here, because a clip's padding (zeros to whole windows, or to its trimmed length) depends on its own length
  alone, whatever else is in the batch; frames past ``frame_lengths`` are masked out downstream.

References:
    Radford et al., 2023. Robust Speech Recognition via Large-Scale Weak Supervision. ICML.
"""

from __future__ import annotations

import hashlib
import math
import warnings

import torch
from torch import nn

from ser_models.encoders import whisper_windows
from ser_models.encoders.encoder import SAMPLE_RATE, Encoder, EncoderOutput
from ser_models.encoders.whisper_windows import (  # re-exported: callers import the front end from here
    HOP_LENGTH,
    N_FFT,
    SAMPLES_PER_FRAME,
    log_mel_spectrogram,
    whisper_mel_filters,
)
from ser_models.heads.mc_dropout import row_subset

__all__ = ["HOP_LENGTH", "N_FFT", "SAMPLES_PER_FRAME", "WhisperSpeechEncoder", "log_mel_spectrogram",
           "whisper_mel_filters"]


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

    @property
    def trim_frames(self) -> int | None:
        """Frames a trimmed window is rounded up to (``whisper_trim_seconds`` x 50), or None in ``full`` mode."""
        if self.cfg.whisper_windows != "trim":
            return None
        return max(1, round(float(self.cfg.whisper_trim_seconds) * SAMPLE_RATE / SAMPLES_PER_FRAME))

    def fingerprint(self) -> str:
        """:meth:`Encoder.fingerprint`, plus the window mode in ``trim`` mode: trimmed windows give other
        features, so a feature cache built with full windows is never read for trimmed ones (``full`` gives
        :meth:`Encoder.fingerprint` itself). :meth:`portable_fingerprint` names the weights alone and ignores the
        mode."""
        bucket = self.trim_frames
        if bucket is None:
            return self._fingerprint
        return hashlib.sha256(f"{self._fingerprint};whisper_windows=trim;bucket={bucket}".encode()).hexdigest()

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
        frames = self.frame_lengths(lengths)
        num_frames = int(frames.max())
        if self.trim_frames is None:
            hidden = self._full_windows(x, lengths)
        else:
            hidden = self._trimmed_windows(x, lengths, self.trim_frames)
        hidden = tuple(h[:, :num_frames] for h in hidden)
        if len(hidden) != self.num_layers:
            raise RuntimeError(f"Whisper encoder returned {len(hidden)} hidden states, expected {self.num_layers}")
        return EncoderOutput(hidden_states=hidden, frame_lengths=frames)

    def _full_windows(self, x: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Every clip in whole windows of zeros: L states ``[B, K * window, D]`` (K = windows of the longest)."""
        batch, window = x.shape[0], self.window_samples
        num_windows = max(1, math.ceil(int(lengths.max()) / window))
        total = num_windows * window
        x = nn.functional.pad(x, (0, total - x.shape[1])) if x.shape[1] < total else x[:, :total]
        starts = torch.arange(num_windows, device=x.device) * window
        in_use = (lengths[:, None] > starts[None, :]).reshape(-1)  # [B * K]: windows holding any sample
        features = log_mel_spectrogram(x.reshape(batch * num_windows, window)[in_use], self.mel_filters)
        # Each window's batch row, so per-row MC-dropout masks follow their clip (a long clip is several rows).
        rows = torch.arange(batch).repeat_interleave(num_windows)[in_use.cpu()].tolist()
        with warnings.catch_warnings(), row_subset(rows):
            warnings.filterwarnings("ignore", message=".*input_features.*")
            out = self.hf_model(features.to(next(self.hf_model.parameters()).dtype), output_hidden_states=True)
        hidden = []
        for h in out.hidden_states:
            full = h.new_zeros(batch * num_windows, h.shape[1], h.shape[2])
            full[in_use] = h
            hidden.append(full.reshape(batch, num_windows * h.shape[1], h.shape[2]))
        return hidden

    def _trimmed_windows(self, x: torch.Tensor, lengths: torch.Tensor, bucket: int) -> list[torch.Tensor]:
        """Each clip's last window cut to its audio rounded up to ``bucket`` frames (``whisper_windows.
        window_frames``); windows of one length encoded together. L states ``[B, F', D]``, frame ``f`` of clip
        ``b`` the 20 ms from sample ``f * 320`` as in :meth:`_full_windows`."""
        sizes = whisper_windows.window_frames(lengths.tolist(), self.window_frames, bucket)
        groups: dict[int, list[tuple[int, int]]] = {}  # window frames -> (batch row, first frame) per window
        for row, clip in enumerate(sizes):
            start = 0
            for n in clip:
                groups.setdefault(n, []).append((row, start))
                start += n
        width = max(sum(clip) for clip in sizes)
        if x.shape[1] < width * SAMPLES_PER_FRAME:  # the bucket may round a window past the batch's padding
            x = nn.functional.pad(x, (0, width * SAMPLES_PER_FRAME - x.shape[1]))
        dtype = next(self.hf_model.parameters()).dtype
        hidden: list[torch.Tensor] | None = None
        for n, windows in sorted(groups.items()):
            rows = [row for row, _ in windows]
            row_index = torch.as_tensor(rows, device=x.device)[:, None]  # [M, 1]
            frame_index = torch.as_tensor([s for _, s in windows], device=x.device)[:, None] + \
                torch.arange(n, device=x.device)[None, :]  # [M, n]: each window's frames in its clip
            samples = (frame_index[:, :1] * SAMPLES_PER_FRAME
                       + torch.arange(n * SAMPLES_PER_FRAME, device=x.device)[None, :])  # [M, n * 320]
            features = log_mel_spectrogram(x[row_index, samples], self.mel_filters)  # [M, n_mels, 2n]
            # Rows of the batch (a clip longer than one window appears once per window): MC-dropout hooks
            # then draw each window's masks from its own clip's seed.
            with row_subset(rows):
                states = whisper_windows.encode(self.hf_model, features.to(dtype))
            if hidden is None:
                hidden = [s.new_zeros(x.shape[0], width, s.shape[-1]) for s in states]
            for full, s in zip(hidden, states):
                full[row_index, frame_index] = s
        return hidden

    def extra_repr(self) -> str:
        trim = "" if self.trim_frames is None else f", trim_seconds={self.trim_frames * SAMPLES_PER_FRAME / SAMPLE_RATE:g}"
        return super().extra_repr() + f", window_seconds={self.window_samples / SAMPLE_RATE:g}, " \
            f"whisper_windows={self.cfg.whisper_windows}{trim}"

"""One recording -> its streams' frame statistics (the VAD pass), and frame statistics -> segment rows.

The VAD pass decodes a file in blocks (:mod:`ser_models.data.audio_stream`), picks or mixes its channels,
resamples each block to 16 kHz without seams, and runs :class:`~ser_models.segment.silero.SileroVAD` on
every stream of the block at once. It keeps, per 32 ms frame and stream, the speech probability, the mean
square of the samples and the count of clipped samples: a few bytes per frame (about 1.4 MB per stream-hour),
never the audio. Memory is bounded by the block, whatever the file's length.

Segments are then a pure function of those statistics and the rules (:func:`segment_rows`), so new rules
never rerun the model.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import torch

from ser_models.data.audio_stream import Resampler, open_audio
from ser_models.exceptions import AudioError, ConfigError
from ser_models.segment.quality import QualityGate, segment_quality
from ser_models.segment.rules import SegmentRules, segment_probs
from ser_models.segment.silero import FRAME_SAMPLES, VAD_SAMPLE_RATE, SileroVAD

#: ``channels`` values besides a channel number: each channel its own stream, or their mean as one stream.
CHANNEL_POLICIES = ("split", "mix")
#: ``channel`` of a stream that averages all channels.
MIXED = -1
_CLIP_LEVEL = 0.999


def check_channels(policy: str) -> str:
    """``policy`` if it is ``split``, ``mix`` or a channel number (``"0"``, ``"1"``, ...); else ConfigError."""
    policy = str(policy)
    if policy in CHANNEL_POLICIES or (policy.isdigit()):
        return policy
    raise ConfigError(f"channels must be 'split', 'mix' or a channel number (0, 1, ...), got {policy!r}")


@dataclasses.dataclass
class StreamFrames:
    """Frame statistics of one stream of a recording.

    Attributes:
        channel: the file's channel (0-based), or :data:`MIXED`.
        samples: the stream's length in 16 kHz samples.
        probs: ``[F]`` float32 speech probabilities, one per 32 ms frame (``F = ceil(samples / 512)``).
        power: ``[F]`` float32 mean square of the frame's samples.
        clipped: ``[F]`` int32 samples with ``|x| >= 0.999`` in the frame.
    """

    channel: int
    samples: int
    probs: np.ndarray
    power: np.ndarray
    clipped: np.ndarray


@dataclasses.dataclass
class VADResult:
    """The VAD pass over one file: its streams and what the file is (rate, channels, seconds)."""

    streams: list[StreamFrames]
    sample_rate: int
    channels: int
    duration: float


def _stream_channels(policy: str, channels: int, path: str) -> list[int]:
    if policy == "mix" or (policy == "split" and channels == 1):
        return [MIXED] if channels > 1 else [0]
    if policy == "split":
        return list(range(channels))
    k = int(policy)
    if k >= channels:
        raise AudioError("bad_channel", f"{path}: channel {k} asked for, the file has {channels} channel(s)")
    return [k]


def vad_pass(path: str, vad: SileroVAD, channels: str = "split", block_seconds: float = 30.0,
             max_seconds: float = math.inf) -> VADResult:
    """Run the VAD over one file, block by block.

    Args:
        path: the recording (local path or URI, any format :func:`~ser_models.data.audio_stream.open_audio`
            reads).
        vad: the model.
        channels: ``split``, ``mix`` or a channel number (see :data:`CHANNEL_POLICIES`).
        block_seconds: decode block length (s): memory is a few copies of one block.
        max_seconds: longer files raise ``too_long``: before any decoding when the length is exact
            (libsndfile), else as soon as the decoded samples pass it (an FFmpeg container's duration is an
            estimate, may be missing, or may lie), so a file never costs more than ``max_seconds`` of decoding.

    Returns:
        The streams' frame statistics.

    Raises:
        AudioError: ``missing_file``, ``empty``, ``unreadable``, ``too_long``, ``non_finite`` or ``bad_channel``.
    """
    with open_audio(path) as audio:
        if audio.exact_frames and audio.duration > max_seconds:
            raise AudioError("too_long", f"{path}: {audio.duration / 3600:.2f} h > max_recording_hours "
                                         f"{max_seconds / 3600:.2f} h")
        # Samples of the file's rate allowed, counted as they are decoded: decoding stops within one block of
        # the limit, whatever the header claimed (a block is about block_seconds).
        limit = None if math.isinf(max_seconds) else int(math.floor(max_seconds * audio.sample_rate))
        decoded = 0
        chans = _stream_channels(channels, audio.channels, path)
        resample = Resampler(audio.sample_rate, VAD_SAMPLE_RATE, len(chans))
        state = vad.new_state(len(chans))
        acc = _FrameAccumulator()
        carry = np.zeros((0, len(chans)), np.float32)
        block_frames = max(FRAME_SAMPLES, int(block_seconds * audio.sample_rate))
        for block in audio.blocks(block_frames):
            decoded += len(block)
            if limit is not None and decoded > limit:
                said = f"its header says {audio.duration:.0f} s" if audio.frames else "its header has no duration"
                raise AudioError("too_long", f"{path}: longer than max_recording_hours {max_seconds / 3600:g} h "
                                             f"({said}; decoding stopped at the limit, "
                                             f"{decoded / audio.sample_rate:.0f} s)")
            picked = block.mean(axis=1, keepdims=True) if chans == [MIXED] and block.shape[1] > 1 else block[:, chans]
            if not np.isfinite(picked).all():
                raise AudioError("non_finite", f"{path}: NaN or infinite samples near "
                                               f"{acc.samples / VAD_SAMPLE_RATE:.1f} s")
            carry = np.concatenate([carry, resample(picked)])
            whole = len(carry) // FRAME_SAMPLES * FRAME_SAMPLES
            if whole:
                acc.add(vad, state, carry[:whole])
                carry = carry[whole:]
        carry = np.concatenate([carry, resample(np.zeros((0, len(chans)), np.float32), last=True)])
        samples = acc.samples + len(carry)
        if len(carry):
            padded = np.zeros((-(-len(carry) // FRAME_SAMPLES) * FRAME_SAMPLES, len(chans)), np.float32)
            padded[:len(carry)] = carry
            acc.add(vad, state, padded)
        if samples == 0:
            raise AudioError("empty", f"no samples in {path}")
        streams = [StreamFrames(c, samples, *acc.stream(i)) for i, c in enumerate(chans)]
        return VADResult(streams, audio.sample_rate, audio.channels, samples / VAD_SAMPLE_RATE)


class _FrameAccumulator:
    """Frame statistics of consecutive 16 kHz blocks ``[n, S]`` (``n`` a multiple of 512)."""

    def __init__(self):
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.samples = 0

    def add(self, vad: SileroVAD, state, block: np.ndarray) -> None:
        x = np.ascontiguousarray(block.T)  # [S, n]
        probs = vad(torch.from_numpy(x), state).numpy()
        frames = x.reshape(x.shape[0], -1, FRAME_SAMPLES)
        power = np.mean(np.square(frames, dtype=np.float64), axis=2).astype(np.float32)
        clipped = (np.abs(frames) >= _CLIP_LEVEL).sum(axis=2).astype(np.int32)
        self.parts.append((probs.astype(np.float32), power, clipped))
        self.samples += block.shape[0]

    def stream(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.parts:
            return np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)
        return tuple(np.concatenate([p[k][i] for p in self.parts]) for k in range(3))


def segment_id(recording: str, channel: int, start_sample: int) -> str:
    """Deterministic segment id: ``<recording>_ch<channel>_<start in ms, 9 digits>`` (``mix`` for mixed)."""
    ch = "mix" if channel == MIXED else str(channel)
    return f"{recording}_ch{ch}_{int(round(start_sample * 1000 / VAD_SAMPLE_RATE)):09d}"


def segment_rows(meta: dict, streams: list[StreamFrames], rules: SegmentRules,
                 gate: QualityGate) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Segments of one recording as manifest rows, split into kept and gated-out.

    Args:
        meta: the recording's manifest row (``path``, ``recording`` and any metadata, copied to each segment).
        streams: its frame statistics.
        rules: resolved segmentation rules.
        gate: the quality gate.

    Returns:
        ``(kept, rejected)``: rows with ``utt_id, path, recording, channel, start, end, duration`` (seconds),
        the metadata columns and the quality columns; ``rejected`` also has ``reason``.
    """
    frames = []
    for st in streams:
        spans = segment_probs(st.probs, rules, st.samples)
        if len(spans) == 0:
            continue
        q = segment_quality(spans, st.probs, st.power, st.clipped, rules.threshold, rules.leave_threshold)
        df = pd.DataFrame({
            "utt_id": [segment_id(meta["recording"], st.channel, s) for s in spans[:, 0]],
            "channel": np.full(len(spans), st.channel, dtype=np.int64),
            "start": spans[:, 0] / VAD_SAMPLE_RATE,
            "end": spans[:, 1] / VAD_SAMPLE_RATE,
            "duration": (spans[:, 1] - spans[:, 0]) / VAD_SAMPLE_RATE,
            **q,
            "reason": gate.reasons(q),
        })
        frames.append(df)
    if not frames:
        empty = pd.DataFrame(columns=["utt_id", "channel", "start", "end", "duration", "reason"])
        return empty, empty
    df = pd.concat(frames, ignore_index=True)
    for key, value in meta.items():
        if key not in df.columns:
            df[key] = [value] * len(df)
    first = ["utt_id", "path", "recording", "channel", "start", "end", "duration"]
    df = df[first + [c for c in meta if c not in first] + [c for c in df.columns if c not in first and c not in meta]]
    rejected = df[df["reason"].notna()].reset_index(drop=True)
    kept = df[df["reason"].isna()].drop(columns=["reason"]).reset_index(drop=True)
    return kept, rejected


__all__ = ["CHANNEL_POLICIES", "MIXED", "StreamFrames", "VADResult", "check_channels", "segment_id",
           "segment_rows", "vad_pass"]

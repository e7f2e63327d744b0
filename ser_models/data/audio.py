"""Audio decode, resample, validation and the pool's byte encoding. Pure functions: no Ray, no torch.

Files decode through :mod:`~ser_models.data.audio_stream`: WAV, FLAC, OGG/Vorbis/Opus and MP3 through
libsndfile, M4A/AAC and the rest through FFmpeg (PyAV). A clip is a whole file or a segment of one
(``start`` / ``end`` seconds, and a ``channel`` of a multi-channel recording, or the channels averaged).

Every clip of a prepared pool is mono float audio at 16 kHz, stored as bytes (``pcm16`` or ``flac``) plus a
``num_samples`` column, so the pool never holds ragged float arrays. A clip that cannot be turned into valid
audio raises :class:`~ser_models.exceptions.AudioError` whose ``reason`` is one of :data:`REASONS`;
:func:`decode_batch` turns those into a ``status`` column so one bad file never fails a Ray Data batch.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import soundfile as sf
import soxr

from ser_models.data.audio_stream import open_audio
from ser_models.data.config import AUDIO_FORMATS, POOL_SAMPLE_RATE
from ser_models.exceptions import AudioError

#: Quarantine reason codes (the ``reason`` column of ``quarantine.parquet``):
#:
#: - ``missing_file``: the path does not exist.
#: - ``unreadable``: neither libsndfile nor FFmpeg can decode it (corrupt, truncated header, not audio at all
#:   such as a text file named ``.wav``), or decoding failed in an unexpected way (exception type and message
#:   in ``detail``).
#: - ``empty``: a 0-byte file, or a file / segment holding no samples. A 0-byte file is ``empty`` rather than
#:   ``unreadable`` because its fix differs: it was truncated by a copy, not produced by a bad encoder.
#: - ``too_short``: shorter than ``min_duration`` seconds.
#: - ``too_long``: longer than ``max_duration`` seconds while ``long_policy="reject"`` (counted in decoded
#:   samples; decoding stops one second past the limit, whatever length the file's header claims).
#: - ``non_finite``: NaN or infinite samples (float WAVs written by a broken pipeline).
#: - ``silent``: RMS level below ``silence_db`` dBFS.
#: - ``bad_segment``: the manifest's ``start`` / ``end`` lie outside the file or ``start >= end``, or its
#:   ``channel`` does not exist in the file.
REASONS = ("missing_file", "unreadable", "empty", "too_short", "too_long", "non_finite", "silent", "bad_segment")

# A manifest's `end` may overshoot the file by rounding (e.g. end written with 2 decimals); beyond this the
# segment is treated as wrong rather than clamped.
_SEGMENT_TOLERANCE_S = 0.05
# Extensions whose files libsndfile decodes when intact (MP3 is left to FFmpeg too: libsndfile misses some
# MP3 variants that FFmpeg reads whole).
_LIBSNDFILE_ONLY = frozenset({"wav", "flac", "ogg", "oga", "opus", "aif", "aiff", "au"})
# Seconds decoded past max_duration, so validate() crops or rejects on the exact count at the target rate.
_READ_MARGIN_S = 1.0
_PCM16_SCALE_OUT = 32767.0
_PCM16_SCALE_IN = 32768.0  # libsndfile's int16 -> float scale, so pcm16 and flac decode identically


class ValidationSettings(Protocol):
    """What :func:`validate` reads from a config (:class:`~ser_models.data.config.PoolConfig` has it)."""

    min_duration: float
    max_duration: float
    long_policy: str
    silence_db: float


def load_clip(
    path: str,
    start: float | None = None,
    end: float | None = None,
    target_sr: int = POOL_SAMPLE_RATE,
    max_duration: float | None = None,
    channel: int | None = None,
) -> tuple[np.ndarray, int, int]:
    """Read a clip (or a segment of a file), keep one channel or average them, and resample it.

    Decoding goes through :mod:`~ser_models.data.audio_stream`: WAV, FLAC, OGG/Vorbis/Opus and MP3 through
    libsndfile; M4A/AAC and the rest (WMA, AMR, video containers with an audio track) through FFmpeg (PyAV).
    Only the segment is decoded, never the whole file.

    Args:
        path: audio file, a local path or a ``pyarrow.fs`` URI such as ``s3://bucket/call.m4a``.
        start: segment start in seconds; ``None`` or NaN = start of the file.
        end: segment end in seconds; ``None`` or NaN = end of the file.
        target_sr: output sample rate in Hz.
        max_duration: if given, read at most this many seconds from ``start`` (a cheap crop before
            resampling; :func:`validate` crops the same way).
        channel: 0-based channel to keep (a segment found on one side of a two-channel call); ``None`` or -1
            averages the channels.

    Returns:
        ``(wav [T] float32 at target_sr, orig_sample_rate Hz, orig_channels)``.

    Raises:
        AudioError: ``missing_file``, ``empty``, ``unreadable`` or ``bad_segment`` (the segment lies outside
            the file, or the channel does not exist).
    """
    wav, orig_sr, channels, _ = _load_clip(path, start, end, target_sr, max_duration, channel)
    return wav, orig_sr, channels


def _load_clip(path: str, start: float | None, end: float | None, target_sr: int, max_duration: float | None,
               channel: int | None) -> tuple[np.ndarray, int, int, bool]:
    """:func:`load_clip`, plus whether decoding stopped at ``max_duration`` with the clip going on past it.

    The stop is judged on samples decoded, never on the header's length: a container whose duration field
    claims one second while it holds an hour still stops at ``max_duration``.
    """
    if channel is not None and channel < 0:
        channel = None
    with open_audio(path) as stream:  # raises missing_file / empty / unreadable itself
        _refuse_partial_recovery(path, stream.backend)
        orig_sr, channels = stream.sample_rate, stream.channels
        if channel is not None and channel >= channels:
            raise AudioError("bad_segment", f"{path}: channel {channel} does not exist (the file has {channels} "
                                            "channel(s), numbered from 0)")
        first, seg_last = _segment_frames(path, start, end, orig_sr, stream.frames, stream.exact_frames)
        last, crop = seg_last, None
        if max_duration is not None:
            crop = first + int(math.ceil(max_duration * orig_sr))
            # One sample past the crop tells a clip that goes on from one that ends exactly there.
            last = crop + 1 if last is None else min(last, crop + 1)
        try:
            data = stream.read(first, last)
        except AudioError:
            raise
        except Exception as exc:  # noqa: BLE001 - libsndfile and FFmpeg raise many types mid-file
            raise AudioError("unreadable", f"{path}: {type(exc).__name__}: {exc}") from exc
    if not stream.exact_frames:
        _check_decoded_span(path, start, end, orig_sr, first, None if seg_last is None else last, len(data))
    if data.shape[0] == 0:
        raise AudioError("empty", f"no samples in {path} (segment {start}-{end} s)")
    # Judged on the decoder's position, not on the samples counted: an FFmpeg stream whose first frame starts
    # late (an encoder's priming samples) hands out fewer samples than the span it covers.
    cut = crop is not None and stream.reached > crop
    if cut:
        data = data[:data.shape[0] - (stream.reached - crop)]
    if channel is not None:
        wav = data[:, channel]
    else:
        # Mean, not first channel: a call recording often has the caller on one channel only.
        wav = data.mean(axis=1, dtype=np.float32) if channels > 1 else data[:, 0]
    if orig_sr != target_sr and np.isfinite(wav).all():
        wav = soxr.resample(wav, orig_sr, target_sr, quality="HQ")
    return np.ascontiguousarray(wav, dtype=np.float32), int(orig_sr), int(channels), cut


def _refuse_partial_recovery(path: str, backend: str) -> None:
    """A WAV/FLAC/OGG/AIFF/AU file that libsndfile cannot open is damaged: FFmpeg would resynchronise past the
    damage and return only part of it (a labelled clip silently cut short), so it is ``unreadable``."""
    ext = path.rsplit("/", 1)[-1].rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    if backend == "ffmpeg" and ext in _LIBSNDFILE_ONLY:
        raise AudioError("unreadable", f"{path}: libsndfile cannot decode this .{ext} file (corrupt or truncated "
                                       "header); FFmpeg would recover only the audio after the damage")


def _segment_frames(path: str, start: float | None, end: float | None, sr: int, frames: int,
                    exact: bool = True) -> tuple[int, int | None]:
    """``[first, last)`` samples of a segment; ``last`` None = to the end of an FFmpeg file (length unknown).

    libsndfile knows the length exactly, so a segment outside it is refused here. FFmpeg's length is the
    container's estimate: only a segment that starts well past it is refused here, and
    :func:`_check_decoded_span` judges the rest on the samples actually decoded.
    """
    s = 0.0 if start is None or _isnan(start) else float(start)
    e = None if end is None or _isnan(end) else float(end)
    duration = frames / sr
    if exact:
        e = duration if e is None else e
        if s < 0 or s >= duration or e <= s or e > duration + _SEGMENT_TOLERANCE_S:
            raise AudioError(
                "bad_segment", f"{path}: segment start={start} end={end} s outside the file (0-{duration:.3f} s)"
            )
        return int(round(s * sr)), min(frames, int(round(e * sr)))
    if s < 0 or (e is not None and e <= s) or (frames > 0 and s >= duration + _estimate_slack(duration)):
        raise AudioError(
            "bad_segment", f"{path}: segment start={start} end={end} s outside the file (about 0-{duration:.3f} s)"
        )
    return int(round(s * sr)), None if e is None else int(round(e * sr))


def _estimate_slack(duration: float) -> float:
    # A container's duration can be off by its encoder delay and, for raw streams (ADTS AAC, MP3 without a
    # header), by a bitrate-based estimate.
    return max(1.0, 0.02 * duration)


def _check_decoded_span(path: str, start, end, sr: int, first: int, last: int | None, got: int) -> None:
    """An FFmpeg read that ended early means the file is shorter than the segment: ``bad_segment``."""
    if last is None:
        if got == 0 and first > 0:  # nothing at all from the start is an empty file, not a bad segment
            raise AudioError("bad_segment", f"{path}: segment start={start} s lies past the end of the file")
        return
    missing = (last - first) - got
    if missing > _SEGMENT_TOLERANCE_S * sr:
        where = f"it ends at about {(first + got) / sr:.3f} s" if got else "it ends before the segment starts"
        raise AudioError("bad_segment", f"{path}: segment start={start} end={end} s outside the file ({where})")


def _channel(value: Any) -> int | None:
    """A manifest ``channel`` cell as :func:`load_clip`'s argument: None (averaged) for None, NaN or -1."""
    if value is None or _isnan(value):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):  # pandas' NA of a nullable integer column
        return None
    return None if number < 0 else number


def _isnan(x: Any) -> bool:
    try:
        return math.isnan(x)
    except TypeError:
        return False


def rms_dbfs(wav: np.ndarray) -> float:
    """RMS level of ``wav [T]`` in dB relative to full scale (``-inf`` for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if wav.size else 0.0
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def validate(wav: np.ndarray, cfg: ValidationSettings, sample_rate: int = POOL_SAMPLE_RATE) -> np.ndarray:
    """Check a decoded clip and apply the long-clip policy.

    Checks run in this order: empty, non-finite samples, too short, too long (crop or reject), silent.
    Cropping keeps the *first* ``max_duration`` seconds: deterministic, keeps the speech onset, and keeps
    a transcript aligned with the start of the clip (a centre crop would cut both).

    Args:
        wav: ``[T]`` float32 mono samples at ``sample_rate`` Hz.
        cfg: ``min_duration``, ``max_duration`` (seconds), ``long_policy`` ("crop" | "reject"),
            ``silence_db`` (dBFS).
        sample_rate: rate of ``wav`` in Hz.

    Returns:
        ``[T']`` the (possibly cropped) clip, ``T' <= max_duration * sample_rate``.

    Raises:
        AudioError: ``empty``, ``non_finite``, ``too_short``, ``too_long`` or ``silent``.
    """
    if wav.ndim != 1:
        raise AudioError("unreadable", f"expected mono [T] audio, got shape {wav.shape}")
    if wav.size == 0:
        raise AudioError("empty", "clip has no samples")
    if not np.isfinite(wav).all():
        bad = int((~np.isfinite(wav)).sum())
        raise AudioError("non_finite", f"{bad} of {wav.size} samples are NaN or infinite")
    duration = wav.size / sample_rate
    if duration < cfg.min_duration:
        raise AudioError("too_short", f"{duration:.3f} s < min_duration {cfg.min_duration} s")
    max_samples = int(round(cfg.max_duration * sample_rate))
    if wav.size > max_samples:
        if cfg.long_policy == "reject":
            raise AudioError("too_long", f"{duration:.3f} s > max_duration {cfg.max_duration} s")
        wav = wav[:max_samples]
    level = rms_dbfs(wav)
    if level < cfg.silence_db:
        raise AudioError("silent", f"RMS {level:.1f} dBFS < silence_db {cfg.silence_db} dBFS")
    return wav


def encode_pool_audio(wav: np.ndarray, fmt: str) -> bytes:
    """Encode ``wav [T]`` float32 16 kHz mono for the pool's ``audio`` column.

    ``pcm16`` is little-endian int16 (values clipped to [-1, 1] first); ``flac`` is a 16-bit FLAC file.
    """
    clipped = np.clip(wav, -1.0, 1.0)
    if fmt == "pcm16":
        return np.round(clipped * _PCM16_SCALE_OUT).astype("<i2").tobytes()
    if fmt == "flac":
        buf = io.BytesIO()
        sf.write(buf, clipped, POOL_SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        return buf.getvalue()
    raise ValueError(f"audio_format must be one of {AUDIO_FORMATS}, got {fmt!r}")


def decode_pool_audio(data: bytes, fmt: str) -> np.ndarray:
    """Inverse of :func:`encode_pool_audio`: ``[T]`` float32 in [-1, 1] at 16 kHz."""
    if fmt == "pcm16":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(_PCM16_SCALE_IN)
    if fmt == "flac":
        wav, _ = sf.read(io.BytesIO(data), dtype="float32")
        return wav
    raise ValueError(f"audio_format must be one of {AUDIO_FORMATS}, got {fmt!r}")


class DecodeSettings(ValidationSettings, Protocol):
    audio_format: str
    target_sample_rate: int


def decode_clip(path: str, start: float | None, end: float | None, cfg: DecodeSettings,
                channel: int | None = None) -> tuple[bytes, int, int, int]:
    """Load, validate and encode one clip (``channel``: as in :func:`load_clip`).

    Returns:
        ``(audio bytes, num_samples at 16 kHz, orig_sample_rate Hz, orig_channels)``.

    Raises:
        AudioError: with one of :data:`REASONS`.
    """
    # Under either policy at most max_duration + 1 s is decoded and resampled, counted in decoded samples
    # (a 1 h file costs as much as a 21 s one, whatever its header claims); the extra second lets validate()
    # crop, or judge a clip just past the limit, exactly at the target rate.
    read_limit = cfg.max_duration + _READ_MARGIN_S
    wav, orig_sr, channels, cut = _load_clip(path, start, end, cfg.target_sample_rate, read_limit, channel)
    if cut and cfg.long_policy == "reject":
        raise AudioError("too_long", f"{path}: longer than max_duration {cfg.max_duration:g} s (long_policy=reject "
                                     f"stopped decoding at {read_limit:g} s)")
    wav = validate(wav, cfg, cfg.target_sample_rate)
    return encode_pool_audio(wav, cfg.audio_format), int(wav.size), orig_sr, channels


#: Columns :func:`decode_batch` adds to the manifest's, in the order the pool stores them.
AUDIO_COLUMNS = ("audio", "audio_format", "num_samples", "duration", "orig_sample_rate", "orig_channels",
                 "status", "detail")


def decode_batch(batch: Mapping[str, Any], cfg: DecodeSettings) -> dict[str, np.ndarray]:
    """The ``map_batches`` body: decode every row of a manifest batch, never failing the batch.

    Args:
        batch: columns of a manifest batch (numpy arrays or pandas Series): at least ``utt_id``, ``path``,
            optionally ``start`` / ``end`` (seconds, NaN = whole file) and ``channel`` (0-based; -1 or NaN =
            the channels averaged); every column is passed through.
        cfg: a :class:`~ser_models.data.config.PoolConfig` (or anything with its decode fields).

    Returns:
        The input columns plus ``audio`` (bytes, ``None`` for bad rows), ``audio_format``, ``num_samples``
        (int64, 16 kHz samples), ``duration`` (float64 s), ``orig_sample_rate`` / ``orig_channels`` (int32,
        0 for quarantined rows), ``status`` (``"ok"`` or a reason code) and ``detail`` (error text, ``None`` if ok).
    """
    paths = np.asarray(batch["path"], dtype=object)
    n = len(paths)
    starts = np.asarray(batch["start"], dtype=np.float64) if "start" in batch else np.full(n, np.nan)
    ends = np.asarray(batch["end"], dtype=np.float64) if "end" in batch else np.full(n, np.nan)
    chans = [_channel(c) for c in batch["channel"]] if "channel" in batch else [None] * n
    audio = np.empty(n, dtype=object)
    num_samples = np.zeros(n, dtype=np.int64)
    orig_sr = np.zeros(n, dtype=np.int32)
    orig_ch = np.zeros(n, dtype=np.int32)
    status = np.empty(n, dtype=object)
    detail = np.empty(n, dtype=object)
    for i in range(n):
        try:
            audio[i], num_samples[i], orig_sr[i], orig_ch[i] = decode_clip(str(paths[i]), starts[i], ends[i],
                                                                           cfg, chans[i])
            status[i] = "ok"
        except AudioError as exc:
            status[i], detail[i] = exc.reason, exc.detail
        except Exception as exc:  # noqa: BLE001 - one strange file must never fail a whole batch
            status[i], detail[i] = "unreadable", f"{paths[i]}: {type(exc).__name__}: {exc}"
    out = {k: np.asarray(v) for k, v in batch.items()}
    out.update(
        audio=audio,
        audio_format=np.full(n, cfg.audio_format, dtype=object),
        num_samples=num_samples,
        duration=num_samples / float(cfg.target_sample_rate),
        orig_sample_rate=orig_sr,
        orig_channels=orig_ch,
        status=status,
        detail=detail,
    )
    return out

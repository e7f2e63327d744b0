"""Streaming audio input: any file in bounded blocks, any span of it, through libsndfile or FFmpeg (PyAV).

libsndfile (``soundfile``) reads WAV, FLAC, OGG/Vorbis/Opus and MP3 and seeks to the sample. Everything else
(M4A/AAC, WMA, AMR, video containers with an audio track) goes through PyAV, whose wheels ship FFmpeg's
decoders. Both give ``[n, C]`` float32 blocks at the file's own rate, so a caller never decodes a whole
hour-long file at once; :class:`Resampler` turns blocks into 16 kHz blocks without seams.

Sample counts are the truth here: spans are in samples of the file's rate, seconds are derived.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import soundfile as sf
import soxr

from ser_models import io as storage
from ser_models.exceptions import AudioError

#: Formats listed in the docs as decoding: libsndfile's, then FFmpeg's through PyAV (by extension).
LIBSNDFILE_FORMATS = ("wav", "flac", "ogg", "opus", "mp3", "aiff", "au")
FFMPEG_FORMATS = ("m4a", "aac", "mp4", "wma", "amr", "webm", "mka", "3gp")
#: Samples per block read from a file (per channel, at the file's rate): 10 s at 16 kHz.
DEFAULT_BLOCK_FRAMES = 160_000


class AudioStream:
    """An open audio file read in blocks. Use :func:`open_audio` (a context manager).

    Attributes:
        path: the file (local path or URI).
        sample_rate: the file's rate in Hz.
        channels: the file's channel count.
        frames: samples per channel; exact for libsndfile, estimated from the container for FFmpeg formats
            (``exact_frames`` says which; 0 when the container has no duration). An estimate is never a limit:
            a container may claim a second and hold an hour, so limits count decoded samples.
        backend: ``"libsndfile"`` or ``"ffmpeg"``.
        reached: the sample position just past the last sample :meth:`blocks` handed out, in the file's
            timeline (FFmpeg's from frame timestamps, so a stream whose first frame starts late has handed out
            fewer samples than this): a read that stopped at ``stop`` with ``reached == stop`` may go on.
    """

    def __init__(self, path: str, sample_rate: int, channels: int, frames: int, backend: str, exact: bool):
        self.path = path
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.frames = int(frames)
        self.backend = backend
        self.exact_frames = exact
        self.reached = 0

    @property
    def duration(self) -> float:
        """Length in seconds (``frames / sample_rate``)."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    def blocks(self, block_frames: int = DEFAULT_BLOCK_FRAMES, start: int = 0,
               stop: int | None = None) -> Iterator[np.ndarray]:
        """Yield ``[n, C]`` float32 blocks of at most ``block_frames`` samples covering ``[start, stop)``."""
        raise NotImplementedError

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The span ``[start, stop)`` in samples as one ``[n, C]`` float32 array (for short spans)."""
        parts = list(self.blocks(DEFAULT_BLOCK_FRAMES, start, stop))
        return np.concatenate(parts) if parts else np.zeros((0, self.channels), np.float32)


class _SndfileStream(AudioStream):
    def __init__(self, path: str, fh: sf.SoundFile):
        super().__init__(path, fh.samplerate, fh.channels, fh.frames, "libsndfile", exact=True)
        self._fh = fh

    def blocks(self, block_frames: int = DEFAULT_BLOCK_FRAMES, start: int = 0,
               stop: int | None = None) -> Iterator[np.ndarray]:
        stop = self.frames if stop is None else min(stop, self.frames)
        self._fh.seek(start)
        pos = start
        while pos < stop:
            data = self._fh.read(min(block_frames, stop - pos), dtype="float32", always_2d=True)
            if len(data) == 0:
                return
            pos += len(data)
            self.reached = pos
            yield data


class _FFmpegStream(AudioStream):
    def __init__(self, path: str, container: Any):
        import av

        self._av = av
        self._container = container
        self._stream = container.streams.audio[0]
        ctx = self._stream.codec_context
        rate = ctx.sample_rate or self._stream.rate
        channels = ctx.channels if hasattr(ctx, "channels") else len(ctx.layout.channels)
        if self._stream.duration is not None:
            frames = int(round(float(self._stream.duration * self._stream.time_base) * rate))
        elif container.duration is not None:
            frames = int(round(container.duration / 1_000_000 * rate))
        else:
            frames = 0
        super().__init__(path, rate, channels, frames, "ffmpeg", exact=False)

    def _frames_from(self, start: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(first sample, [n, C] float32)`` per decoded frame, from the last keyframe at or before ``start``."""
        av = self._av
        if start > 0:
            self._container.seek(int(start / self.sample_rate * 1_000_000), any_frame=False, backward=True)
        else:
            self._container.seek(0)
        # Packed float32 at the file's own rate and layout: one array per frame, no per-channel planes.
        resampler = av.AudioResampler(format="flt", layout=self._stream.codec_context.layout, rate=self.sample_rate)
        pos = None
        for frame in self._container.decode(self._stream):
            if pos is None or frame.pts is not None:
                pos = (int(round(float(frame.pts * frame.time_base) * self.sample_rate))
                       if frame.pts is not None else 0)
            for out in resampler.resample(frame):
                arr = out.to_ndarray().reshape(-1, self.channels)
                yield pos, arr
                pos += len(arr)

    def blocks(self, block_frames: int = DEFAULT_BLOCK_FRAMES, start: int = 0,
               stop: int | None = None) -> Iterator[np.ndarray]:
        buf: list[np.ndarray] = []
        held = 0
        for first, arr in self._frames_from(start):
            if stop is not None and first >= stop:
                break
            lo = max(0, start - first)
            hi = len(arr) if stop is None else min(len(arr), stop - first)
            if hi <= lo:
                continue
            buf.append(arr[lo:hi])
            held += hi - lo
            end = first + hi  # timeline position just past the buffered samples
            while held >= block_frames:
                joined = np.concatenate(buf)
                rest = joined[block_frames:]
                self.reached = end - len(rest)
                yield np.ascontiguousarray(joined[:block_frames], dtype=np.float32)
                buf, held = ([rest] if len(rest) else []), len(rest)
        if held:
            self.reached = end
            yield np.ascontiguousarray(np.concatenate(buf), dtype=np.float32)


@contextlib.contextmanager
def open_audio(path: str) -> Iterator[AudioStream]:
    """Open ``path`` (a local path or ``pyarrow.fs`` URI) for block reads, libsndfile first, then FFmpeg.

    Raises:
        AudioError: ``missing_file``, ``empty`` (0 bytes) or ``unreadable`` (neither decoder reads it; the
            detail has both decoders' messages).
    """
    try:
        fs, in_fs = storage.filesystem(path)
        info = fs.get_file_info(in_fs)
    except (OSError, ValueError) as exc:  # unknown scheme, unreachable store
        raise AudioError("unreadable", f"{path}: {type(exc).__name__}: {exc}") from exc
    if info.type == pafs.FileType.NotFound:
        raise AudioError("missing_file", f"no such file: {path}")
    if info.size == 0:
        raise AudioError("empty", f"0-byte file: {path}")
    local = storage.is_local(path)
    with contextlib.ExitStack() as stack:
        try:
            # Local files by name (libsndfile's own I/O); remote ones through a seekable pyarrow file.
            source = str(storage.local_path(path)) if local else stack.enter_context(fs.open_input_file(in_fs))
            fh = stack.enter_context(sf.SoundFile(source))
            stream: AudioStream = _SndfileStream(path, fh)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as snd_exc:
            stream = _open_ffmpeg(path, fs, in_fs, local, stack, snd_exc)
        yield stream


def _open_ffmpeg(path: str, fs, in_fs: str, local: bool, stack: contextlib.ExitStack, snd_exc: Exception) -> AudioStream:
    try:
        import av
    except ImportError:  # pragma: no cover - av is a core dependency
        raise AudioError("unreadable", f"{path}: libsndfile cannot read it ({snd_exc}) and PyAV is not "
                                       "installed (pip install av)") from snd_exc
    try:
        source = str(storage.local_path(path)) if local else stack.enter_context(fs.open_input_file(in_fs))
        container = stack.enter_context(av.open(source, mode="r"))
        if not container.streams.audio:
            raise AudioError("unreadable", f"{path}: no audio stream (FFmpeg found {len(container.streams)} "
                                           "other streams)")
        return _FFmpegStream(path, container)
    except AudioError:
        raise
    except Exception as exc:  # noqa: BLE001 - FFmpeg raises many error types; all mean "not decodable"
        raise AudioError("unreadable", f"{path}: libsndfile: {snd_exc}; FFmpeg: {type(exc).__name__}: "
                                       f"{exc}") from exc


def read_span(path: str, start_s: float | None = None, end_s: float | None = None,
              channel: int | None = None) -> tuple[np.ndarray, int, int]:
    """Read ``[start_s, end_s)`` seconds of a file, one channel or their mean, at the file's own rate.

    Args:
        path: local path or URI, any format :func:`open_audio` reads.
        start_s: start in seconds (``None`` / NaN = 0).
        end_s: end in seconds (``None`` / NaN = end of file).
        channel: 0-based channel to keep; ``None`` averages the channels.

    Returns:
        ``(wav [T] float32 at the file's rate, sample_rate Hz, channels in the file)``.

    Raises:
        AudioError: as :func:`open_audio`, ``bad_segment`` (the span or channel is outside the file), or
            ``empty`` (no samples in the span).
    """
    with open_audio(path) as stream:
        sr = stream.sample_rate
        if channel is not None and not 0 <= channel < stream.channels:
            raise AudioError("bad_segment", f"{path}: channel {channel} does not exist (the file has "
                                            f"{stream.channels} channel(s), numbered from 0)")
        first = 0 if start_s is None or math.isnan(start_s) else int(round(start_s * sr))
        last = None if end_s is None or math.isnan(end_s) else int(round(end_s * sr))
        data = stream.read(first, last)
    if len(data) == 0:
        raise AudioError("empty", f"no samples in {path} (segment {start_s}-{end_s} s)")
    wav = data[:, channel] if channel is not None else (data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1
                                                        else data[:, 0])
    return np.ascontiguousarray(wav, dtype=np.float32), sr, stream.channels


class Resampler:
    """Seamless streaming resampling of ``[n, C]`` blocks from ``in_rate`` to ``out_rate`` (soxr, HQ).

    Blocks resampled one after another equal the whole signal resampled at once, to float precision, so
    block boundaries leave no clicks or gaps.
    """

    def __init__(self, in_rate: int, out_rate: int, channels: int):
        self.passthrough = in_rate == out_rate
        self._stream = None if self.passthrough else soxr.ResampleStream(in_rate, out_rate, channels,
                                                                         dtype="float32", quality="HQ")

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """Resample ``block [n, C]`` float32; pass ``last=True`` with the final block to flush the filter."""
        if self.passthrough:
            return block
        return self._stream.resample_chunk(np.ascontiguousarray(block, dtype=np.float32), last=last)


__all__ = ["DEFAULT_BLOCK_FRAMES", "FFMPEG_FORMATS", "LIBSNDFILE_FORMATS", "AudioStream", "Resampler",
           "open_audio", "read_span"]

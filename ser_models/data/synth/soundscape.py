"""Streaming pieces of long recordings: noise floor, music bed, telephone band and a block-wise file writer.

Each piece renders any stretch of a recording on its own (noise and music from their own generators or from
the sample index), so :mod:`ser_models.data.synth.recordings` never holds a whole file.
"""

from __future__ import annotations

import numpy as np
import soundfile as sf

from ser_models.data.synth.voice import SYNTH_RATE, _fast_fft_length

SUBTYPES = {"wav": "PCM_16", "flac": "PCM_16", "mp3": "MPEG_LAYER_III"}


def band_mask(n: int, rate: int, band: tuple[float, float] | None) -> np.ndarray:
    """rfft gains for an n-point FFT: 1 / sqrt(f) (pink) when ``band`` is None, else the band with 100-200 Hz
    linear tapers (a brick wall would ring)."""
    f = np.fft.rfftfreq(n, 1.0 / rate)
    if band is None:
        return 1.0 / np.sqrt(np.maximum(f, 50.0))
    return np.clip((f - band[0] + 50.0) / 100.0, 0, 1) * np.clip((band[1] + 100.0 - f) / 200.0, 0, 1)


def phone_band(wav: np.ndarray) -> np.ndarray:
    """Telephone band (300-3400 Hz) of a 16 kHz utterance; zero-padded so the FFT filter does not wrap."""
    m = _fast_fft_length(len(wav) + 512)
    return np.fft.irfft(np.fft.rfft(wav, n=m) * band_mask(m, SYNTH_RATE, (300.0, 3400.0)), n=m)[: len(wav)]


class NoiseStream:
    """Endless unit-RMS noise, [C, n] per :meth:`read`: independent 16384-sample FFT-shaped chunks joined by
    equal-power 512-sample cross-fades (independent chunks keep the variance constant through the fade)."""

    L, X = 16384 - 512, 512  # L + X a power of two: fast FFTs

    def __init__(self, rng: np.random.Generator, rate: int, channels: int, band: tuple[float, float] | None):
        self.rng, self.C, self.mask = rng, channels, band_mask(self.L + self.X, rate, band)
        self.fade = np.sin(0.5 * np.pi * (np.arange(self.X) + 0.5) / self.X)
        self.prev = self._chunk()
        self.buf = self.prev[:, : self.L]

    def _chunk(self) -> np.ndarray:
        x = np.fft.irfft(np.fft.rfft(self.rng.standard_normal((self.C, self.L + self.X)), axis=1) * self.mask,
                         n=self.L + self.X, axis=1)
        return x / np.sqrt(np.mean(x**2, axis=1, keepdims=True))

    def read(self, n: int) -> np.ndarray:
        parts, have = [self.buf], self.buf.shape[1]
        while have < n:
            nxt = self._chunk()
            parts += [self.prev[:, self.L:] * self.fade[::-1] + nxt[:, : self.X] * self.fade, nxt[:, self.X: self.L]]
            have += self.L
            self.prev = nxt
        out = np.concatenate(parts, axis=1)
        self.buf = out[:, n:]
        return out[:, :n]


class MusicBed:
    """Bass + triad pads over a 4-chord loop, 2 bars per chord with 1 s raised-cosine cross-fades and a slow
    swell, a kick on every beat and a 3 kHz tick on the off-beats: steady pitches and a regular pulse. A pure
    function of the sample index, so any block renders alone."""

    PROGRESSIONS = (((0, 4, 7), (7, 11, 14), (9, 12, 16), (5, 9, 12)),  # I-V-vi-IV
                    ((0, 3, 7), (8, 12, 15), (3, 7, 10), (10, 14, 17)))  # i-VI-III-VII
    TABLE = 8192  # one period per note: a table look-up instead of 5 sines per sample (error < -45 dB)

    def __init__(self, rng: np.random.Generator, rate: int):
        self.rate, self.beat = rate, 60.0 / rng.uniform(70.0, 110.0)
        self.chord_s = 8 * self.beat
        root = int(rng.integers(45, 57))  # MIDI A2..G#3: top harmonic < 3 kHz, below any file's Nyquist
        prog = self.PROGRESSIONS[int(rng.integers(2))]
        self.freqs = [440.0 * 2.0 ** ((np.array([root - 12, *(root + x for x in tri)]) - 69) / 12) for tri in prog]
        x = 2 * np.pi * np.arange(self.TABLE) / self.TABLE
        self.tables = [[sum(0.5 / h**1.5 * np.sin(h * x + p) for h, p in enumerate(rng.uniform(0, 2 * np.pi, 5), 1))
                        for _ in range(4)] for _ in prog]

    def render(self, n0: int, n: int) -> np.ndarray:
        """Samples ``n0 .. n0 + n`` at the file rate: [n] float64, peak about 2."""
        t = (n0 + np.arange(n)) / self.rate
        out = np.zeros(n)
        for k in range(max(0, int(t[0] / self.chord_s) - 1), int(t[-1] / self.chord_s) + 2):
            x = t - k * self.chord_s
            w = np.clip(np.minimum(x + 0.5, self.chord_s + 0.5 - x), 0.0, 1.0)
            m = np.flatnonzero(w > 0)
            if len(m):
                env = (0.5 - 0.5 * np.cos(np.pi * w[m])) * (0.8 + 0.2 * np.sin(np.pi * x[m] / self.chord_s))
                for f, table in zip(self.freqs[k % 4], self.tables[k % 4]):
                    out[m] += env * table[((f * t[m]) % 1.0 * self.TABLE).astype(np.int64)]
        for b in range(max(0, int(t[0] / self.beat * 2) - 1), int(t[-1] / self.beat * 2) + 1):
            dt = t - b * self.beat / 2
            m = np.flatnonzero((dt >= 0) & (dt < 0.4))
            if b % 2 == 0:  # kick: a decaying sine gliding from ~135 Hz down to 45 Hz
                ph = 45.0 * dt[m] + 3.6 * (1.0 - np.exp(-dt[m] / 0.04))
                out[m] += 1.5 * np.exp(-dt[m] / 0.08) * np.sin(2 * np.pi * ph)
            else:
                out[m] += 0.3 * np.exp(-dt[m] / 0.015) * np.sin(2 * np.pi * 3000.0 * dt[m])
        return out


class BlockWriter:
    """Block-wise writer: soundfile for WAV/FLAC (PCM16) and MP3, PyAV's AAC encoder in an MP4 (``ipod``) for
    M4A. Blocks of any size go in; nothing but the codec's own buffer is kept.

    Args:
        path: file to write. file_format: ``wav``, ``flac``, ``mp3`` or ``m4a``. rate: Hz. channels: 1 or 2.
    """

    def __init__(self, path: str, file_format: str, rate: int, channels: int):
        self.rate, self.pts = rate, 0
        if file_format == "m4a":
            import av  # only M4A needs it; the lazy import keeps the synth package light

            self.av = av.open(path, "w", format="ipod")
            self.stream = self.av.add_stream("aac", rate=rate, layout="mono" if channels == 1 else "stereo")
            self.stream.bit_rate = (24000 if rate <= 8000 else 64000) * channels
            self.sf = None
        else:
            self.sf = sf.SoundFile(path, "w", rate, channels, format=file_format.upper(),
                                   subtype=SUBTYPES[file_format])

    def write(self, block: np.ndarray) -> None:
        """block: [C, n] float in [-1, 1]."""
        if self.sf is not None:
            self.sf.write(block.T.astype(np.float32))
            return
        import av

        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, dtype=np.float32), format="fltp",
                                           layout=self.stream.layout.name)
        frame.sample_rate, frame.pts = self.rate, self.pts
        self.pts += block.shape[1]
        self.av.mux(self.stream.encode(frame))

    def close(self) -> None:
        if self.sf is not None:
            self.sf.close()
        else:
            self.av.mux(self.stream.encode(None))
            self.av.close()

"""The source-filter voice: glottal source, formant filtering in the STFT domain, noise, one clip."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import soxr

from ser_models.data.synth.language import FORMANT_BANDWIDTHS, Segments, plan_utterance
from ser_models.data.synth.prosody import PROSODY_PARAMS, Prosody, Speaker, affect_dimensions, draw_prosody
from ser_models.data.synth.spec import FILE_FORMATS, NOISE_KINDS, SAMPLE_RATES, STYLES

# ---------------------------------------------------------------------------------------------------------
# Signal generation
# ---------------------------------------------------------------------------------------------------------
SYNTH_RATE = 16000  # every voice is rendered at 16 kHz, then resampled with soxr to the file's rate
_CTRL_RATE = 1000  # control rate of F0 and segment envelopes (Hz); linear upsampling to audio rate
_UP = SYNTH_RATE // _CTRL_RATE
_FRAME = 512  # STFT frame (32 ms at 16 kHz); hop = frame / 2
# FFT length: the frame plus 16 ms of zero padding for the filter tails. The narrowest formant (~64 Hz)
# has decayed by ~30 dB after 256 samples, so what wraps around is inaudible, at 3/4 the cost of 2x padding.
_NFFT = _FRAME + _FRAME // 2


def _upsample(ctrl: np.ndarray) -> np.ndarray:
    """Linear interpolation from the control rate to 16 kHz: [M] -> [(M - 1) * 16]."""
    w = np.arange(_UP, dtype=np.float32) / _UP
    c = ctrl.astype(np.float32)
    return (c[:-1, None] + (c[1:] - c[:-1])[:, None] * w[None, :]).ravel()


def _segment_times(seg: Segments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dur = np.asarray(seg.dur)
    starts = np.concatenate([[0.0], np.cumsum(dur)[:-1]])
    return dur, starts, starts + dur / 2


def f0_contour(seg: Segments, base_f0: float, prosody: Prosody, n_ctrl: int, rng: np.random.Generator) -> np.ndarray:
    """F0 at the 1 kHz control rate: base x emotion shift, declination, accent bumps on vowels, slow drift.

    Returns:
        f0: [n_ctrl] float64, Hz, clipped to [55, 600].
    """
    dur, _, centres = _segment_times(seg)
    accent = np.asarray(seg.accent)
    tc = np.arange(n_ctrl) / _CTRL_RATE
    total = max(tc[-1], 1e-3)
    declination = rng.uniform(1.5, 3.5) * tc / total
    on = accent > 0
    width = np.maximum(dur[on] * 0.7, 0.04)
    bumps = (accent[on] * prosody.f0_range_st)[None, :] * np.exp(
        -0.5 * ((tc[:, None] - centres[on][None, :]) / width[None, :]) ** 2
    )
    knots = rng.normal(0.0, 0.4, size=int(total / 0.3) + 2)  # slow drift, ~0.4 st
    drift = np.interp(tc, np.linspace(0.0, total, len(knots)), knots)
    st = prosody.f0_shift_st - declination + bumps.sum(axis=1) + drift
    return np.clip(base_f0 * 2.0 ** (st / 12.0), 55.0, 600.0)


def _pulse_table(open_quotient: float, size: int = 4096) -> np.ndarray:
    """One period of Rosenberg-like glottal flow sampled on ``size`` phase points: opening cosine half over
    60 % of the open phase, closing quarter-cosine over 40 %, then closed."""
    frac = np.arange(size) / size
    tp, tn = 0.6 * open_quotient, 0.4 * open_quotient
    return np.where(
        frac < tp,
        0.5 * (1.0 - np.cos(np.pi * frac / tp)),
        np.where(frac < tp + tn, np.cos(0.5 * np.pi * np.minimum((frac - tp) / tn, 1.0)), 0.0),
    ).astype(np.float32)


def glottal_source(
    f0: np.ndarray, open_quotient: float, jitter: float, shimmer: float, breathiness: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Differentiated Rosenberg-like glottal flow with jitter, shimmer and aspiration noise, at 16 kHz.

    Args:
        f0: [T] Hz per sample.
        open_quotient: open phase as a fraction of the period.
        jitter, shimmer: per-period relative sds of period length and amplitude.
        breathiness: aspiration noise level, louder while the glottis is open.

    Returns:
        source: [T] float32, roughly unit-scale.
    """
    phase0 = np.cumsum(f0, dtype=np.float64) / SYNTH_RATE
    n_periods = int(phase0[-1]) + 3
    f0j = f0 * (1.0 + jitter * rng.standard_normal(n_periods, dtype=np.float32))[phase0.astype(np.int64)]
    phase = np.cumsum(f0j, dtype=np.float64) / SYNTH_RATE
    idx = phase.astype(np.int64)
    table = _pulse_table(open_quotient)
    # Table look-up instead of evaluating cosines per sample: 4096 points per period is far finer than a
    # 16 kHz period (<= 290 samples).
    flow = table[((phase - idx) * len(table)).astype(np.int64)]
    flow *= (1.0 + shimmer * rng.standard_normal(int(idx[-1]) + 2, dtype=np.float32))[idx]
    src = np.diff(flow, prepend=np.float32(0.0)) * np.float32(SYNTH_RATE / 1000.0)  # lip radiation (d/dt)
    if breathiness > 0:
        src += np.float32(3.0 * breathiness) * rng.standard_normal(len(src), dtype=np.float32) * (0.3 + flow)
    return src


def _segment_envelope(seg: Segments, values: Sequence[float], n_ctrl: int) -> np.ndarray:
    """Per-segment levels with 8 ms linear ramps at the edges, at the control rate: [n_ctrl]."""
    dur, starts, _ = _segment_times(seg)
    ramp = np.minimum(0.008, dur / 4)
    xp = np.stack([starts + ramp, starts + dur - ramp], axis=1).ravel()
    fp = np.repeat(np.asarray(values, dtype=np.float64), 2)
    return np.interp(np.arange(n_ctrl) / _CTRL_RATE, xp, fp)


def _resonator_coefficients(freq: np.ndarray, bw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Klatt resonator ``y[n] = A x[n] + B y[n-1] + C y[n-2]`` at 16 kHz (unit gain at DC).

    Args:
        freq, bw: centre frequencies and bandwidths, Hz, any shape [...].

    Returns:
        (A, B, C), each [...].
    """
    r = np.exp(-np.pi * bw / SYNTH_RATE)
    b = 2.0 * r * np.cos(2.0 * np.pi * freq / SYNTH_RATE)
    c = -r * r
    return 1.0 - b - c, b, c


def _denominator_polynomial(factors: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Multiply per-frame second-order denominators ``1 - B z^-1 - C z^-2`` into one polynomial.

    Evaluating one order-2k polynomial on the FFT bins is a single small matmul, instead of k complex
    [frames, bins] products.

    Args:
        factors: list of (B [F], C [F]).

    Returns:
        coefficients of ``z^0 .. z^-2k``: [F, 2k + 1] float64.
    """
    p = np.zeros((len(factors[0][0]), 2 * len(factors) + 1))
    p[:, 0] = 1.0
    for k, (b, c) in enumerate(factors):
        top = 2 * k + 2
        q = p[:, : top + 1].copy()
        q[:, 1:top + 1] -= b[:, None] * p[:, :top]
        q[:, 2:top + 1] -= c[:, None] * p[:, : top - 1]
        p[:, : top + 1] = q
    return p


def _inverse_polynomial_response(poly: np.ndarray, gain: np.ndarray | float = 1.0) -> np.ndarray:
    """``gain / poly(e^{-jw})`` on the padded FFT's bins: [F, K] complex64.

    Real and imaginary parts are two real einsums: no complex temporaries, and no BLAS call whose thread
    pool would fight the corpus workers for cores.
    """
    n = poly.shape[1]
    re = np.einsum("fk,kb->fb", poly, _ZCOS[:n])
    im = np.einsum("fk,kb->fb", poly, _ZSIN[:n])
    scale = np.asarray(gain, dtype=np.float64).reshape(-1, 1) / (re * re + im * im)
    out = np.empty(re.shape, dtype=np.complex64)
    out.real = re * scale
    out.imag = -im * scale
    return out


_K = _NFFT // 2 + 1
# z^-k = e^{-jwk}, k = 0..10, on the bins of the padded FFT, split in real and imaginary parts: [11, K].
_ZCOS = np.cos(2 * np.pi * np.outer(np.arange(11), np.arange(_K)) / _NFFT)
_ZSIN = -np.sin(2 * np.pi * np.outer(np.arange(11), np.arange(_K)) / _NFFT)
_WIN = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_FRAME) / _FRAME)).astype(np.float32)  # periodic Hann


def render_utterance(seg: Segments, speaker: Speaker, prosody: Prosody, rng: np.random.Generator) -> np.ndarray:
    """Synthesise the clean voice for planned segments at 16 kHz.

    Returns:
        wav: [T] float32 at 16 kHz, unnormalised (T is a multiple of 16 samples, i.e. whole milliseconds).
    """
    n_ctrl = int(round(sum(seg.dur) * _CTRL_RATE)) + 1
    f0 = _upsample(f0_contour(seg, speaker.base_f0, prosody, n_ctrl, rng))
    n = len(f0)
    voice_env = _segment_envelope(seg, seg.voice, n_ctrl)
    noise_env = _segment_envelope(seg, seg.noise, n_ctrl)
    voiced = glottal_source(f0, prosody.open_quotient, prosody.jitter, prosody.shimmer, prosody.breathiness, rng)
    voiced *= _upsample(voice_env)
    noise = rng.standard_normal(n, dtype=np.float32) * _upsample(noise_env)

    N, H = _FRAME, _FRAME // 2
    n_frames = -(-(n + H) // H)

    def frames(x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        buf = np.zeros((n_frames + 1) * H, dtype=np.float32)
        buf[H:H + n] = x
        view = np.lib.stride_tricks.sliding_window_view(buf, N)[::H][:n_frames]
        return (view if rows is None else view[rows]) * _WIN

    # Frame i covers signal samples [(i - 1) H, (i + 1) H): its centre is i H.
    t_frames = np.arange(n_frames) * (H / SYNTH_RATE)
    dur, starts, centres = _segment_times(seg)
    has_f = np.array([f is not None for f in seg.formants])
    targets = np.array([f for f in seg.formants if f is not None]) * speaker.vtl_factor  # [S', 4]
    formants = np.stack([np.interp(t_frames, centres[has_f], targets[:, j]) for j in range(4)], axis=1)
    formants = np.minimum(formants, 0.45 * SYNTH_RATE)
    bw_scale = np.interp(t_frames, centres, np.asarray(seg.bw_scale))
    bws = FORMANT_BANDWIDTHS[None, :] * (bw_scale * speaker.bandwidth_factor)[:, None]
    a, b, c = _resonator_coefficients(formants, bws)
    # Spectral tilt: one-pole low-pass (1 - t) / (1 - t z^-1), folded in as a degenerate second-order factor.
    tilt = np.full(n_frames, prosody.tilt)
    poly = _denominator_polynomial([(b[:, j], c[:, j]) for j in range(4)] + [(tilt, np.zeros(n_frames))])
    gain = a.prod(axis=1) * (1.0 - prosody.tilt)
    spec = np.fft.rfft(frames(voiced), n=_NFFT)
    spec *= _inverse_polynomial_response(poly, gain)

    # Noise path only where frames hear any noise (consonants are ~1/4 of the time).
    frame_noise = np.interp(t_frames, np.arange(n_ctrl) / _CTRL_RATE, noise_env)
    rows = np.flatnonzero(np.convolve(frame_noise > 0, np.ones(3), mode="same") > 0)
    if len(rows):
        seg_idx = np.clip(np.searchsorted(starts, t_frames[rows], side="right") - 1, 0, len(dur) - 1)
        fc = np.minimum(np.asarray(seg.noise_fc)[seg_idx], 0.42 * SYNTH_RATE)
        _, b, c = _resonator_coefficients(fc, np.asarray(seg.noise_bw)[seg_idx])
        h_noise = _inverse_polynomial_response(_denominator_polynomial([(b, c)]))
        h_noise *= 0.5 / np.abs(h_noise).max(axis=1, keepdims=True)  # peak gain 0.5: level set by seg.noise
        spec[rows] += np.fft.rfft(frames(noise, rows), n=_NFFT) * h_noise

    y = np.fft.irfft(spec, n=_NFFT)  # [F, 3H] float32: filter tails land in the zero padding
    blocks = np.zeros((n_frames + 2, H), dtype=np.float32)
    for j in range(_NFFT // H):
        blocks[j:j + n_frames] += y[:, j * H:(j + 1) * H]
    return blocks.ravel()[H:H + n]


def _fast_fft_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: pocketfft is fast on those, slow on large prime factors."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def background_noise(kind: str, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS background noise at 16 kHz: ``white``, ``pink`` (1/f power) or ``babble`` (speech-shaped
    noise with the summed syllabic envelopes of six distant talkers).

    Returns:
        noise: [n_samples] float32.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise kind must be one of {NOISE_KINDS}, got {kind!r}")
    if kind == "white":
        x = rng.standard_normal(n_samples, dtype=np.float32)
        return x / np.float32(np.sqrt(np.mean(x**2)) + 1e-12)
    m = _fast_fft_length(n_samples)
    spec = np.fft.rfft(rng.standard_normal(m, dtype=np.float32))
    f = np.fft.rfftfreq(m, 1.0 / SYNTH_RATE).astype(np.float32)
    if kind == "pink":
        shape = 1.0 / np.sqrt(np.maximum(f, 20.0))
    else:
        # Long-term speech spectrum: voiced bumps at 500 and 1500 Hz, -12 dB/oct above 2 kHz.
        shape = (np.exp(-0.5 * ((f - 500) / 300) ** 2) + 0.6 * np.exp(-0.5 * ((f - 1500) / 500) ** 2)
                 + 0.25 / (1.0 + (f / 2000.0) ** 2))
    x = np.fft.irfft(spec * shape, n=m)[:n_samples]
    if kind == "babble":
        n_ctrl = -(-n_samples // _UP) + 1
        knots = np.abs(rng.normal(size=(6, int(n_ctrl / 125) + 2)))  # ~8 syllables/s per talker
        tk = np.linspace(0.0, n_ctrl - 1, knots.shape[1])
        env = sum(np.interp(np.arange(n_ctrl), tk, k) for k in knots)
        x = x * _upsample(env)[:n_samples]
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """Everything the plan fixes about one clip (the rest is drawn from the clip's own seed)."""

    index: int
    utt_id: str
    speaker: Speaker
    emotion: str


def synthesize_clip(spec: ClipSpec, seed: int, sample_rate: int | None = None,
                    style: str = "mixed") -> tuple[np.ndarray, dict]:
    """Synthesise one clip: voice, background noise, loudness; deterministic in ``(seed, spec.index)``.

    Args:
        spec: the clip's speaker, emotion and index.
        seed: the corpus seed.
        sample_rate: force a rate (Hz); ``None`` draws one of ``SAMPLE_RATES``.
        style: a key of :data:`STYLES` (acted / natural / mixed).

    Returns:
        wav: [T] float32 in (-1, 1) at the clip's sample rate, and a dict of its parameters (``INFO_COLUMNS``
        minus ``utt_id``, plus ``arousal``, ``valence``, ``dominance``, ``transcript``).
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, spec.index)))
    sr = int(rng.choice(SAMPLE_RATES)) if sample_rate is None else int(sample_rate)
    file_format = str(rng.choice(FILE_FORMATS))
    look = STYLES[style]
    prosody = draw_prosody(spec.emotion, rng, spec.speaker.expressiveness * look.expressiveness, look.spread)
    arousal, valence, dominance = affect_dimensions(prosody, spec.emotion, rng)
    target = rng.uniform(1.5, 4.7)  # planning overshoots by up to one syllable
    seg, transcript = plan_utterance(spec.speaker.language, prosody.rate_sps, target, rng)
    voice = render_utterance(seg, spec.speaker, prosody, rng)
    kind = str(rng.choice(NOISE_KINDS))
    snr_db = float(rng.uniform(*look.snr_db))
    speech_rms = float(np.sqrt(np.mean(voice**2))) + 1e-9
    wav = voice + background_noise(kind, len(voice), rng) * np.float32(speech_rms * 10.0 ** (-snr_db / 20.0))
    if sr != SYNTH_RATE:
        # Band-limited to 8 kHz like upsampled wideband recordings; the pool must resample it back.
        wav = soxr.resample(wav, SYNTH_RATE, sr, quality="HQ")
    # Loudness is an emotion cue: the peak level follows the drawn energy (0.3-0.95 full scale, no clipping).
    peak = float(np.clip(0.65 * 10.0 ** (prosody.energy_db / 20.0), 0.3, 0.95))
    wav = (wav * (peak / (np.abs(wav).max() + 1e-9))).astype(np.float32)
    info = {
        "duration": round(len(wav) / sr, 4), "sample_rate": sr, "file_format": file_format, "noise": kind,
        "snr_db": round(snr_db, 2), "gender": spec.speaker.gender,
        "f0_mean_hz": round(spec.speaker.base_f0 * 2.0 ** (prosody.f0_shift_st / 12.0), 2),
        **{p: round(getattr(prosody, p), 5) for p in PROSODY_PARAMS if p != "f0_shift_st"},
        "arousal": arousal, "valence": valence, "dominance": dominance, "transcript": transcript,
    }
    return wav, info

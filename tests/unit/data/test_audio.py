"""Audio decode, resample, validation and pool byte encoding (pure functions, real files on disk)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import soxr

from ser_models.data.audio import (
    REASONS,
    decode_batch,
    decode_clip,
    decode_pool_audio,
    encode_pool_audio,
    load_clip,
    rms_dbfs,
    validate,
)
from ser_models.data.config import PoolConfig
from ser_models.exceptions import AudioError, ConfigError


@dataclasses.dataclass
class Settings:
    min_duration: float = 0.5
    max_duration: float = 2.0
    long_policy: str = "crop"
    silence_db: float = -60.0
    audio_format: str = "pcm16"
    target_sample_rate: int = 16000


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(wav: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(wav * np.hanning(wav.size)))
    return float(np.fft.rfftfreq(wav.size, 1 / sr)[np.argmax(spec)])


def test_resample_keeps_frequency_and_length(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, sine(1000, 44100, 1.0), 44100, subtype="PCM_16")
    wav, sr, ch = load_clip(str(path))
    assert (sr, ch) == (44100, 1)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(wav.size - 16000) <= 1
    assert abs(peak_hz(wav, 16000) - 1000) < 2.0
    # HQ resampling keeps the amplitude: RMS of a 0.5 sine is 0.5 / sqrt(2)
    assert np.sqrt(np.mean(wav[1000:-1000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_stereo_downmix_is_channel_mean(tmp_path):
    path = tmp_path / "stereo.flac"
    left, right = sine(440, 16000, 1.0, 0.6), np.zeros(16000, np.float32)
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="PCM_16")
    wav, sr, ch = load_clip(str(path))
    assert (sr, ch) == (16000, 2)
    np.testing.assert_allclose(wav, left / 2, atol=1e-4)


def test_a_chosen_channel_of_a_stereo_wav_is_kept_not_averaged(tmp_path):
    path = tmp_path / "call.wav"
    left, right = sine(440, 22050, 2.0, 0.6), sine(880, 22050, 2.0, 0.1)
    sf.write(path, np.stack([left, right], axis=1), 22050, subtype="FLOAT")
    for channel, source in ((0, left), (1, right)):
        wav, sr, ch = load_clip(str(path), start=0.5, end=1.5, channel=channel)
        assert (sr, ch) == (22050, 2)
        expected = soxr.resample(source[11025:33075], 22050, 16000, quality="HQ")
        np.testing.assert_allclose(wav, expected, atol=1e-6)
    averaged, _, _ = load_clip(str(path), start=0.5, end=1.5, channel=-1)  # -1 = the channels averaged
    np.testing.assert_allclose(averaged, soxr.resample((left + right)[11025:33075] / 2, 22050, 16000, quality="HQ"),
                               atol=1e-6)
    with pytest.raises(AudioError) as err:
        load_clip(str(path), channel=2)
    assert err.value.reason == "bad_segment" and "channel 2" in err.value.detail


def write_stereo_m4a(path, left: np.ndarray, right: np.ndarray, sr: int) -> None:
    """AAC in an MP4 (``.m4a``) container, written with PyAV (FFmpeg's native AAC encoder)."""
    import av

    planes = np.stack([left, right]).astype(np.float32)
    with av.open(str(path), "w", format="ipod") as out:
        stream = out.add_stream("aac", rate=sr, layout="stereo")
        for i in range(0, planes.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes[:, i:i + 1024]), format="fltp",
                                               layout="stereo")
            frame.sample_rate = sr
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def test_m4a_decodes_through_ffmpeg_with_a_chosen_channel(tmp_path):
    path = tmp_path / "call.m4a"
    sr = 44100
    write_stereo_m4a(path, sine(440, sr, 2.0, 0.5), sine(880, sr, 2.0, 0.05), sr)
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(path))  # only FFmpeg reads it
    whole, orig_sr, channels = load_clip(str(path))
    assert (orig_sr, channels) == (sr, 2)
    # PyAV's AAC starts with 1024 unsignalled priming samples: durations agree to 0.1 s, not to the sample
    assert whole.size / 16000 == pytest.approx(2.0, abs=0.1)
    loud, _, _ = load_clip(str(path), start=0.5, end=1.5, channel=0)
    quiet, _, _ = load_clip(str(path), start=0.5, end=1.5, channel=1)
    mixed, _, _ = load_clip(str(path), start=0.5, end=1.5)
    assert loud.size == quiet.size == mixed.size == 16000
    # the chosen channel by its energy: 0.5 and 0.05 sines (RMS 0.354, 0.035); their mean in between
    assert rms_dbfs(loud) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.5)
    assert rms_dbfs(quiet) == pytest.approx(20 * np.log10(0.05 / np.sqrt(2)), abs=0.5)
    assert rms_dbfs(quiet) < rms_dbfs(mixed) < rms_dbfs(loud)
    assert abs(peak_hz(loud, 16000) - 440) < 3 and abs(peak_hz(quiet, 16000) - 880) < 3
    # FFmpeg's length is an estimate: a segment past the decoded end is still bad_segment
    for start, end in ((1.5, 2.6), (2.5, 3.0)):
        with pytest.raises(AudioError) as err:
            load_clip(str(path), start=start, end=end, channel=0)
        assert err.value.reason == "bad_segment", (start, end)
    with pytest.raises(AudioError) as err:
        load_clip(str(path), channel=3)
    assert err.value.reason == "bad_segment"


def test_segment_read_by_start_end(tmp_path):
    path = tmp_path / "ramp.wav"
    data = np.linspace(-0.5, 0.5, 16000 * 3, dtype=np.float32)
    sf.write(path, data, 16000, subtype="FLOAT")
    wav, _, _ = load_clip(str(path), start=1.0, end=2.5)
    np.testing.assert_array_equal(wav, data[16000:40000])


def test_crop_keeps_first_max_duration_and_reject_raises():
    wav = sine(300, 16000, 3.0)
    cropped = validate(wav, Settings(long_policy="crop"))
    np.testing.assert_array_equal(cropped, wav[:32000])
    with pytest.raises(AudioError) as err:
        validate(wav, Settings(long_policy="reject"))
    assert err.value.reason == "too_long"


def test_decode_clip_crops_long_file_before_resampling(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, sine(300, 22050, 5.0), 22050, subtype="PCM_16")
    _, num_samples, orig_sr, _ = decode_clip(str(path), None, None, Settings(long_policy="crop"))
    assert (num_samples, orig_sr) == (32000, 22050)


def _bad_files(tmp_path):
    """One real file per quarantine reason; returns {reason: (path, start, end, settings)}."""
    files = {}
    p = tmp_path / "absent.wav"
    files["missing_file"] = (p, None, None, Settings())
    p = tmp_path / "zero.wav"
    p.write_bytes(b"")
    files["empty"] = (p, None, None, Settings())
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio\n" * 50)
    files["unreadable"] = (p, None, None, Settings())
    p = tmp_path / "short.wav"
    sf.write(p, sine(300, 16000, 0.2), 16000)
    files["too_short"] = (p, None, None, Settings())
    p = tmp_path / "long.wav"
    sf.write(p, sine(300, 16000, 3.0), 16000)
    files["too_long"] = (p, None, None, Settings(long_policy="reject"))
    p = tmp_path / "nan.wav"
    sf.write(p, np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    files["non_finite"] = (p, None, None, Settings())
    p = tmp_path / "silent.wav"
    sf.write(p, np.zeros(16000, np.float32), 16000)
    files["silent"] = (p, None, None, Settings())
    p = tmp_path / "seg.wav"
    sf.write(p, sine(300, 16000, 1.0), 16000)
    files["bad_segment"] = (p, 0.5, 4.0, Settings())
    return files


def test_every_reason_code_is_triggered_by_a_real_file(tmp_path):
    files = _bad_files(tmp_path)
    assert set(files) == set(REASONS)
    for reason, (path, start, end, settings) in files.items():
        with pytest.raises(AudioError) as err:
            decode_clip(str(path), start, end, settings)
        assert err.value.reason == reason, (reason, err.value)
        assert err.value.detail


def test_corrupt_audio_bytes_are_unreadable(tmp_path):
    good = tmp_path / "good.flac"
    sf.write(good, sine(300, 16000, 1.0), 16000)
    bad = tmp_path / "corrupt.flac"
    raw = bytearray(good.read_bytes())
    raw[:64] = np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes()
    bad.write_bytes(bytes(raw))
    with pytest.raises(AudioError) as err:
        load_clip(str(bad))
    assert err.value.reason == "unreadable"


def test_silence_threshold_in_dbfs():
    quiet = sine(300, 16000, 1.0, amp=10 ** (-50 / 20) * np.sqrt(2))  # RMS = -50 dBFS
    assert rms_dbfs(quiet) == pytest.approx(-50, abs=0.05)
    validate(quiet, Settings(silence_db=-60))
    with pytest.raises(AudioError, match="silent"):
        validate(quiet, Settings(silence_db=-40))


@pytest.mark.parametrize("fmt", ["pcm16", "flac"])
def test_pool_audio_round_trip(fmt):
    wav = sine(523, 16000, 0.7, amp=0.9)
    wav[100] = 1.7  # out of range: clipped, not wrapped around
    data = encode_pool_audio(wav, fmt)
    back = decode_pool_audio(data, fmt)
    assert back.dtype == np.float32 and back.shape == wav.shape
    expected = np.clip(wav, -1, 1)
    np.testing.assert_allclose(back, expected, atol=1.0 / 16000)
    if fmt == "pcm16":
        assert len(data) == 2 * wav.size


def test_decode_batch_tags_rows_and_never_raises(tmp_path):
    files = _bad_files(tmp_path)
    good = tmp_path / "good.wav"
    sf.write(good, sine(300, 22050, 1.0), 22050)
    paths = [str(good), str(files["missing_file"][0]), str(files["unreadable"][0]), str(files["silent"][0])]
    batch = {
        "utt_id": np.array(["a", "b", "c", "d"], dtype=object),
        "path": np.array(paths, dtype=object),
        "start": np.full(4, np.nan),
        "end": np.full(4, np.nan),
        "speaker": np.array(["s1", None, "s2", None], dtype=object),
    }
    out = decode_batch(batch, Settings(audio_format="flac"))
    assert list(out["status"]) == ["ok", "missing_file", "unreadable", "silent"]
    assert out["num_samples"].dtype == np.int64 and out["num_samples"][0] == 16000
    assert out["duration"][0] == pytest.approx(1.0)
    assert list(out["orig_sample_rate"]) == [22050, 0, 0, 0]  # 0 for quarantined rows
    assert out["audio"][1] is None and out["detail"][0] is None and "absent.wav" in out["detail"][1]
    assert decode_pool_audio(out["audio"][0], "flac").size == 16000
    assert list(out["speaker"]) == ["s1", None, "s2", None]


def test_decode_batch_reads_each_rows_channel(tmp_path):
    path = tmp_path / "call.wav"
    left, right = sine(300, 16000, 1.0, 0.5), sine(300, 16000, 1.0, 0.05)
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    batch = {"utt_id": np.array(list("abcde"), dtype=object), "path": np.array([str(path)] * 5, dtype=object),
             "channel": np.array([0, 1, -1, np.nan, 5], dtype=np.float64)}
    out = decode_batch(batch, Settings(audio_format="pcm16"))
    assert list(out["status"]) == ["ok", "ok", "ok", "ok", "bad_segment"]
    levels = [rms_dbfs(decode_pool_audio(a, "pcm16")) for a in out["audio"][:4]]
    expected = [rms_dbfs(left), rms_dbfs(right), rms_dbfs((left + right) / 2), rms_dbfs((left + right) / 2)]
    np.testing.assert_allclose(levels, expected, atol=0.05)
    assert list(out["channel"])[:3] == [0, 1, -1]  # passed through for the pool


def test_pool_config_validation_names_the_key():
    with pytest.raises(ConfigError, match="long_policy"):
        PoolConfig(manifest="m.csv", long_policy="centre")
    with pytest.raises(ConfigError, match="max_duration"):
        PoolConfig(manifest="m.csv", min_duration=3.0, max_duration=2.0)
    with pytest.raises(ConfigError, match="manifest"):
        PoolConfig()

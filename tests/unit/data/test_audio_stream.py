"""Streaming decode: libsndfile and FFmpeg (PyAV) files in bounded blocks, spans, seamless resampling."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr

from ser_models.data.audio_stream import Resampler, open_audio, read_span
from ser_models.exceptions import AudioError
from ser_models.testing import write_m4a


def tones(seconds: float, sr: int) -> np.ndarray:
    """``[n, 2]``: 440 Hz on channel 0 throughout, 300 Hz on channel 1 from half-way."""
    t = np.arange(int(seconds * sr)) / sr
    return np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 300 * t) * (t >= seconds / 2)],
                    axis=1).astype(np.float32)


def test_wav_blocks_cover_the_file_exactly_and_spans_are_sample_exact(tmp_path):
    x = tones(7.3, 22050)
    sf.write(tmp_path / "a.wav", x, 22050, subtype="FLOAT")
    with open_audio(str(tmp_path / "a.wav")) as s:
        assert (s.backend, s.sample_rate, s.channels, s.frames) == ("libsndfile", 22050, 2, len(x))
        blocks = list(s.blocks(10_000))
        assert max(len(b) for b in blocks) == 10_000
        np.testing.assert_array_equal(np.concatenate(blocks), x)
    wav, sr, ch = read_span(str(tmp_path / "a.wav"), 1.0, 2.0, channel=1)
    np.testing.assert_array_equal(wav, x[22050:44100, 1])
    assert (sr, ch) == (22050, 2)


def test_m4a_decodes_through_ffmpeg_in_blocks_and_by_span(tmp_path):
    x = tones(6.0, 16000)
    path = str(tmp_path / "call.m4a")
    write_m4a(path, x, 16000)
    with pytest.raises(sf.LibsndfileError):
        sf.info(path)  # libsndfile cannot read it: this is the FFmpeg path
    with open_audio(path) as s:
        assert (s.backend, s.sample_rate, s.channels) == ("ffmpeg", 16000, 2)
        blocks = list(s.blocks(5_000))
        assert max(len(b) for b in blocks) == 5_000
        total = sum(len(b) for b in blocks)
    assert abs(total - len(x)) <= 2048  # AAC frames of 1024 samples, and the encoder's priming
    quiet, _, _ = read_span(path, 0.5, 2.5, channel=1)
    loud, _, _ = read_span(path, 3.5, 5.5, channel=1)
    assert len(loud) == 32000
    assert np.sqrt(np.mean(loud**2)) > 0.1 > 100 * np.sqrt(np.mean(quiet**2))  # channel 1 starts at 3 s
    mixed, _, _ = read_span(path, 3.5, 5.5)
    assert np.sqrt(np.mean(mixed**2)) < np.sqrt(np.mean(loud**2)) + 0.1


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"this is not audio" * 50, "unreadable")])
def test_bad_files_raise_their_reason(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError) as err:
        read_span(str(path))
    assert err.value.reason == reason and str(path) in err.value.detail


def test_missing_file_and_missing_channel(tmp_path):
    with pytest.raises(AudioError) as err:
        read_span(str(tmp_path / "nope.wav"))
    assert err.value.reason == "missing_file"
    sf.write(tmp_path / "m.wav", np.zeros(1600, np.float32), 16000)
    with pytest.raises(AudioError, match="channel 1 does not exist"):
        read_span(str(tmp_path / "m.wav"), channel=1)


def test_streaming_resampler_equals_one_shot_resampling():
    x = np.random.default_rng(0).standard_normal((44100 * 3, 2)).astype(np.float32)
    r = Resampler(44100, 16000, 2)
    out = np.concatenate([r(x[:50_000]), r(x[50_000:100_001]), r(x[100_001:], last=True)])
    np.testing.assert_allclose(out, soxr.resample(x, 44100, 16000, quality="HQ"), atol=1e-6)


def test_mp3_decodes_through_libsndfile_by_span(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot write MP3")
    x = tones(4.0, 16000)
    sf.write(tmp_path / "a.mp3", x, 16000, format="MP3")
    with open_audio(str(tmp_path / "a.mp3")) as s:
        assert (s.backend, s.channels) == ("libsndfile", 2)
        assert abs(s.frames - len(x)) <= 2304  # MP3 frames of 1152 samples and the decoder's delay
    loud, sr, _ = read_span(str(tmp_path / "a.mp3"), 2.5, 3.5, channel=1)
    quiet, _, _ = read_span(str(tmp_path / "a.mp3"), 0.5, 1.5, channel=1)
    assert sr == 16000 and np.sqrt(np.mean(loud**2)) > 0.1 > 20 * np.sqrt(np.mean(quiet**2))

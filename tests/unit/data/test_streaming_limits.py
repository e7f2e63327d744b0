"""Length limits are enforced on decoded samples, while streaming: ``long_policy=reject`` (the pool) and
``max_recording_hours`` (the VAD pass) stop decoding at the limit, whatever the file's header claims.

The files are real Matroska/AAC files written with PyAV: one whose Duration element claims 1 s while it holds
60 s, and one with no duration at all (written to a non-seekable output, so the muxer cannot go back to write
it). Decoding is counted by wrapping the real stream's ``blocks``: nothing stands in for the decoder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import struct

import numpy as np
import pytest
import soundfile as sf

import ser_models.data.audio as audio_module
import ser_models.segment.streams as streams_module
from ser_models.data.audio import decode_batch, decode_clip
from ser_models.data.audio_stream import open_audio, read_span
from ser_models.exceptions import AudioError
from ser_models.segment.run import VADWorker
from ser_models.segment.silero import SileroVAD
from ser_models.segment.streams import vad_pass

SR = 16000
HOLDS_S = 60


@dataclasses.dataclass
class Settings:
    min_duration: float = 0.5
    max_duration: float = 2.0
    long_policy: str = "reject"
    silence_db: float = -60.0
    audio_format: str = "pcm16"
    target_sample_rate: int = SR


class _NotSeekable(io.RawIOBase):
    """A write-only output the muxer cannot seek back in (a pipe), so it never writes the duration."""

    def __init__(self, path):
        self._fh = open(path, "wb")  # noqa: SIM115 - closed in close()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b) -> int:
        return self._fh.write(b)

    def close(self) -> None:
        self._fh.close()
        super().close()


def _write_mka(path, seconds: int, seekable: bool = True) -> None:
    """``seconds`` of noise as AAC in Matroska, encoded one second at a time."""
    import av

    rng = np.random.default_rng(0)
    target = str(path) if seekable else _NotSeekable(path)
    with av.open(target, "w", format="matroska") as container:
        stream = container.add_stream("aac", rate=SR, layout="mono")
        for k in range(seconds):
            frame = av.AudioFrame.from_ndarray((0.1 * rng.standard_normal((1, SR))).astype(np.float32),
                                               format="fltp", layout="mono")
            frame.sample_rate, frame.pts = SR, k * SR
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    if not seekable:
        target.close()


def _lie_about_duration(path, claim_s: float) -> None:
    """Rewrite the Segment Info Duration element (ID 0x4489, float in milliseconds) to ``claim_s``."""
    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89")
    width = data[at + 2] & 0x7F  # the size byte: 0x84 (float32) or 0x88 (float64)
    assert data[at + 2] & 0x80 and width in (4, 8), "no Duration element where expected"
    data[at + 3:at + 3 + width] = struct.pack(">d" if width == 8 else ">f", claim_s * 1000.0)
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def lying(tmp_path_factory):
    """An MKA whose header says 1 s and which holds 60 s."""
    path = tmp_path_factory.mktemp("limits") / "lying.mka"
    _write_mka(path, HOLDS_S)
    _lie_about_duration(path, 1.0)
    return path


@pytest.fixture(scope="module")
def no_duration(tmp_path_factory):
    """An MKA of 60 s without a duration in its header."""
    path = tmp_path_factory.mktemp("limits") / "no_duration.mka"
    _write_mka(path, HOLDS_S, seekable=False)
    return path


def test_the_test_files_are_what_they_claim(lying, no_duration):
    for path, header_s in ((lying, 1.0), (no_duration, 0.0)):
        with open_audio(str(path)) as stream:
            assert stream.backend == "ffmpeg" and stream.duration == pytest.approx(header_s, abs=0.01)
        wav, sr, _ = read_span(str(path))
        assert sr == SR and len(wav) / SR == pytest.approx(HOLDS_S, abs=0.2)


@pytest.fixture
def decoded(monkeypatch):
    """Samples (per channel, at the file's rate) that the real decoder handed out, per module under test."""
    counted: list[int] = []

    def counting(real):
        @contextlib.contextmanager
        def open_counted(path):
            with real(path) as stream:
                blocks = stream.blocks

                def counted_blocks(*args, **kwargs):
                    for block in blocks(*args, **kwargs):
                        counted.append(len(block))
                        yield block

                stream.blocks = counted_blocks
                yield stream
        return open_counted

    monkeypatch.setattr(audio_module, "open_audio", counting(audio_module.open_audio))
    monkeypatch.setattr(streams_module, "open_audio", counting(streams_module.open_audio))
    return counted


# --------------------------------------------------------------------------------- the pool: long_policy=reject
def test_reject_stops_decoding_one_second_past_max_duration_whatever_the_header_says(lying, decoded):
    with pytest.raises(AudioError) as err:
        decode_clip(str(lying), None, None, Settings(max_duration=2.0))
    assert err.value.reason == "too_long"
    assert "longer than max_duration 2 s" in err.value.detail and str(lying) in err.value.detail
    # At most 3 s and one sample decoded of the 60 s the file holds (the whole file was decoded before); the
    # encoder's priming samples make it a little less.
    assert 2.9 * SR < sum(decoded) <= 3 * SR + 1


def test_reject_in_a_batch_quarantines_with_the_reason(lying, decoded):
    out = decode_batch({"utt_id": np.array(["a"]), "path": np.array([str(lying)], dtype=object)},
                       Settings(max_duration=2.0))
    assert out["status"].tolist() == ["too_long"] and out["audio"][0] is None
    assert "stopped decoding at 3 s" in out["detail"][0]
    assert sum(decoded) <= 3 * SR + 1


def test_crop_of_a_lying_file_keeps_max_duration(lying, decoded):
    _, num_samples, _, _ = decode_clip(str(lying), None, None, Settings(long_policy="crop"))
    assert num_samples == 2 * SR and sum(decoded) <= 3 * SR + 1


@pytest.mark.parametrize(("seconds", "reason"), [(2.0, None), (2.5, "2.500 s > max_duration"),
                                                  (3.0, "3.000 s > max_duration"),
                                                  (3.5, "longer than max_duration")])
def test_reject_at_the_boundary_is_exact(tmp_path, seconds, reason):
    path = tmp_path / "clip.wav"
    sf.write(path, (0.1 * np.random.default_rng(1).standard_normal(int(seconds * SR))).astype(np.float32), SR)
    if reason is None:
        assert decode_clip(str(path), None, None, Settings())[1] == 2 * SR
        return
    with pytest.raises(AudioError, match=reason) as err:
        decode_clip(str(path), None, None, Settings())
    assert err.value.reason == "too_long"


# ------------------------------------------------------------------------------ the VAD pass: max_recording_hours
@pytest.fixture(scope="module")
def vad():
    return SileroVAD.from_wheel()


@pytest.mark.parametrize("which", ["lying", "no_duration"])
def test_vad_pass_stops_at_max_recording_hours_on_decoded_samples(which, request, vad, decoded):
    path = request.getfixturevalue(which)
    with pytest.raises(AudioError) as err:
        vad_pass(str(path), vad, block_seconds=1.0, max_seconds=5.0)
    assert err.value.reason == "too_long" and "decoding stopped at the limit" in err.value.detail
    assert ("has no duration" in err.value.detail) == (which == "no_duration")
    assert ("header says 1 s" in err.value.detail) == (which == "lying")
    # Decoding stopped in the block that passed 5 s: six 1 s blocks of the sixty the file holds.
    assert len(decoded) == 6 and 5 * SR < sum(decoded) <= 6 * SR


def test_vad_pass_reads_a_file_without_duration_that_fits(no_duration, vad):
    assert vad_pass(str(no_duration), vad, max_seconds=61.0).duration == pytest.approx(HOLDS_S, abs=0.2)


def test_an_exact_header_over_the_limit_is_refused_before_decoding(tmp_path, vad, decoded):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(10 * SR, np.float32), SR)
    with pytest.raises(AudioError, match="> max_recording_hours") as err:
        vad_pass(str(path), vad, max_seconds=5.0)
    assert err.value.reason == "too_long" and decoded == []


def test_the_vad_worker_quarantines_a_lying_recording_and_writes_no_frames(lying, tmp_path):
    frames_dir = tmp_path / "frames"
    worker = VADWorker(str(frames_dir), block_seconds=1.0, max_seconds=5.0)
    out = worker({"recording": np.array(["rec"], dtype=object), "path": np.array([str(lying)], dtype=object),
                  "channels": np.array(["split"], dtype=object)})
    assert out["status"].tolist() == ["too_long"]
    assert "max_recording_hours" in out["detail"][0] and str(lying) in out["detail"][0]
    assert not frames_dir.exists() or not any(frames_dir.iterdir())

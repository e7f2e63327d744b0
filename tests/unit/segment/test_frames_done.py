"""The segmenter's "done" markers: a recording counts as done only when its frames file reads back whole, so a
file cut short (a store that published half an object, a full disk) is segmented again, never trusted."""

from __future__ import annotations

import numpy as np
import pytest

from ser_models import io
from ser_models.segment.run import done_recordings, frames_path, read_frames, write_frames
from ser_models.segment.streams import StreamFrames


@pytest.fixture(params=["local", "s3"])
def frames_dir(request, tmp_path):
    """A frames folder on each store: a local path, or a fresh bucket on the session's moto S3 server."""
    base = str(tmp_path) if request.param == "local" else request.getfixturevalue("s3_bucket")
    return f"{base}/segments/frames/abc123"


def _streams(seed: int) -> list[StreamFrames]:
    rng = np.random.default_rng(seed)
    f = 300  # frames of 32 ms: ~9.6 s
    return [StreamFrames(c, f * 512, rng.random(f, dtype=np.float32), rng.random(f, dtype=np.float32),
                         rng.integers(0, 3, f).astype(np.int32)) for c in (0, 1)]


def test_a_truncated_frames_file_is_not_done_and_is_named(frames_dir, capsys):
    for i, rec in enumerate(("ep1", "ep2", "ep3")):
        write_frames(frames_path(frames_dir, rec), _streams(i), 16000, 2)
    whole = io.read_bytes(frames_path(frames_dir, "ep2"))
    io.write_bytes_atomic(frames_path(frames_dir, "ep2"), whole[: len(whole) // 2])  # what a torn upload leaves
    io.write_bytes_atomic(frames_path(frames_dir, "ep3"), whole[:104])

    assert done_recordings(frames_dir) == {"ep1"}
    log = capsys.readouterr().out
    for rec in ("ep2", "ep3"):
        assert f"{frames_path(frames_dir, rec)} is incomplete" in log
    assert "ep1.parquet is incomplete" not in log
    streams, rate, channels = read_frames(frames_path(frames_dir, "ep1"))
    assert (rate, channels, [s.channel for s in streams]) == (16000, 2, [0, 1])
    np.testing.assert_array_equal(streams[1].probs, _streams(0)[1].probs)


def test_a_missing_frames_folder_means_nothing_is_done(frames_dir):
    assert done_recordings(frames_dir) == set()

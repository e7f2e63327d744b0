"""jobs.segment trusts a recording's frames file only when it reads back whole: a file cut short (what a
store left after a torn upload) is segmented again on the rerun, with a log line, and the segments come out
identical. Local disk and S3."""

from __future__ import annotations

import pandas as pd
import pytest

from ser_models import io
from ser_models.data.synth import generate_archive
from ser_models.segment import SegmentConfig, segment_archive
from ser_models.segment.run import frames_path, vad_key

pytestmark = [pytest.mark.ray]


# the S3 run (25 s on 2 cores) is in make test-e2e with the other whole runs on S3
@pytest.mark.slow_e2e  # a whole segment run on Ray, 40 s per store: make test-e2e (CI runs it after make test)
@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_truncated_frames_file_is_redone_not_trusted(where, tmp_path, ray_local, capsys, request):
    info = generate_archive(tmp_path / "a", seed=5, n_episodes=2, n_calls=0, episode_minutes=(0.3, 0.3),
                            music_share=0.0, m4a_share=0.0)
    recs = pd.read_csv(info["recordings"])
    recs["path"] = [str(tmp_path / "a" / p) for p in recs["path"]]
    recs.to_csv(tmp_path / "recordings.csv", index=False)
    base = str(tmp_path) if where == "local" else request.getfixturevalue("s3_bucket")
    cfg = SegmentConfig(num_workers=1, recordings=str(tmp_path / "recordings.csv"), output_dir=f"{base}/out",
                        preset="vad")
    first = segment_archive(cfg, verbose=False)
    segments = io.read_parquet(f"{base}/out/segments.parquet").to_pandas()
    assert first.vad_recordings == 2 and len(segments)

    torn = frames_path(io.join(f"{base}/out", "frames", vad_key(cfg)), recs["recording"].iloc[1])
    whole = io.read_bytes(torn)
    io.write_bytes_atomic(torn, whole[: len(whole) // 2])
    capsys.readouterr()
    again = segment_archive(cfg, verbose=False)
    assert again.vad_recordings == 1  # only the torn recording ran through the model again
    assert f"frames file {torn} is incomplete" in capsys.readouterr().out
    assert io.read_bytes(torn) == whole  # rewritten whole, same content
    pd.testing.assert_frame_equal(io.read_parquet(f"{base}/out/segments.parquet").to_pandas(), segments)

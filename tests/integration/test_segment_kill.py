"""jobs.segment killed mid-archive (the whole process tree, as a lost machine) resumes: every recording is
segmented once, and every segment id equals an uninterrupted run's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from ser_models.data.synth import generate_archive
from ser_models.failpoints import PAUSEPOINT_DIR_ENV
from ser_models.segment import SegmentConfig, segment_archive
from ser_models.testing import kill_when

pytestmark = [pytest.mark.ray, pytest.mark.failure_model]
REPO = Path(__file__).resolve().parents[2]


def test_kill_after_one_recording_then_rerun(tmp_path, ray_local):
    info = generate_archive(tmp_path / "archive", seed=7, n_episodes=3, n_calls=1, episode_minutes=(0.3, 0.4),
                            call_minutes=(0.3, 0.3), m4a_share=0.0)
    out, pause = tmp_path / "segments", tmp_path / "pause"
    pause.mkdir()
    (pause / "segment_after_recording.armed").touch()
    cmd = [sys.executable, "-m", "jobs.segment", "jobs/configs/segment_demo.yaml", f"recordings={info['recordings']}",
           f"output_dir={out}", f"annotations={info['truth']}", "num_workers=1"]
    # The one VAD actor pauses right after writing its first recording's frames: kill everything there.
    kill_when(cmd, lambda: any(pause.glob("segment_after_recording.*.paused")), cwd=REPO,
              env={**os.environ, PAUSEPOINT_DIR_ENV: str(pause)})
    frames = sorted(p.name for p in (out / "frames").rglob("*.parquet"))
    assert len(frames) == 1 and not (out / "segments.parquet").exists()

    cfg = SegmentConfig(recordings=str(info["recordings"]), output_dir=str(out), annotations=str(info["truth"]),
                        num_workers=1)
    resumed = segment_archive(cfg, verbose=False)
    assert resumed.vad_recordings == 3 and resumed.recordings == 4  # the finished recording was not redone
    clean = segment_archive(SegmentConfig(recordings=str(info["recordings"]), output_dir=str(tmp_path / "clean"),
                                          annotations=str(info["truth"])), verbose=False)
    assert clean.vad_recordings == 4
    got, want = pd.read_parquet(out / "segments.parquet"), pd.read_parquet(tmp_path / "clean" / "segments.parquet")
    pd.testing.assert_frame_equal(got.drop(columns=["path"]), want.drop(columns=["path"]))
    assert got["utt_id"].is_unique and set(got["recording"]) == set(pd.read_csv(info["recordings"])["recording"])

"""Smoke runs of ``python -m jobs.make_demo_archive`` and ``python -m jobs.segment`` on its demo config."""

from __future__ import annotations

import runpy
import sys

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.ray

CONFIG = "jobs/configs/segment_demo.yaml"


def run_job(monkeypatch, name: str, *args: str):
    monkeypatch.setattr(sys, "argv", [name, *args])
    return runpy.run_module(name, run_name="__main__")


def test_archive_then_segments_from_the_command_line(ray_local, tmp_path, monkeypatch, capsys):
    arch, out = tmp_path / "archive", tmp_path / "segments"
    run_job(monkeypatch, "jobs.make_demo_archive", str(arch), "--episodes", "1", "--calls", "1",
            "--episode-minutes", "0.3", "0.3", "--call-minutes", "0.3", "0.3", "--seed", "1")
    assert "recordings.csv" in capsys.readouterr().out
    run_job(monkeypatch, "jobs.segment", CONFIG, f"recordings={arch / 'recordings.csv'}", f"output_dir={out}",
            f"annotations={arch / 'truth.csv'}", "preset=windows", "rules.window=3.0", "rules.hop=3.0")
    printed = capsys.readouterr().out
    assert "VAD: 2/2 recordings (100%)" in printed and f"segments: {out}/segments.parquet" in printed
    seg = pd.read_parquet(out / "segments.parquet")
    assert np.allclose(seg["duration"], 94 * 0.032)  # 3 s windows are whole 32 ms frames
    assert {"label", "label_share", "snr_db"} <= set(seg.columns)
    # a rerun redoes no VAD and writes the same segments
    run_job(monkeypatch, "jobs.segment", CONFIG, f"recordings={arch / 'recordings.csv'}", f"output_dir={out}",
            f"annotations={arch / 'truth.csv'}", "preset=windows", "rules.window=3.0", "rules.hop=3.0")
    assert "2 already done" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_parquet(out / "segments.parquet"), seg)


def test_a_bad_manifest_is_named_before_ray_starts(tmp_path, monkeypatch, capsys):
    (tmp_path / "recordings.csv").write_text("file\nx.wav\n")
    with pytest.raises(SystemExit) as exc:
        run_job(monkeypatch, "jobs.segment", CONFIG, f"recordings={tmp_path / 'recordings.csv'}",
                f"output_dir={tmp_path / 'out'}", "annotations=null")
    assert exc.value.code == 2
    assert "required column 'path' missing" in capsys.readouterr().err

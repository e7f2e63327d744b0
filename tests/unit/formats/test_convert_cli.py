"""``python -m jobs.convert`` as a user runs it: the report on stdout, a typed error as one line and exit 2; and
the import benchmark's building blocks on a few rows, so the script does not rot between runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "jobs.convert", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_job_prints_what_it_took_and_refused_and_a_bad_key_exits_2(tmp_path, audio):
    manifest = tmp_path / "nemo.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": audio["mono"], "duration": 3.0, "label": "happy"}) + "\n"
                        + json.dumps({"audio_filepath": str(tmp_path / "gone.wav"), "duration": 1.0}) + "\n")
    done = _run(f"input={manifest}", f"output={tmp_path / 'm.csv'}")
    assert done.returncode == 0, done.stderr
    assert f"nemo {manifest}: took 1 of 2 rows; refused 1 (missing_file 1)" in done.stdout
    assert (tmp_path / "m.csv").exists() and (tmp_path / "m.refused.csv").exists()
    bad = _run(f"input={manifest}", f"output={tmp_path / 'm.csv'}", "to=kaldi")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: ConfigError: to='kaldi'")


def test_the_import_benchmark_runs_on_a_few_rows(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO))
    from bench import formats_import as bench

    monkeypatch.setattr(bench, "FILES", 4)
    bench._build(str(tmp_path), 12)
    got = {c: bench._run_case(c, str(tmp_path)) for c in bench.CASES}
    assert {c: r["rows"] for c, r in got.items()} == {c: 12 for c in bench.CASES}


def test_importing_and_exporting_never_loads_lhotse_or_datasets(tmp_path, audio):
    """The platform reads and writes these formats itself: the libraries are test extras, never needed at run
    time (a fresh interpreter runs a Lhotse import and a Hugging Face export, then lists its modules)."""
    lhotse = pytest.importorskip("lhotse")
    rec = lhotse.Recording.from_file(audio["mono"], recording_id="ep1")
    lhotse.RecordingSet.from_recordings([rec]).to_file(tmp_path / "a_recordings.jsonl")
    lhotse.SupervisionSet.from_segments([lhotse.SupervisionSegment("s", "ep1", 0.0, 1.0)]).to_file(
        tmp_path / "a_supervisions.jsonl")
    code = ("import sys; from ser_models.formats import ConvertConfig, convert; "
            f"convert(ConvertConfig(input={str(tmp_path / 'a_supervisions.jsonl')!r}, output={str(tmp_path / 'm.csv')!r}));"
            f"convert(ConvertConfig(input={str(tmp_path / 'm.csv')!r}, output={str(tmp_path / 'hf')!r}, to='hf'));"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lhotse', 'datasets')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"

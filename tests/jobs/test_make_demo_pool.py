"""Smoke run of ``python -m jobs.make_demo_pool``: files, manifest, determinism across runs and workers."""

from __future__ import annotations

import runpy
import sys

import pandas as pd
import pytest
import soundfile as sf

from ser_models.data.manifest import MANIFEST_COLUMNS, read_manifest
from ser_models.data.synth import CORPUS_COLUMNS, EMOTIONS


def run_job(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["make_demo_pool", *args])
    runpy.run_module("jobs.make_demo_pool", run_name="__main__")


@pytest.mark.timeout(120)
def test_make_demo_pool_end_to_end_and_deterministic(tmp_path, monkeypatch, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    run_job(monkeypatch, str(first), "--n", "24", "--seed", "5")
    out = capsys.readouterr().out
    assert "wrote 24 clips" in out and "ms per second of audio" in out

    manifest = pd.read_csv(first / "manifest.csv")
    assert list(manifest.columns) == list(CORPUS_COLUMNS) and len(manifest) == 24
    rates, formats = set(), set()
    for rel in manifest.path:
        wav, sr = sf.read(first / rel, dtype="float32")
        assert wav.ndim == 1 and 1.5 * sr <= len(wav) <= 5.5 * sr and abs(wav).max() < 1.0
        rates.add(sr)
        formats.add(sf.info(first / rel).format)
    assert len(rates) >= 2 and formats == {"WAV", "FLAC"}  # 24 clips: both formats, several rates

    df = read_manifest(first / "manifest.csv", labels=EMOTIONS)
    assert list(df.columns) == list(MANIFEST_COLUMNS)
    assert all(str(first) in p for p in df.path) and set(df.split) == {"train", "dev", "test"}

    # Same seed, other process count: identical manifest and identical bytes.
    run_job(monkeypatch, str(second), "--n", "24", "--seed", "5", "--workers", "2")
    assert (first / "manifest.csv").read_bytes() == (second / "manifest.csv").read_bytes()
    for rel in (manifest.path[0], manifest.path[23]):
        assert (first / rel).read_bytes() == (second / rel).read_bytes()


def test_help_and_bad_arguments(monkeypatch, capsys):
    with pytest.raises(SystemExit) as info:
        run_job(monkeypatch, "--help")
    assert info.value.code == 0 and "--workers" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        run_job(monkeypatch, "/tmp/never_written", "--n", "5")
    assert info.value.code == 2 and "--n must be >= 12" in capsys.readouterr().err

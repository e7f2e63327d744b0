"""Smoke run of bench.bucketing on the tiny group-norm preset, so that the script does not rot between runs."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is not an installed package

from bench import bucketing  # noqa: E402


def test_bucketing_bench_reports_every_path_and_only_hf_padding_moves_features(tmp_path, monkeypatch):
    monkeypatch.setattr(bucketing, "DEFAULT_WORKDIR", tmp_path)
    text = bucketing.main(["--clips", "12", "--micro", "4", "--encoder", "tiny", "--no-write"])
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| ") and "clips / forward" not in line}
    assert set(rows) == set(bucketing.PATHS)
    diff = {name: float(cells[-1]) for name, cells in rows.items()}
    # exact paths agree with one at a time; HF's padded group norm does not (why the platform runs group-norm front ends clip by clip)
    for name in ("Encoder.forward (per-clip front end), sorted", "per-clip group norm, batched convs, sorted",
                 "one clip at a time (again)"):
        assert diff[name] <= 1e-5, (name, diff[name])
    assert diff["HF padded, sorted"] > 1e-3 and diff["HF padded, unsorted"] > 1e-3
    waste = {name: float(cells[-2].rstrip(" %")) for name, cells in rows.items()}
    assert waste["one clip at a time"] == 0 and 0 < waste["HF padded, sorted"] < waste["HF padded, unsorted"]

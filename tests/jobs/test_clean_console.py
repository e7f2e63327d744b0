"""A job's console holds lines a person reads: no Python reprs of config or strategy objects."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("ray_local")

REPO = Path(__file__).resolve().parents[2]
#: A repr of one of the platform's objects: ``PoolConfig(manifest=...``, ``AutoStrategy(candidates=...``.
REPR = re.compile(r"\b[A-Z]\w*(Config|Strategy|Cap)\(")


def test_prepare_pool_and_the_loop_print_no_reprs(demo_pool, tmp_path, monkeypatch, capsys):
    from ser_models.runs.after import main as after
    from ser_models.runs.prepare_pool import main as prepare_pool

    monkeypatch.chdir(REPO)
    prepare_pool([f"manifest={demo_pool.manifest}", f"output_dir={tmp_path / 'pool'}", "audio_format=flac",
                  "max_duration=8.0"])
    out = capsys.readouterr().out
    assert f"prepare-pool: {demo_pool.manifest} -> {tmp_path / 'pool'}" in out
    assert not REPR.search(out), out
    # The loop's first line names its strategy in words; it stops at once waiting for the first labels.
    assert after(["jobs/configs/after_smoke.yaml", f"pool_dir={demo_pool.pool_dir}", f"output_dir={tmp_path / 'run'}",
                  "tapt_enabled=false", "active.oracle=file", "active.strategy.name=auto",
                  "active.max_per_recording=2"]) is None
    out = capsys.readouterr().out
    assert "strategy auto (candidates=random+margin+informative_diverse" in out
    assert "at most 2 clips of a recording per batch" in out
    assert not REPR.search(out), [line for line in out.splitlines() if REPR.search(line)]

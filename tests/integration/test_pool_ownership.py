"""prepare_pool deletes only builds it recorded, adopts a pool written before markers, and has one writer."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ser_models.data import Pool, PoolConfig, prepare_pool
from ser_models.exceptions import LockHeldError
from ser_models.ownership import MARKER_NAME, read_marker

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]


def _corpus(root: Path, n: int, start: int = 0) -> pd.DataFrame:
    """Tones ``c<start>`` .. ``c<start+n-1>`` under ``root``; their manifest rows."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(start, start + n):
        t = np.arange(9600) / 16000
        sf.write(root / f"c{k}.wav", (0.3 * np.sin(2 * np.pi * (180 + 15 * k) * t)).astype(np.float32), 16000)
        rows.append({"utt_id": f"c{k}", "path": f"c{k}.wav", "label": ["happy", "sad"][k % 2], "split": "train"})
    return pd.DataFrame(rows)


def _cfg(root: Path) -> PoolConfig:
    return PoolConfig(manifest=str(root / "corpus" / "manifest.csv"), output_dir=str(root / "pool"), labels=[],
                      batch_size=4, num_workers=1, rows_per_file=2)


def test_a_pool_of_an_earlier_version_is_adopted_and_a_foreign_build_folder_in_it_survives(ray_local, tmp_path):
    manifest = _corpus(tmp_path / "corpus", 4)
    manifest.to_csv(tmp_path / "corpus" / "manifest.csv", index=False)
    cfg = _cfg(tmp_path)
    prepare_pool(cfg)
    out = Path(cfg.output_dir)
    first = Pool.open(out).summary["build"]
    (out / MARKER_NAME).unlink()  # what an earlier version left: no marker

    pd.concat([manifest, _corpus(tmp_path / "corpus", 2, start=4)]).to_csv(cfg.manifest, index=False)
    grown = prepare_pool(cfg)  # adopted (its layout is exactly a pool's), then updated in place
    marker = read_marker(out)
    assert marker["kind"] == "pool" and marker["adopted"] and (grown.version, grown.kept) == (2, 6)

    (out / "build-old").mkdir()  # someone's folder inside the pool: not recorded, never deleted
    (out / "build-old" / "notes.txt").write_text("mine")
    relabel = pd.concat([manifest, _corpus(tmp_path / "corpus", 3, start=4)])
    relabel.to_csv(cfg.manifest, index=False)
    rebuilt = prepare_pool(dataclasses.replace(cfg, grow=False))  # a rebuild keeps no earlier build
    assert rebuilt.version == 1 and (out / "build-old" / "notes.txt").read_text() == "mine"
    assert not (out / first).exists()  # the adopted pool's first build, recorded at adoption, was cleaned


@pytest.mark.slow_e2e
def test_a_second_prepare_pool_on_one_pool_is_refused_naming_the_first(ray_local, tmp_path):
    manifest = _corpus(tmp_path / "corpus", 4)
    manifest.to_csv(tmp_path / "corpus" / "manifest.csv", index=False)
    cfg = _cfg(tmp_path)
    pause = tmp_path / "pause"
    pause.mkdir()
    (pause / "prepare_decode.armed").touch()
    config = tmp_path / "pool.yaml"
    config.write_text(f"manifest: {cfg.manifest}\noutput_dir: {cfg.output_dir}\nlabels: []\nbatch_size: 4\n"
                      "num_workers: 1\nrows_per_file: 2\n")
    env = {**os.environ, "SER_PAUSEPOINT_DIR": str(pause), "PYTHONPATH": str(REPO)}
    from ser_models.testing import kill_session

    with open(tmp_path / "job.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "jobs.prepare_pool", str(config)], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while not list(pause.glob("prepare_decode.*.paused")):  # the first writer is decoding
                assert proc.poll() is None and time.monotonic() < deadline, \
                    (tmp_path / "job.log").read_text(errors="replace")[-3000:]
                time.sleep(0.2)
            with pytest.raises(LockHeldError) as err:
                prepare_pool(cfg)
            assert f"pid {proc.pid}" in str(err.value) and "SER_LOCK_TAKE_OVER" in str(err.value)
            (pause / "prepare_decode.released").touch()
            assert proc.wait(240) == 0, (tmp_path / "job.log").read_text(errors="replace")[-3000:]
        finally:
            kill_session(proc.pid)
    assert prepare_pool(cfg).up_to_date  # the first writer's pool, whole

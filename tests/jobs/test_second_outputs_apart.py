"""Every path a job writes or reads is checked, not only ``output_dir``: a feature cache folder
(``feature_cache_dir`` / ``active.feature_cache_dir``) is a second output, refused when it is an input, lies
inside one or contains one; and ``jobs.predict``'s ``speaker_stats`` file is one of its inputs. Each refusal comes
before Ray starts and leaves the tree as it was."""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path

import pytest

from ser_models.exceptions import OutputOverlapError
from ser_models.ownership import MARKER_NAME

#: The random tiny encoder: the default one would be imported before the job reaches its checks.
TINY = "model.encoder.source=tiny-wav2vec2"


def _folder_input(root: Path) -> Path:
    """An input folder (a pool, a checkpoint) with a file in it."""
    root.mkdir(parents=True)
    (root / "summary.json").write_text('{"fingerprint": "x"}')
    return root


def _tree(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: kind, and a file's size and content hash."""
    return {p.relative_to(root).as_posix(): ("dir",) if p.is_dir() else
            ("file", p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()) for p in sorted(root.rglob("*"))}

#: job -> its cache key.
CACHE_KEYS = {"after": "active.feature_cache_dir", "evidence": "active.feature_cache_dir",
              "finetune": "feature_cache_dir", "adapter_pretrain": "feature_cache_dir",
              "layer_analysis": "feature_cache_dir"}
CASES = [(job, where) for job in CACHE_KEYS for where in ("is_input", "inside_input", "contains_input")]


@pytest.mark.parametrize(("job", "where"), CASES, ids=[f"{j}-{w}" for j, w in CASES])
def test_a_feature_cache_overlapping_an_input_is_refused_before_ray(tmp_path, job, where, monkeypatch):
    import ray

    monkeypatch.chdir(tmp_path)
    pool = _folder_input(tmp_path / "inputs" / "pool")
    cache = {"is_input": pool, "inside_input": pool / "cache", "contains_input": pool.parent}[where]
    key = CACHE_KEYS[job]
    argv = [f"pool_dir={pool}", f"output_dir={tmp_path / 'out'}", f"{key}={cache}", TINY]
    before, ray_before = _tree(tmp_path), ray.is_initialized()
    with pytest.raises(OutputOverlapError, match=f"refusing to write {key}=.* the input pool_dir="):
        importlib.import_module(f"jobs.{job}").main(argv)
    assert _tree(tmp_path) == before
    assert ray_before or not ray.is_initialized()


def test_predicts_speaker_stats_file_is_an_input(tmp_path, monkeypatch):
    """A speaker_stats file inside the output folder (the previous run's, say) would be written over."""
    import ray

    monkeypatch.chdir(tmp_path)
    checkpoint = _folder_input(tmp_path / "inputs" / "checkpoint")
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER_NAME).write_text(json.dumps({"kind": "run", "job": "jobs.predict", "children": []}))
    (out / "speaker_stats.safetensors").write_bytes(b"the statistics of last month's speakers")
    argv = [f"checkpoint={checkpoint}", f"pool_dir={checkpoint}", f"output_dir={out}",
            f"speaker_stats={out / 'speaker_stats.safetensors'}"]
    before, ray_before = _tree(tmp_path), ray.is_initialized()
    with pytest.raises(OutputOverlapError, match="refusing to write output_dir=.* contains the input speaker_stats="):
        importlib.import_module("jobs.predict").main(argv)
    assert _tree(tmp_path) == before
    assert ray_before or not ray.is_initialized()

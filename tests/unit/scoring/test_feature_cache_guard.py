"""A feature cache shared by two runs: a writer never deletes another live writer's shard folder, only the ones
a dead writer recorded; readers never skip a clip the cache lacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ser_models.exceptions import FeatureCacheMissError, LockHeldError
from ser_models.io import write_json_atomic
from ser_models.ownership import open_output
from ser_models.scoring import feature_cache as fc
from ser_models.scoring.cache_guard import drop_abandoned
from ser_models.scoring.feature_cache import FeatureCache

ROOT = Path(__file__).resolve().parents[3]
# Another run's writer: holds the cache's lock, has recorded and started its shard folder, then waits.
WRITER = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from ser_models.ownership import open_output, record
lock = open_output({folder!r}, "feature_cache")
record({folder!r}, "feature_cache", ["features-live"])
(Path({folder!r}) / "features-live").mkdir()
(Path({folder!r}) / "features-live" / "part-000000.parquet").write_bytes(b"being written")
print("held", flush=True)
time.sleep(120)
"""


def _cache(root: Path, ids: list[str]) -> FeatureCache:
    """A pooled cache of ``ids`` ([L=1, D=2] features), written as a build writes it."""
    cache = FeatureCache(root, "ab" * 32)
    with open_output(cache.dir, "feature_cache"):
        feats = [np.full((1, 2), k, np.float32).tobytes() for k in range(len(ids))]
        (Path(cache.dir) / "features-1").mkdir(parents=True)
        pq.write_table(pa.table({"utt_id": ids, "features": pa.array(feats, pa.binary())}),
                       Path(cache.dir) / "features-1" / "part-000000.parquet")
        write_json_atomic(cache.dir / "meta.json", {"num_layers": 1, "hidden_size": 2, "clips": len(ids),
                                                    "kind": "pooled", "fingerprint": cache.fingerprint,
                                                    "shards": ["features-1"]})
    return cache


def test_a_reader_asking_for_clips_the_cache_lacks_is_refused_naming_them(tmp_path):
    cache = _cache(tmp_path, ["a", "b"])
    with pytest.raises(FeatureCacheMissError, match=r"does not hold 1 of the 2 clips asked for: 'zz'"):
        cache.dataset(ids=["a", "zz"])
    with pytest.raises(FeatureCacheMissError, match="'zz'"):
        cache.dataset(targets=pa.table({"utt_id": ["zz"], "label": ["happy"]}))


def test_a_reader_of_a_cache_whose_shard_folder_is_gone_is_refused_naming_it(tmp_path):
    cache = _cache(tmp_path, ["a", "b"])
    for f in (Path(cache.dir) / "features-1").iterdir():
        f.unlink()
    (Path(cache.dir) / "features-1").rmdir()
    with pytest.raises(FeatureCacheMissError, match="features-1"):
        cache.dataset(ids=["a"])


def test_a_second_writer_never_deletes_a_live_writers_shards_and_cleans_a_dead_ones(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path, "cd" * 32)
    folder = Path(cache.dir)
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=str(ROOT), folder=str(folder))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held", proc.stderr.read()
        (folder / "features-foreign").mkdir()  # not recorded by anyone: never ours to delete
        monkeypatch.setattr(fc, "CACHE_LOCK_WAIT_S", 0.3)
        with pytest.raises(LockHeldError, match=f"pid {proc.pid}"):
            cache.build_with(None, None, {}, 1, None, in_process=True, verbose=False)
        assert (folder / "features-live" / "part-000000.parquet").exists()
    finally:
        proc.kill()
        proc.wait()
    lines = []
    with open_output(folder, "feature_cache", log=lines.append):  # the writer died: its lock is taken over
        drop_abandoned(str(folder), FeatureCache.SHARDS_PREFIX, set(), verbose=False)
    assert not (folder / "features-live").exists() and (folder / "features-foreign").exists()
    assert any("is gone" in line for line in lines)



def test_shard_column_reads_every_shard_file_in_order_and_skips_writes_in_progress(tmp_path):
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from ser_models.scoring.cache_rows import shard_column

    for folder, files in {"a": {"p1.parquet": ["c", "d"], "p0.parquet": ["a", "b"]},
                          "b": {"x.parquet": ["e"], ".x.parquet.tmp": ["zz"], "_SUCCESS": None}}.items():
        (tmp_path / folder).mkdir()
        for name, ids in files.items():
            if ids is None:
                (tmp_path / folder / name).write_text("")
            else:
                pq.write_table(pa.table({"utt_id": ids, "features": [b"x"] * len(ids)}), tmp_path / folder / name)
    got = shard_column(pafs.LocalFileSystem(), [str(tmp_path / "a"), str(tmp_path / "b")], "utt_id")
    assert got.to_pylist() == ["a", "b", "c", "d", "e"]
    assert shard_column(pafs.LocalFileSystem(), [], "utt_id").to_pylist() == []

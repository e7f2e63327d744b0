"""A feature cache shared by two runs: a writer never deletes another live writer's shard folder, only the ones
a dead writer recorded; readers never skip a clip the cache lacks."""

from __future__ import annotations

import json
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


def _earlier_cache(folder):
    """A cache an earlier version wrote: meta.json listing one shard folder of Parquet feature shards."""
    (folder / "features-1").mkdir(parents=True)
    pq.write_table(pa.table({"utt_id": ["a", "b"], "features": [b"x", b"y"]}), folder / "features-1" / "0.parquet")
    (folder / "meta.json").write_text(json.dumps({"num_layers": 2, "hidden_size": 4, "clips": 2, "kind": "pooled",
                                                  "fingerprint": "f" * 64, "shards": ["features-1"]}))
    return folder


def test_a_legacy_cache_is_recognised_by_its_meta_json_and_feature_shards(tmp_path):
    from ser_models.scoring.cache_guard import legacy_cache

    cache = _earlier_cache(tmp_path / "c")
    (cache / "features-2").mkdir()  # an abandoned shard folder: tolerated, not recorded
    assert legacy_cache(str(cache), ["features-1", "features-2", "meta.json"]) == []
    assert legacy_cache(str(cache), ["features-1", "meta.json", "notes.txt"]) is None


@pytest.mark.parametrize("spoil", [
    pytest.param(lambda c: (c / "meta.json").unlink(), id="no meta.json: shard folders by name alone"),
    pytest.param(lambda c: (c / "meta.json").write_text('{"shards": ["features-1"]}'), id="meta.json of another"),
    pytest.param(lambda c: (c / "meta.json").write_text("not json"), id="meta.json unreadable"),
    pytest.param(lambda c: (c / "features-1" / "0.parquet").write_bytes(b"RIFF"), id="a shard that is not parquet"),
    pytest.param(lambda c: pq.write_table(pa.table({"utt_id": ["a"]}), c / "features-1" / "0.parquet"),
                 id="a shard without features"),
    pytest.param(lambda c: (c / "features-1" / "0.parquet").unlink(), id="a listed shard folder empty"),
])
def test_a_folder_that_does_not_read_as_a_cache_is_not_adopted(tmp_path, spoil):
    from ser_models.scoring.cache_guard import legacy_cache

    cache = _earlier_cache(tmp_path / "c")
    spoil(cache)
    assert legacy_cache(str(cache), sorted(p.name for p in cache.iterdir())) is None


def test_drop_abandoned_removes_only_recorded_unlisted_shards_and_names_the_others(tmp_path, capsys):
    from ser_models import ownership

    folder = tmp_path / "cache"
    with open_output(folder, "feature_cache"):
        ownership.record(folder, "feature_cache", ["features-dead", "features-done"])
        for name in ("features-dead", "features-done", "features-foreign", "notes"):
            (folder / name).mkdir()
        capsys.readouterr()
        drop_abandoned(str(folder), "features-", {"features-done"}, verbose=True)
        assert ownership.recorded(folder, "feature_cache") == set()
    assert capsys.readouterr().out == (
        f"  feature cache: leaving {folder}/features-foreign alone (not listed, and not recorded as one of this "
        "platform's unfinished shard folders)\n")
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "features-done", "features-foreign", "notes"]


def test_settle_shards_keeps_a_committed_folder_and_removes_only_our_failed_one(tmp_path):
    from ser_models import ownership
    from ser_models.exceptions import ForeignFolderError
    from ser_models.scoring.cache_guard import settle_shards

    folder = tmp_path / "cache"
    with open_output(folder, "feature_cache"):
        ownership.record(folder, "feature_cache", ["features-ok", "features-failed"])
        for name in ("features-ok", "features-failed", "features-other"):
            (folder / name).mkdir()
        settle_shards(str(folder), "features-ok", committed=True)
        assert (folder / "features-ok").is_dir()
        assert ownership.recorded(folder, "feature_cache") == {"features-failed"}
        settle_shards(str(folder), "features-failed", committed=False)
        assert not (folder / "features-failed").exists()
        assert ownership.recorded(folder, "feature_cache") == set()
        with pytest.raises(ForeignFolderError) as err:  # not recorded by us: never deleted
            settle_shards(str(folder), "features-other", committed=False)
        assert str(err.value) == (f"refusing to delete {folder}/features-other: 'features-other' is not recorded "
                                  f"as made by this platform in {folder}/.ser-output.json")
        assert (folder / "features-other").is_dir()


def test_check_holds_names_the_first_ten_missing_clips():
    from ser_models.scoring.cache_guard import check_holds

    tail = ("Extend it first (FeatureCache.ensure(pool, ...), which the loop runs at each round's start for a pool "
            "that grew), or check that these ids are clips of the pool the cache was built from")
    have = pa.array(["a", "b"])
    check_holds("/c", pa.array(["b", "a"]), have)
    with pytest.raises(FeatureCacheMissError) as err:
        check_holds("/c", pa.array(["a", "y", "b", "z"]), have)
    assert str(err.value) == f"feature cache /c does not hold 2 of the 4 clips asked for: 'y', 'z'. {tail}"
    with pytest.raises(FeatureCacheMissError) as err:
        check_holds("/c", pa.array(["a"] + [f"m{i:02d}" for i in range(12)]), have)
    shown = ", ".join(f"'m{i:02d}'" for i in range(10))
    assert str(err.value) == f"feature cache /c does not hold 12 of the 13 clips asked for: {shown} and 2 more. {tail}"


@pytest.mark.parametrize("missing, more", [(10, ""), (11, " and 1 more")])
def test_check_holds_counts_the_missing_clips_past_the_tenth(missing, more):
    from ser_models.scoring.cache_guard import check_holds

    with pytest.raises(FeatureCacheMissError) as err:
        check_holds("/c", pa.array([f"m{i:02d}" for i in range(missing)]), pa.array(["a"]))
    shown = ", ".join(f"'m{i:02d}'" for i in range(10))
    assert f"does not hold {missing} of the {missing} clips asked for: {shown}{more}. Extend" in str(err.value)


def test_the_read_check_holds_keys_not_ids_and_sees_a_shard_folder_added_later(tmp_path):
    """The check reads the ids file by file into 8-byte keys; a cache extended since (meta.json lists a new
    shard folder) is read again, so its new clips pass and still-missing ones are named."""
    from ser_models.data.id_keys import KeySet

    cache = _cache(tmp_path, ["a", "b"])
    cache.dataset(ids=pa.chunked_array([pa.array(["b"]), pa.array(["a"])]))
    held = cache._held_keys()
    assert isinstance(held, KeySet) and len(held) == 2
    with open_output(cache.dir, "feature_cache"):
        (Path(cache.dir) / "features-2").mkdir()
        for k, part in enumerate((["c"], ["d", "e"])):
            pq.write_table(pa.table({"utt_id": part, "features": pa.array([b"\0" * 8] * len(part), pa.binary())}),
                           Path(cache.dir) / "features-2" / f"part-{k:06d}.parquet")
        write_json_atomic(cache.dir / "meta.json", {"num_layers": 1, "hidden_size": 2, "clips": 5, "kind": "pooled",
                                                    "fingerprint": cache.fingerprint,
                                                    "shards": ["features-1", "features-2"]})
    cache.dataset(ids=["e", "a", "c"])
    assert len(cache._held_keys()) == 5
    with pytest.raises(FeatureCacheMissError, match=r"does not hold 1 of the 3 clips asked for: 'f'"):
        cache.dataset(ids=["f", "e", "d"])


def test_check_holds_takes_a_key_set():
    from ser_models.data.id_keys import KeySet
    from ser_models.scoring.cache_guard import check_holds

    check_holds("/c", pa.array(["b", "a"]), KeySet([["a", "b"]]))
    with pytest.raises(FeatureCacheMissError, match=r"does not hold 2 of the 3 clips asked for: 'x', 'y'"):
        check_holds("/c", pa.array(["a", "x", "y"]), KeySet([["a", "b"]]))

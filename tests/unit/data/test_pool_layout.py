"""A pool's layout on disk, checked in process on real files (no Ray).

* How ``prepare_pool`` splits a manifest into decode blocks: bounded blocks (a decode task holds its block's
  audio until written) and enough of them to keep every decode worker busy. The file cap itself
  (``rows_per_file``) is checked on real files in ``tests/integration/test_prepare_pool.py``.
* Which build folders a pool keeps, deletes and forgets (``ser_models.data.pool_builds``).
* How an update lists, indexes and rewrites a build's data files, and stores manifest values
  (``ser_models.data.pool_update``).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ser_models.data.config import PoolConfig
from ser_models.data.pool import SHARD_SCHEMA, Pool
from ser_models.data.pool_builds import drop_build, referenced, remove_builds
from ser_models.data.pool_update import (
    METADATA_COLUMNS,
    list_files,
    read_index,
    rewrite_file,
    schema_arrays,
    updates_table,
)
from ser_models.data.prepare import DECODE_BLOCK_ROWS, _num_blocks
from ser_models.io import filesystem, join
from ser_models.ownership import open_output, record, recorded


@pytest.mark.parametrize("n", [1, 7, 100, 1161, 18581, 1_000_000])
@pytest.mark.parametrize("batch_size, workers", [(32, 2), (256, 4), (32, 16)])
def test_blocks_are_bounded_and_every_worker_gets_blocks(n, batch_size, workers):
    cfg = PoolConfig(manifest="m.csv", batch_size=batch_size, num_workers=workers)
    blocks = _num_blocks(n, cfg)
    sizes = np.diff(np.linspace(0, n, blocks + 1).astype(int))  # as _write_shards cuts the manifest
    assert sizes.max() <= DECODE_BLOCK_ROWS and sizes.sum() == n
    assert blocks >= min(4 * workers, -(-n // batch_size))  # enough blocks to keep the decode tasks busy


# --- build folders: which ones a pool keeps, removes and forgets (ser_models.data.pool_builds) ---------------

# A data file's schema: the shard schema without the partition column (its folder carries the split).
FILE_SCHEMA = SHARD_SCHEMA.remove(SHARD_SCHEMA.get_field_index("split"))
MTIME = 1_700_000_000_123_456_789  # nanoseconds: not a float64 value


def _build_folder(pool, name):
    (pool / name / "data").mkdir(parents=True)
    (pool / name / "data" / "part-0.parquet").write_bytes(b"x")


def test_dropping_a_build_deletes_it_and_records_it_as_removed(tmp_path):
    pool = tmp_path / "pool"
    with open_output(pool, "pool"):
        for name in ("build-live", "build-failed"):
            _build_folder(pool, name)
        record(pool, "pool", ["build-live", "build-failed"])
        drop_build(str(pool), "build-failed")
        assert recorded(pool, "pool") == {"build-live"}
    assert not (pool / "build-failed").exists()
    assert (pool / "build-live" / "data" / "part-0.parquet").read_bytes() == b"x"


def test_removing_builds_deletes_and_forgets_the_recorded_ones_not_kept(tmp_path, capsys):
    pool = tmp_path / "pool"
    with open_output(pool, "pool"):
        for name in ("build-live", "build-crashed", "build-old"):
            _build_folder(pool, name)
        (pool / "notes.txt").write_text("mine")
        # build-gone: recorded, its folder already deleted (a crash between the delete and the record)
        record(pool, "pool", ["build-live", "build-crashed", "build-gone"])
        remove_builds(str(pool), keep={"build-live"})
        assert recorded(pool, "pool") == {"build-live"}
    assert sorted(p.name for p in pool.iterdir() if not p.name.startswith(".")) == [
        "build-live", "build-old", "notes.txt"]
    assert (pool / "build-old" / "data" / "part-0.parquet").read_bytes() == b"x"  # not ours: left alone
    assert f"pool {pool}: leaving build-old/ alone: this platform did not record it" in capsys.readouterr().out


def test_removing_builds_with_nothing_to_remove_keeps_the_record(tmp_path):
    pool = tmp_path / "pool"
    with open_output(pool, "pool"):
        _build_folder(pool, "build-live")
        record(pool, "pool", ["build-live"])
        remove_builds(str(pool), keep={"build-live"})
        assert recorded(pool, "pool") == {"build-live"}
    assert (pool / "build-live" / "data" / "part-0.parquet").exists()


def test_a_summary_references_its_own_build_and_every_live_files_build(tmp_path):
    (tmp_path / "build-c").mkdir()
    (tmp_path / "build-c" / "files.json").write_text(json.dumps({"files": {
        "train": ["build-a/data/split=train/part-0.parquet", "build-b/data/split=train/rewritten-00000-x.parquet"],
        "dev": ["build-a/data/split=dev/part-0.parquet"]}}))
    # build-c holds no data file of its own (an update that only rewrote files elsewhere): still referenced
    assert referenced(str(tmp_path), {"build": "build-c", "files": "build-c/files.json"}) == {
        "build-a", "build-b", "build-c"}
    assert referenced(str(tmp_path), {"build": "build-x"}) == {"build-x"}  # no file list: its own build only
    assert referenced(str(tmp_path), None) == set()


# --- listing and rewriting a build's data files (ser_models.data.pool_update) ----------------------------------


def test_listing_a_builds_data_files_groups_them_by_split_relative_to_the_pool(tmp_path):
    root = tmp_path / "pool"
    data = root / "build-a" / "data"
    for rel in ("split=train/part-0.parquet", "split=train/part-1.parquet", "split=dev/part-0.parquet",
                "split=train/sub/part-2.parquet", "split=dev/.part-9.parquet.0123abcd.tmp", "split=dev/notes.txt"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(b"x")
    files = list_files(str(data), str(root))
    assert {k: sorted(v) for k, v in files.items()} == {
        "train": ["build-a/data/split=train/part-0.parquet", "build-a/data/split=train/part-1.parquet",
                  "build-a/data/split=train/sub/part-2.parquet"],
        "dev": ["build-a/data/split=dev/part-0.parquet"]}


def test_listing_a_data_folder_that_was_never_written_is_empty(tmp_path):
    # every new clip quarantined: the build has no data folder
    assert list_files(str(tmp_path / "pool" / "build-a" / "data"), str(tmp_path / "pool")) == {}


def _clip(u, **kw):
    """A stored clip (one row of a data file)."""
    row = {"utt_id": u, "path": f"/corpus/{u}.wav", "channel": -1, "start": math.nan, "end": math.nan,
           "audio": b"RIFF" + u.encode(), "audio_format": "wav", "num_samples": 16000, "duration": 1.0,
           "orig_sample_rate": 16000, "orig_channels": 1, "label": "neu", "arousal": None, "valence": None,
           "dominance": None, "speaker": f"spk-{u}", "language": "en", "corpus": "demo", "group": None,
           "recording": None, "transcript": None, "status": "ok", "detail": None,
           "source_size": 100, "source_mtime_ns": MTIME, "source_sha256": "ab" * 32}
    return {**row, **kw}


def _nan_free(row):
    """A row with NaN as the string "NaN" (NaN never equals itself)."""
    return {k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def _rows(table):
    return [_nan_free(r) for r in table.to_pylist()]


def _write_shard(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=FILE_SCHEMA), path)


def _pool(tmp_path):
    """A pool of one build: clips a, b, c, e in train and d in dev, listed in its files.json."""
    root = tmp_path / "pool"
    data = root / "build-a" / "data"
    _write_shard(data / "split=train" / "part-0.parquet",
                 [_clip("a"), _clip("b", label="ang", arousal=0.25), _clip("c", channel=1, start=0.5, end=2.0),
                  _clip("e", label="sad")])
    _write_shard(data / "split=dev" / "part-0.parquet", [_clip("d", source_mtime_ns=None, source_sha256=None)])
    (root / "build-a" / "files.json").write_text(json.dumps({"files": {
        "train": ["build-a/data/split=train/part-0.parquet"], "dev": ["build-a/data/split=dev/part-0.parquet"]}}))
    return Pool(str(root), {"build": "build-a", "files": "build-a/files.json"})


def test_the_index_holds_every_kept_clip_without_its_audio(tmp_path):
    pool = _pool(tmp_path)
    _, root_path = filesystem(pool.root)
    index = read_index(pool)
    assert list(index.columns) == ["utt_id", "path", "channel", "start", "end", *METADATA_COLUMNS,
                                   "source_size", "source_mtime_ns", "source_sha256", "__filename"]
    assert sorted(index.index) == ["a", "b", "c", "d", "e"]
    assert index.loc["b", "label"] == "ang" and index.loc["b", "arousal"] == 0.25
    assert index.loc["d", "split"] == "dev" and index.loc["c", "split"] == "train"
    assert (index.loc["c", "channel"], index.loc["c", "start"], index.loc["c", "end"]) == (1, 0.5, 2.0)
    assert index.loc["a", "channel"] == -1 and math.isnan(index.loc["a", "start"])
    assert index.loc["a", "source_mtime_ns"] == MTIME  # exact: an Int64 column, never float64
    assert str(index["source_mtime_ns"].dtype) == "Int64" and index.loc["d", "source_mtime_ns"] is pd.NA
    assert index.loc["e", "__filename"] == f"{root_path}/build-a/data/split=train/part-0.parquet"
    assert index.loc["d", "__filename"] == f"{root_path}/build-a/data/split=dev/part-0.parquet"


def _manifest(index, **changes):
    """The manifest rows of ``index``'s clips (metadata as stored), with ``changes`` ({utt_id: {col: value}})."""
    man = index[["path", *METADATA_COLUMNS]].copy().astype(object)
    for u, cols in changes.items():
        for c, v in cols.items():
            man.at[u, c] = v
    return man


def test_the_updates_table_holds_the_manifests_metadata_and_the_restamped_sources(tmp_path):
    index = read_index(_pool(tmp_path))
    man = _manifest(index, b={"label": "hap", "split": "dev", "arousal": 0.75}, c={"speaker": None})
    restamp = pd.DataFrame({"path": ["/corpus/moved/c.wav"], "source_size": [100],
                            "source_mtime_ns": [MTIME + 7], "source_sha256": ["ab" * 32]}, index=["c"])
    updates = updates_table(man.loc[["b", "c"]], index, restamp)
    assert updates.schema == pa.schema([pa.field("utt_id", pa.string()), SHARD_SCHEMA.field("path"),
                                        *[SHARD_SCHEMA.field(c) for c in METADATA_COLUMNS],
                                        SHARD_SCHEMA.field("source_size"), SHARD_SCHEMA.field("source_mtime_ns"),
                                        SHARD_SCHEMA.field("source_sha256")])
    rows = updates.to_pylist()
    meta = {c: None for c in METADATA_COLUMNS}
    assert rows == [
        {"utt_id": "b", "path": "/corpus/b.wav", **meta, "label": "hap", "arousal": 0.75, "speaker": "spk-b",
         "language": "en", "corpus": "demo", "split": "dev", "source_size": 100, "source_mtime_ns": MTIME,
         "source_sha256": "ab" * 32},
        {"utt_id": "c", "path": "/corpus/moved/c.wav", **meta, "label": "neu", "language": "en", "corpus": "demo",
         "split": "train", "source_size": 100, "source_mtime_ns": MTIME + 7, "source_sha256": "ab" * 32}]


def test_rewriting_a_file_applies_the_updates_drops_ids_and_regroups_rows_by_split(tmp_path):
    pool = _pool(tmp_path)
    index = read_index(pool)
    fs, root_path = filesystem(pool.root)
    man = _manifest(index, b={"label": "hap", "split": "dev"})
    restamp = pd.DataFrame({"path": ["/corpus/c.wav"], "source_size": [100], "source_mtime_ns": [MTIME + 7],
                            "source_sha256": ["ab" * 32]}, index=["c"])
    updates = updates_table(man.loc[["b", "c"]], index, restamp)
    path = f"{root_path}/build-a/data/split=train/part-0.parquet"
    written = rewrite_file(fs, path, root_path, updates, pd.Index(["a"]), join(pool.root, "build-b", "data"), 3)

    assert [split for split, _ in written] == ["dev", "train"]
    for split, rel in written:
        assert re.fullmatch(rf"build-b/data/split={split}/rewritten-00003-[0-9a-f]{{12}}\.parquet", rel), rel
    assert written[0][1].rsplit("/", 1)[1] == written[1][1].rsplit("/", 1)[1]  # one name per source file
    dev, train = (pq.ParquetFile(f"{root_path}/{rel}").read() for _, rel in written)
    assert dev.schema == FILE_SCHEMA and train.schema == FILE_SCHEMA
    assert _rows(dev) == [_nan_free(_clip("b", arousal=0.25, label="hap"))]  # the audio bytes copied
    assert _rows(train) == [_nan_free(_clip("c", channel=1, start=0.5, end=2.0, source_mtime_ns=MTIME + 7)),
                            _nan_free(_clip("e", label="sad"))]  # 'a' dropped; 'e' (no update) copied as it was


def test_rewriting_a_file_with_nothing_dropped_keeps_every_row_in_its_split(tmp_path):
    pool = _pool(tmp_path)
    index = read_index(pool)
    fs, root_path = filesystem(pool.root)
    updates = updates_table(_manifest(index, d={"label": "hap"}).loc[["d"]], index, pd.DataFrame())
    path = f"{root_path}/build-a/data/split=dev/part-0.parquet"
    written = rewrite_file(fs, path, root_path, updates, pd.Index([]), join(pool.root, "build-b", "data"), 0)
    assert len(written) == 1 and written[0][0] == "dev"
    table = pq.ParquetFile(f"{root_path}/{written[0][1]}").read()
    assert table.column("utt_id").to_pylist() == ["d"] and table.column("label").to_pylist() == ["hap"]
    assert table.column("audio").to_pylist() == [b"RIFFd"]


# --- manifest values as the pool stores them (schema_arrays) ---------------------------------------------------


def test_manifest_columns_are_stored_the_pools_way():
    names = ["channel", "start", "end", "label", "speaker", "transcript", "num_samples", "source_mtime_ns",
             "arousal"]
    fields = [SHARD_SCHEMA.field(c) for c in names]
    out = {"channel": np.array([1.0, np.nan, 0.0]), "start": [0.5, None, 2],
           "label": ["hap", None, float("nan")], "speaker": [7, "s2", None],
           "num_samples": [16000, None, float("nan")], "source_mtime_ns": [MTIME, None, MTIME + 1],
           "arousal": np.array([0.1, np.nan, 0.3])}
    arrays = dict(zip(names, schema_arrays(out, 3, fields)))
    assert {n: a.type for n, a in arrays.items()} == {f.name: f.type for f in fields}
    assert arrays["channel"].to_pylist() == [1, -1, 0]  # -1: the channels averaged
    start = arrays["start"].to_numpy(zero_copy_only=False)
    assert arrays["start"].null_count == 0 and start[0] == 0.5 and np.isnan(start[1]) and start[2] == 2.0
    assert arrays["end"].null_count == 0 and np.isnan(arrays["end"].to_numpy(zero_copy_only=False)).all()
    assert arrays["label"].to_pylist() == ["hap", None, None]
    assert arrays["speaker"].to_pylist() == ["7", "s2", None]
    assert arrays["transcript"].to_pylist() == [None, None, None]
    assert arrays["num_samples"].to_pylist() == [16000, None, None]
    assert arrays["source_mtime_ns"].to_pylist() == [MTIME, None, MTIME + 1]
    assert arrays["arousal"].to_pylist() == [0.1, None, 0.3]

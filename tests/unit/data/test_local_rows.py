"""LocalRows: the feature cache's rows read in this process, batched as Ray Data batches them (no Ray here; the
integration test tests/integration/test_label_rerun.py compares whole rounds with the Ray path)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from ser_models.data.local_rows import LocalRows, is_held, parquet_files


def _shards(tmp_path, sizes=(3, 5, 2)):
    """Parquet files of ``sizes`` rows (ids c00, c01, ...), written out of name order, plus files a reader skips."""
    folder = tmp_path / "features-x"
    folder.mkdir()
    start = 0
    for i, n in reversed(list(enumerate(sizes))):
        start = sum(sizes[:i])
        ids = [f"c{start + k:02d}" for k in range(n)]
        pq.write_table(pa.table({"utt_id": ids, "features": [bytes([start + k]) * 4 for k in range(n)],
                                 "label": pa.nulls(n)}), folder / f"part-{i:03d}.parquet")
    pq.write_table(pa.table({"utt_id": ["stray"]}), folder / ".part-009.parquet.tmp.parquet")
    (folder / "_SUCCESS").write_text("")
    return pafs.LocalFileSystem(), [str(folder)]


def test_files_in_path_order_and_batches_of_exactly_the_size_across_files(tmp_path):
    fs, folders = _shards(tmp_path)
    assert [p.rsplit("/", 1)[1] for p in parquet_files(fs, folders)] == ["part-000.parquet", "part-001.parquet",
                                                                          "part-002.parquet"]
    rows = LocalRows.from_parquet(fs, folders, ["utt_id", "features"])
    batches = list(rows.iter_batches(batch_size=4, batch_format="numpy"))
    assert [len(b["utt_id"]) for b in batches] == [4, 4, 2]  # 3 + 5 + 2 rows, rebatched across the files
    assert np.concatenate([b["utt_id"] for b in batches]).tolist() == [f"c{i:02d}" for i in range(10)]
    assert batches[0]["features"].dtype == object and batches[0]["features"][1] == bytes([1]) * 4
    assert [t.num_rows for t in rows.iter_batches(batch_size=None, batch_format="pyarrow")] == [3, 5, 2]
    assert rows.count() == 10


def test_filters_columns_and_a_nulls_only_column_as_ray_gives_them(tmp_path):
    fs, folders = _shards(tmp_path)
    keep = pa.array(["c01", "c04", "c09"])
    rows = LocalRows.from_parquet(fs, folders).map_batches(
        lambda t, ids: t.filter(pa.compute.is_in(t.column("utt_id"), value_set=ids)), fn_kwargs={"ids": keep},
        batch_format="pyarrow", zero_copy_batch=True)
    (batch,) = rows.select_columns(["label", "utt_id"]).iter_batches(batch_size=8)
    assert list(batch) == ["label", "utt_id"] and batch["utt_id"].tolist() == ["c01", "c04", "c09"]
    assert batch["label"].dtype == np.float32 and np.isnan(batch["label"]).all()  # Ray's numpy of a null column
    with pytest.raises(ValueError, match="pyarrow batches only"):
        rows.map_batches(lambda b: b, batch_format="numpy")
    with pytest.raises(TypeError):  # a local shuffle would differ from Ray Data's: never silently ignored
        list(rows.iter_batches(batch_size=2, local_shuffle_buffer_size=4))


def test_materialized_rows_are_held_and_read_once(tmp_path):
    fs, folders = _shards(tmp_path)
    reads = []

    def parts():
        reads.append(1)
        yield from LocalRows.from_parquet(fs, folders).iter_batches(batch_size=None, batch_format="pyarrow")

    counting = LocalRows(parts)
    assert not is_held(counting) and not is_held(LocalRows.from_parquet(fs, folders))
    held = counting.materialize()
    assert is_held(held) and not is_held(held.select_columns(["utt_id"]))
    assert held.count() == held.count() == 10 and len(reads) == 1
    assert held.iterator() is held and held.to_arrow().column("utt_id").to_pylist()[-1] == "c09"

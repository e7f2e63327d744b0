"""Rows of the feature cache's shards: per-clip feature bytes in and out, and the rows a reader asked for."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def shard_names(meta: dict) -> list[str]:
    """The shard folders of a ``meta.json`` (a single name in caches written before caches could grow)."""
    shards = meta.get("shards") or []
    return [shards] if isinstance(shards, str) else list(shards)


def shard_column_parts(fs, folders: list[str], column: str):
    """Yield one column of each Parquet file in the shard ``folders`` (paths on ``fs``), files in name order:
    a whole cache's ids are never held at once.

    Read file by file on the calling thread (``ParquetFile.read(use_threads=False)``), not through a
    ``pyarrow.dataset`` scan: in a Ray worker that had run Ray Data tasks, the dataset scanner's
    ``to_table`` was seen to wait forever on its thread pools. Names starting with ``.`` or ``_`` (writes in
    progress, metadata) are skipped, as the dataset reader skips them.
    """
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    for folder in folders:
        infos = fs.get_file_info(pafs.FileSelector(folder, recursive=True))
        for path in sorted(i.path for i in infos if i.type == pafs.FileType.File):
            name = path.rsplit("/", 1)[-1]
            if name.startswith((".", "_")) or not name.endswith(".parquet"):
                continue
            with fs.open_input_file(path) as fh:
                yield pq.ParquetFile(fh).read(columns=[column], use_threads=False).column(column)


def shard_column(fs, folders: list[str], column: str) -> pa.Array:
    """One column of every Parquet file in the shard ``folders``, concatenated (:func:`shard_column_parts`)."""
    parts = list(shard_column_parts(fs, folders, column))
    if not parts:
        return pa.array([], pa.string())
    return pa.chunked_array([c for p in parts for c in p.chunks], type=parts[0].type).combine_chunks()


def features_array(column, shape: tuple[int, int]) -> np.ndarray:
    """``[N, L, D]`` float32 from a binary column of per-clip float32 bytes."""
    return np.stack([np.frombuffer(b, np.float32).reshape(shape) for b in column.to_pylist()])


def feature_table(batch: dict) -> pa.Table:
    columns = {"utt_id": pa.array([str(u) for u in batch["utt_id"]], pa.string()),
               "features": pa.array(list(batch["features"]), pa.binary())}
    if "functionals" in batch:
        columns["functionals"] = pa.array(list(batch["functionals"]), pa.binary())
    if "num_frames" in batch:  # frame cache: lets meta.json derive D from the first clip
        columns["num_frames"] = pa.array(np.asarray(batch["num_frames"], np.int64))
    return pa.table(columns)


def select_rows(table: pa.Table, ids: pa.Array, values: dict[str, pa.Array] | None) -> pa.Table:
    """Rows whose ``utt_id`` is in ``ids`` (sorted), with column ``name = values[name][position in ids]`` for
    each target column given."""
    import pyarrow.compute as pc

    idx = pc.index_in(table.column("utt_id"), value_set=ids)
    keep = pc.is_valid(idx)
    table, idx = table.filter(keep), idx.filter(keep)
    for name, column in (values or {}).items():
        table = table.append_column(name, pc.take(column, idx))
    return table


__all__ = ["feature_table", "features_array", "select_rows", "shard_column", "shard_column_parts", "shard_names"]

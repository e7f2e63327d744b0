"""Rows read in this process, shaped like the Ray Datasets the loop's readers take: a run without Ray.

A labelling rerun on a small pool (``runtime.ray=auto``) trains and scores from the feature cache without
starting Ray: its rows come from the cache's Parquet files, read file by file with pyarrow in the driver, and
pass through the same filters, the same batches and the same model code as on Ray Data. :class:`LocalRows` is
the part of the ``ray.data.Dataset`` interface those readers use (``select_columns``, ``map_batches`` over
pyarrow tables, ``iter_batches`` to numpy or pyarrow, ``count``, ``materialize``) and nothing more: a reader
that calls anything else fails at once rather than starting Ray.

Order and batches are Ray Data's: files in path order (``ray.data.read_parquet`` sorts the files it finds),
rows in file order, and batches of exactly ``batch_size`` rows across files, the last one shorter; so an
in-process scorer sees the same clips side by side, and gives the same bits, whichever reader fed it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa

__all__ = ["LocalRows", "is_held", "parquet_files"]


def parquet_files(fs, folders: list[str]) -> list[str]:
    """Every Parquet file under ``folders`` (paths on ``fs``), folder by folder, each folder's files sorted by
    path, skipping names that start with ``.`` or ``_`` (writes in progress, metadata) as Ray Data does."""
    import pyarrow.fs as pafs

    out = []
    for folder in folders:
        infos = fs.get_file_info(pafs.FileSelector(folder, recursive=True))
        for path in sorted(i.path for i in infos if i.type == pafs.FileType.File):
            name = path.rsplit("/", 1)[-1]
            if not name.startswith((".", "_")) and name.endswith(".parquet"):
                out.append(path)
    return out


class LocalRows:
    """Tables read in this process, one part at a time, with Ray Dataset's reading interface.

    Args:
        parts: a function that yields the rows as pyarrow tables, part by part (each call starts over).
        steps: functions applied to each part, in order (``select_columns`` and ``map_batches`` add them).
        held: the parts are tables in memory that never change (:meth:`materialize`).
    """

    def __init__(self, parts: Callable[[], Iterator[pa.Table]], steps: tuple = (), held: bool = False):
        self._parts = parts
        self._steps = steps
        self.held = held and not steps

    @classmethod
    def from_table(cls, table: pa.Table) -> LocalRows:
        """Rows held in memory (one part)."""
        return cls(lambda: iter([table]), held=True)

    @classmethod
    def from_parquet(cls, fs, folders: list[str], columns: list[str] | None = None) -> LocalRows:
        """The rows of every Parquet file under ``folders`` (:func:`parquet_files` order), ``columns`` only,
        one file in memory at a time."""
        import pyarrow.parquet as pq

        files = parquet_files(fs, folders)

        def parts() -> Iterator[pa.Table]:
            for path in files:
                with fs.open_input_file(path) as fh:
                    yield pq.ParquetFile(fh).read(columns=columns, use_threads=False)

        return cls(parts)

    def __repr__(self) -> str:
        return f"LocalRows(steps={len(self._steps)}, held={self.held})"

    def _tables(self) -> Iterator[pa.Table]:
        for table in self._parts():
            for step in self._steps:
                table = step(table)
            yield table

    def select_columns(self, columns: list[str]) -> LocalRows:
        """Only ``columns``, in that order."""
        cols = list(columns)
        return LocalRows(self._parts, (*self._steps, lambda t: t.select(cols)))

    def map_batches(self, fn, *, fn_kwargs: dict | None = None, batch_format: str = "pyarrow", **_) -> LocalRows:
        """``fn(table, **fn_kwargs)`` on every part (a filter or a join; pyarrow tables in and out). Ray's
        scheduling arguments (``zero_copy_batch``, ...) mean nothing here and are ignored."""
        if batch_format != "pyarrow":
            raise ValueError(f"LocalRows.map_batches takes pyarrow batches only, got batch_format={batch_format!r}")
        kwargs = dict(fn_kwargs or {})
        return LocalRows(self._parts, (*self._steps, lambda t: fn(t, **kwargs)))

    def iter_batches(self, *, batch_size: int | None = 256, batch_format: str = "numpy") -> Iterator:
        """Batches of exactly ``batch_size`` rows across parts (the last one shorter; None: one per part), as
        Ray Data gives them: ``numpy`` (a dict of arrays, as ``ArrowBlockAccessor.to_numpy`` makes them) or
        ``pyarrow`` (a table). Nothing else: a local shuffle, say, would not be Ray Data's, so asking for one
        is a ``TypeError`` rather than another order."""
        if batch_format not in ("numpy", "pyarrow"):
            raise ValueError(f"LocalRows.iter_batches gives numpy or pyarrow batches, got {batch_format!r}")
        convert = _to_numpy if batch_format == "numpy" else (lambda t: t)
        if batch_size is None:
            for table in self._tables():
                yield convert(table)
            return
        waiting: list[pa.Table] = []
        rows = 0
        for table in self._tables():
            waiting.append(table)
            rows += table.num_rows
            while rows >= batch_size:
                joined = pa.concat_tables(waiting)
                yield convert(joined.slice(0, batch_size))
                rest = joined.slice(batch_size)
                waiting, rows = [rest], rest.num_rows
        if rows:
            yield convert(pa.concat_tables(waiting))

    def iterator(self) -> LocalRows:
        """Itself: what ``Dataset.iterator()`` gives a streaming reader (its ``iter_batches``)."""
        return self

    def to_arrow(self) -> pa.Table:
        """Every row as one table (the schema of the first part when there are none)."""
        tables = list(self._tables())
        return pa.concat_tables(tables) if tables else pa.table({})

    def count(self) -> int:
        return sum(t.num_rows for t in self._tables())

    def materialize(self) -> LocalRows:
        """The rows read now and held (read once however often they are iterated)."""
        return LocalRows.from_table(self.to_arrow())


def _to_numpy(table: pa.Table) -> dict[str, np.ndarray]:
    """A table as Ray Data's numpy batch: one array per column (nulls-only columns as NaN float32)."""
    out = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_null(column.type):
            out[name] = np.full(len(column), np.nan, dtype=np.float32)
        else:
            out[name] = column.combine_chunks().to_numpy(zero_copy_only=False)
    return out


def is_held(ds) -> bool:
    """Whether ``ds`` is rows already read and kept (a materialised Ray Dataset, or :meth:`LocalRows.materialize`
    's): reading it again gives the same rows, so a reader may keep what it made of them. Never imports Ray:
    a dataset of Ray's exists only once Ray Data is imported."""
    if isinstance(ds, LocalRows):
        return ds.held
    module = sys.modules.get("ray.data.dataset")
    return module is not None and isinstance(ds, module.MaterializedDataset)

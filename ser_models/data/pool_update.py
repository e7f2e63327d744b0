"""Pool updates: what a prepared pool holds against what a changed manifest says.

The helpers :func:`ser_models.data.prepare.prepare_pool` uses to grow or relabel a pool in place (see that
module's docstring for the design): the pool's index of clips, the checks that refuse changed audio under an
existing id (:class:`SourceChangedError`), the source signatures (size, mtime, sha256) recorded at decode, and
the rewrite of a data file's non-audio columns.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ser_models.data.pool import QUARANTINE_FILE_SCHEMA, SHARD_SCHEMA, SOURCE_SCHEMA, Pool
from ser_models.exceptions import PoolError
from ser_models.io import filesystem, write_parquet_atomic

#: Columns an update changes without decoding (the rows holding a change are rewritten, audio copied).
METADATA_COLUMNS = ("label", "arousal", "valence", "dominance", "speaker", "language", "corpus", "group",
                    "recording", "transcript", "split")
#: Columns that pick a clip's audio out of its source file: a change under an existing id is refused.
SPAN_COLUMNS = ("channel", "start", "end")
# Schema of a data file: the shard schema without the partition column (its folder carries the split).
_FILE_SCHEMA = SHARD_SCHEMA.remove(SHARD_SCHEMA.get_field_index("split"))
# A folder holding at least this many of the sources to check is listed once instead of stat-ed file by file.
_LIST_FOLDER_AT = 16
_HASH_CHUNK = 1 << 20


class SourceChangedError(PoolError):
    """An existing clip's audio changed under its ``utt_id`` (its file's bytes, or its channel / span).

    Attributes:
        utt_id: the first clip found changed.
        path: its source file.
        changed: every changed id (``utt_id`` first).
    """

    def __init__(self, utt_id: str, path: str, detail: str, changed: list[str]):
        self.utt_id, self.path, self.changed = utt_id, path, list(changed)
        more = f" ({len(changed) - 1} more: {', '.join(map(repr, changed[1:4]))}{', ...' if len(changed) > 4 else ''})" \
            if len(changed) > 1 else ""
        super().__init__(f"clip {utt_id!r} ({path}): {detail}{more}. A pool never replaces decoded audio under an "
                         "existing id: give the new audio a new utt_id, restore the old file, or rebuild the pool "
                         "(a new output_dir, or grow=false; runs on the old pool will refuse the rebuilt one)")



# --- updates: what the pool holds against what the manifest says ------------------------------------------


def read_index(pool: Pool) -> pd.DataFrame:
    """Every kept clip's path, span, metadata, source signature and file (``__filename``), indexed by utt_id;
    read on the driver without the audio column."""
    cols = ["utt_id", "path", *SPAN_COLUMNS, *METADATA_COLUMNS, *SOURCE_SCHEMA.names]
    table = pool._arrow_dataset().to_table(columns=[*cols, "__filename"])
    frame = table.to_pandas(types_mapper=_EXACT_INTS.get)
    return frame.set_index(frame["utt_id"].astype(str))


def read_quarantine(pool: Pool) -> pd.DataFrame:
    name = pool.summary.get("quarantine") or f"{pool.summary['build']}/quarantine.parquet"
    table = pq.read_table(f"{filesystem(pool.root)[1]}/{name}", filesystem=filesystem(pool.root)[0])
    for f in QUARANTINE_FILE_SCHEMA:
        if f.name not in table.column_names:
            table = table.append_column(f.name, pa.nulls(table.num_rows, f.type))
    return table.select(QUARANTINE_FILE_SCHEMA.names).cast(QUARANTINE_FILE_SCHEMA).to_pandas(
        types_mapper=_EXACT_INTS.get)


# Nanosecond mtimes do not fit a float64: nullable integer columns keep them exact.
_EXACT_INTS = {pa.int64(): pd.Int64Dtype()}


def _plain(v):
    """A numpy scalar as the Python value (for messages)."""
    return v.item() if isinstance(v, np.generic) else v


def _int(v) -> int | None:
    """A stored integer (or a missing one) as a plain int or None."""
    return None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else int(v)


def manifest_frame(rows: pd.DataFrame, columns) -> pd.DataFrame:
    """Manifest ``rows`` as the pool stores ``columns`` (the same conversion as :func:`decode_to_arrow`), as a
    DataFrame with ``rows``' index."""
    fields = [SHARD_SCHEMA.field(c) for c in columns]
    batch = {c: rows[c].to_numpy() if c in rows.columns else None for c in columns}
    table = pa.Table.from_arrays(schema_arrays(batch, len(rows), fields), schema=pa.schema(fields))
    frame = table.to_pandas()
    frame.index = rows.index
    return frame


def same_values(a: pd.Series, b: pd.Series) -> pd.Series:
    """Element-wise equality where two missing values (None / NaN) are equal."""
    a, b = a.astype(object), b.astype(object)
    return (a == b) | (a.isna() & b.isna())


def check_spans(old: pd.DataFrame, rows: pd.DataFrame) -> None:
    """Refuse existing clips whose channel, start or end changed: the same file, other audio."""
    new = manifest_frame(rows, SPAN_COLUMNS)
    bad = np.zeros(len(old), bool)
    for c in SPAN_COLUMNS:
        bad |= ~same_values(old[c], new[c]).to_numpy()
    if bad.any():
        ids = list(old.index[bad])
        u = ids[0]
        span = ", ".join(f"{c} {_plain(old.at[u, c])!r} -> {_plain(new.at[u, c])!r}" for c in SPAN_COLUMNS
                         if not same_values(old.loc[[u], c], new.loc[[u], c]).all())
        raise SourceChangedError(u, str(rows.at[u, "path"]), f"its span in the file changed ({span})", ids)


def check_sources(old: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Compare each existing clip's source with the signature recorded at decode.

    A file whose path, size and mtime match is taken as unchanged; otherwise it is hashed and its sha256
    compared. Missing files are kept as they are (the pool holds their audio), with one log line.

    Returns:
        The clips whose source moved or was touched with the same bytes: index utt_id, columns ``path`` and the
        new :data:`~ser_models.data.pool.SOURCE_SCHEMA` values.

    Raises:
        SourceChangedError: naming the first clip whose bytes changed (and how many did).
    """
    empty = pd.DataFrame(columns=["path", *SOURCE_SCHEMA.names])
    if not len(old):
        return empty
    paths = rows["path"].astype(str)
    stats = _stat_sources(sorted(set(paths)))
    # One pass over plain Python values (per-row DataFrame lookups took seconds at 10^4 clips), never through a
    # pandas column: one missing value turns it into floats, which round nanosecond mtimes (~1.7e18) and make
    # every present file look touched.
    found = paths.isin(stats.keys()).to_numpy()
    before = old.loc[paths.index]
    same = np.array([p in stats and p == str(op) and stats[p][0] == _int(os_) and stats[p][1] == _int(om)
                     for p, op, os_, om in zip(paths, before["path"], before["source_size"],
                                               before["source_mtime_ns"])], dtype=bool)
    missing = list(paths.index[~found])
    suspects = list(paths.index[found & ~same])
    if missing:
        print(f"pool: {len(missing)} existing clips' source files are missing (e.g. {missing[0]!r}: "
              f"{paths[missing[0]]}); their decoded audio stays in the pool")
    if not suspects:
        return empty
    hashes: dict[str, str] = {}
    changed, restamp = [], {}
    for u in suspects:
        path = paths[u]
        if path not in hashes:
            hashes[path] = _sha256(path)
        if hashes[path] != old.at[u, "source_sha256"]:
            changed.append(u)
        else:
            restamp[u] = {"path": path, "source_size": stats[path][0], "source_mtime_ns": stats[path][1],
                          "source_sha256": hashes[path]}
    if changed:
        u = changed[0]
        raise SourceChangedError(u, paths[u], f"its source file's bytes changed since it was decoded (size "
                                 f"{old.at[u, 'source_size']} -> {stats[paths[u]][0]} bytes, sha256 differs)", changed)
    return pd.DataFrame.from_dict(restamp, orient="index")


def changed_quarantine(q: pd.DataFrame, man: pd.DataFrame) -> list[str]:
    """Quarantined ids to decode again: their path, size or mtime changed (a replaced bad file)."""
    if not len(q):
        return []
    paths = man.loc[q["utt_id"], "path"].astype(str).to_numpy()
    stats = _stat_sources(sorted(set(paths)))
    retry = []
    for (u, old_path, size, mtime), path in zip(q[["utt_id", "path", "source_size", "source_mtime_ns"]]
                                                .itertuples(index=False), paths):
        info = stats.get(path)
        now = (None, None) if info is None else info
        before = (_int(size), _int(mtime))
        if path != old_path or now != before:
            retry.append(u)
    return retry


def replaced_quarantine(pool: Pool) -> list[str]:
    """Quarantined ids whose file changed since it was quarantined, read from the quarantine alone (the manifest
    is unchanged: a rerun whose fingerprint matches still takes a repaired file back)."""
    q = read_quarantine(pool)
    return changed_quarantine(q, q.set_index(q["utt_id"].astype(str), drop=False)[["path"]])


def updates_table(rows: pd.DataFrame, index: pd.DataFrame, restamp: pd.DataFrame) -> pa.Table:
    """New ``path``, metadata and source columns of the clips to rewrite, as an Arrow table keyed by utt_id."""
    meta = manifest_frame(rows, METADATA_COLUMNS)
    source = index.loc[rows.index, ["path", *SOURCE_SCHEMA.names]].copy()
    if len(restamp):
        hit = restamp.index.intersection(rows.index)
        source.loc[hit, restamp.columns] = restamp.loc[hit].to_numpy()
    fields = [pa.field("utt_id", pa.string()), SHARD_SCHEMA.field("path"),
              *[SHARD_SCHEMA.field(c) for c in METADATA_COLUMNS], *SOURCE_SCHEMA]
    data = {"utt_id": pa.array(list(rows.index), pa.string()),
            "path": pa.array(source["path"].astype(str).tolist(), pa.string()),
            **{c: pa.array(meta[c].astype(object), SHARD_SCHEMA.field(c).type, from_pandas=True)
               for c in METADATA_COLUMNS},
            "source_size": pa.array([_int(v) for v in source["source_size"]], pa.int64()),
            "source_mtime_ns": pa.array([_int(v) for v in source["source_mtime_ns"]], pa.int64()),
            "source_sha256": pa.array(source["source_sha256"].astype(object), pa.string(), from_pandas=True)}
    return pa.table(data, schema=pa.schema(fields))


def rewrite_file(fs, path: str, root_path: str, updates: pa.Table, dropped: pd.Index, data_dir: str,
                  k: int) -> list[tuple[str, str]]:
    """Rewrite one data file with ``updates`` applied and ``dropped`` ids removed, its rows grouped by their
    (new) split under ``data_dir``; the audio bytes are copied. Returns ``[(split, path relative to the
    pool), ...]`` of the files written."""
    table = pq.read_table(path, filesystem=fs)
    table = table.select([n for n in _FILE_SCHEMA.names if n in table.column_names])
    if len(dropped):
        table = table.filter(pc.invert(pc.is_in(table.column("utt_id"), value_set=pa.array(list(dropped),
                                                                                              pa.string()))))
    old_split = path[len(root_path):].split("/split=", 1)[1].split("/", 1)[0]
    idx = pc.index_in(table.column("utt_id"), value_set=updates.column("utt_id"))
    hit = pc.is_valid(idx)
    for name in updates.column_names[1:]:
        if name == "split":
            continue
        new = pc.take(updates.column(name), idx)
        pos = table.schema.get_field_index(name)
        table = table.set_column(pos, name, pc.if_else(hit, new, table.column(name)).cast(table.schema.field(name).type))
    splits = pc.if_else(hit, pc.take(updates.column("split"), idx), pa.scalar(old_split, pa.string()))
    table = table.cast(_FILE_SCHEMA)
    written = []
    _, data_path = filesystem(data_dir)
    name = hashlib.sha256(path.encode()).hexdigest()[:12]
    for split in sorted(set(splits.to_pylist())):
        part = table.filter(pc.equal(splits, split))
        if not part.num_rows:
            continue
        target = f"{data_dir}/split={split}/rewritten-{k:05d}-{name}.parquet"
        write_parquet_atomic(target, part)
        written.append((split, f"{data_path}/split={split}/rewritten-{k:05d}-{name}.parquet"[len(root_path) + 1:]))
    return written


def list_files(data_dir: str, out: str) -> dict[str, list[str]]:
    """``{split: [path relative to the pool root]}`` of the Parquet files under a build's ``data`` folder."""
    fs, data_path = filesystem(data_dir)
    _, root_path = filesystem(out)
    files: dict[str, list[str]] = {}
    for info in fs.get_file_info(pafs.FileSelector(data_path, recursive=True, allow_not_found=True)):
        if info.type != pafs.FileType.File or not info.path.endswith(".parquet"):
            continue
        split = info.path[len(data_path):].strip("/").split("/", 1)[0].split("=", 1)[1]
        files.setdefault(split, []).append(info.path[len(root_path) + 1:])
    return files


def _stat_sources(paths: list[str]) -> dict[str, tuple[int, int | None]]:
    """``{path: (size in bytes, mtime in ns)}`` of the source files that exist (missing ones are absent).

    A folder holding many of ``paths`` is listed once (on S3 one request per 1000 objects) instead of one
    request per file."""
    by_folder: dict[str, list[str]] = {}
    for p in paths:
        by_folder.setdefault(p.rsplit("/", 1)[0] if "/" in p else ".", []).append(p)
    out: dict[str, tuple[int, int | None]] = {}
    for folder, group in by_folder.items():
        fs, folder_path = filesystem(folder)
        wanted = {filesystem(p)[1]: p for p in group} if len(group) >= _LIST_FOLDER_AT else None
        if wanted is not None:
            infos = fs.get_file_info(pafs.FileSelector(folder_path, allow_not_found=True))
            for info in infos:
                if info.type == pafs.FileType.File and info.path in wanted:
                    out[wanted[info.path]] = (int(info.size), info.mtime_ns)
            continue
        for p in group:
            pfs, ppath = filesystem(p)
            info = pfs.get_file_info(ppath)
            if info.type == pafs.FileType.File:
                out[p] = (int(info.size), info.mtime_ns)
    return out


def _sha256(path: str) -> str | None:
    """sha256 (hex) of a source file's bytes, streamed; None when it cannot be read."""
    fs, p = filesystem(path)
    h = hashlib.sha256()
    try:
        with fs.open_input_stream(p) as fh:
            while chunk := fh.read(_HASH_CHUNK):
                h.update(chunk)
    except (OSError, FileNotFoundError):
        return None
    return h.hexdigest()


def source_signatures(paths) -> dict[str, tuple[int | None, int | None, str | None]]:
    """``{path: (size, mtime_ns, sha256)}`` of each distinct source (Nones for a file that cannot be read): what
    the decoder records beside every clip. Each file is stat-ed and read once per call."""
    out = {}
    for p in dict.fromkeys(str(x) for x in paths):
        try:
            fs, fp = filesystem(p)
            info = fs.get_file_info(fp)
        except (OSError, ValueError):
            out[p] = (None, None, None)
            continue
        if info.type != pafs.FileType.File:
            out[p] = (None, None, None)
            continue
        out[p] = (int(info.size), info.mtime_ns, _sha256(p))
    return out


def schema_arrays(out: Mapping[str, Any], n: int, fields: list[pa.Field]) -> list[pa.Array]:
    """Columns of ``out`` (numpy arrays or lists; a missing one is all null) as Arrow arrays of ``fields``' types,
    the pool's way: ``channel`` -1 when missing, ``start`` / ``end`` NaN (not null), blank text as null."""
    arrays = []
    for f in fields:
        col = out.get(f.name)
        if f.name == "channel":  # -1 = the channels averaged (a clip pool, or a mixed segment)
            ch = np.full(n, -1.0) if col is None else np.asarray(pd.to_numeric(pd.Series(col), errors="coerce"),
                                                                  dtype=np.float64)
            arrays.append(pa.array(np.where(np.isnan(ch), -1, ch).astype(np.int32), f.type))
        elif f.name in ("start", "end"):  # NaN (not null) = the whole file
            arrays.append(pa.array(np.full(n, np.nan) if col is None else np.asarray(col, np.float64), f.type))
        elif col is None:
            arrays.append(pa.nulls(n, f.type))
        elif pa.types.is_string(f.type) or pa.types.is_binary(f.type):
            values = [None if (v is None or (isinstance(v, float) and math.isnan(v))) else v for v in col]
            if pa.types.is_string(f.type):
                values = [v if v is None else str(v) for v in values]
            arrays.append(pa.array(values, f.type))
        elif pa.types.is_integer(f.type):
            arrays.append(pa.array([None if v is None or v != v else int(v) for v in col], f.type))
        else:
            arrays.append(pa.array(np.asarray(col), f.type, from_pandas=True))
    return arrays

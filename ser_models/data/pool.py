"""The prepared pool: reading what ``prepare_pool`` wrote, as Ray Datasets and pandas metadata.

Layout (docs/ARCHITECTURE.md, "Prepared pool on disk"); ``<output_dir>`` may be a local path or a
``pyarrow.fs`` URI (``s3://bucket/pool``)::

    <output_dir>/summary.json                            written last: lineage, version, history, current build
    <output_dir>/build-<id>/files.json                   the pool's live Parquet files, by split (relative paths)
    <output_dir>/build-<id>/data/split=<split>/*.parquet one row per kept clip (hive-partitioned by split)
    <output_dir>/build-<id>/quarantine.parquet           utt_id, path, reason, detail (+ source size / mtime)
    <output_dir>/build-<id>/config.yaml

A pool grows in place (``prepare_pool`` on a longer manifest): each version writes only its new files into a
new ``build-<id>/`` folder, and its ``files.json`` lists every live file, old builds' included. Readers read
exactly the listed files, never a folder listing, so files a killed update left behind are invisible (the
next ``prepare_pool`` removes them). A pool written before growing pools existed (no ``files.json``) is read
from its build's ``data/`` folder.

The shards also hold a ``detail`` column (always null for kept clips: the decoder writes kept and
quarantined rows in one pass) and the source file's signature (``source_size``, ``source_mtime_ns``,
``source_sha256``: what ``prepare_pool`` compares to refuse an existing clip whose audio changed); every
reader here exposes exactly :data:`POOL_COLUMNS`.

A row is a clip or a segment of a long recording (``recording, channel, start, end``, ``group``); readers give
``speaker`` as :func:`~ser_models.data.speakers.speaker_key` (a segment without a speaker is its stream's).

This module never imports torch: its ``map_batches`` functions run on Ray workers, where importing torch
costs seconds per worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from ser_models.data.inputs import ModelTargets
from ser_models.data.speakers import fill_speaker_keys, speaker_sources, stream_mask
from ser_models.exceptions import PoolError
from ser_models.io import exists, filesystem, read_json, read_parquet
from ser_models.runtime import read_parquet_dataset

if TYPE_CHECKING:
    import ray.data

#: Arrow schema of a pool row (docs/ARCHITECTURE.md), in column order. A segment keeps where it came from:
#: ``recording`` (null for a clip pool), ``channel`` (0-based; -1 = the channels averaged), ``start`` / ``end``
#: (seconds in the source file; NaN = the whole file) and ``group`` (show, campaign or customer).
POOL_SCHEMA = pa.schema(
    [
        ("utt_id", pa.string()),
        ("path", pa.string()),
        ("recording", pa.string()),
        ("channel", pa.int32()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("audio", pa.binary()),
        ("audio_format", pa.string()),
        ("num_samples", pa.int64()),
        ("duration", pa.float64()),
        ("orig_sample_rate", pa.int32()),
        ("orig_channels", pa.int32()),
        ("label", pa.string()),
        ("arousal", pa.float64()),
        ("valence", pa.float64()),
        ("dominance", pa.float64()),
        ("speaker", pa.string()),
        ("language", pa.string()),
        ("corpus", pa.string()),
        ("group", pa.string()),
        ("split", pa.string()),
        ("transcript", pa.string()),
        ("status", pa.string()),
    ]
)
POOL_COLUMNS = tuple(POOL_SCHEMA.names)
#: The source file's signature when the clip was decoded: its size (bytes), modification time (ns since the
#: epoch) and the sha256 of its bytes. ``prepare_pool`` re-hashes a source only when its path, size or mtime
#: differ from these (a stat is cheap on S3, a read is not).
SOURCE_SCHEMA = pa.schema([("source_size", pa.int64()), ("source_mtime_ns", pa.int64()),
                           ("source_sha256", pa.string())])
#: Schema of the shards as written (pool columns + the decoder's ``detail`` + the source signature).
SHARD_SCHEMA = pa.schema([*POOL_SCHEMA, pa.field("detail", pa.string()), *SOURCE_SCHEMA])
QUARANTINE_SCHEMA = pa.schema(
    [("utt_id", pa.string()), ("path", pa.string()), ("reason", pa.string()), ("detail", pa.string())]
)
#: ``quarantine.parquet`` as written: the source's size and mtime tell a later ``prepare_pool`` whether a
#: quarantined file was replaced (then it is decoded again).
QUARANTINE_FILE_SCHEMA = pa.schema([*QUARANTINE_SCHEMA, *SOURCE_SCHEMA.remove(2)])
#: Name of the live-file list inside a build folder.
FILES_NAME = "files.json"
#: Columns an unlabelled view drops: scoring code can never read the truth.
TARGET_COLUMNS = ("label", "arousal", "valence", "dominance")
_HIVE_SPLIT = pads.partitioning(pa.schema([("split", pa.string())]), flavor="hive")


#: Attribute :meth:`Pool.dataset` sets on the Ray Dataset it returns (a :class:`PoolRead`).
POOL_READ_ATTR = "_ser_pool_read"


class PoolRead(NamedTuple):
    """What a :meth:`Pool.dataset` reads: the pool, its files (paths on the pool's filesystem) and the filter."""

    pool: Pool
    files: list[str]
    where: dict


class LabelSource(Protocol):
    """Anything that knows the current labels (``LabelLedger`` does)."""

    def labels(self) -> dict[str, str]: ...


class Pool:
    """A prepared pool on disk.

    Use :meth:`open`; the constructor does no checks.

    Args:
        root: the pool's ``output_dir`` (local path or ``pyarrow.fs`` URI).
        summary: the parsed ``summary.json``.
    """

    def __init__(self, root: str, summary: dict):
        self.root = str(root).rstrip("/")
        self.summary = summary
        self._files: dict[str, list[str]] | None = None  # split -> live files (paths on the pool's filesystem)

    def __repr__(self) -> str:
        return f"Pool(root={self.root!r}, kept={self.summary.get('kept')}, splits={self.splits})"

    @classmethod
    def open(cls, output_dir: str | os.PathLike) -> Pool:
        """Open a complete pool.

        Raises:
            PoolError: naming the folder when it is missing or incomplete (no ``summary.json`` means a
                build never finished: rerun ``python -m jobs.prepare_pool``).
        """
        root = str(output_dir).rstrip("/")
        if not exists(root):
            raise PoolError(f"no prepared pool at {root}: run `python -m jobs.prepare_pool CONFIG` first")
        summary_path = f"{root}/summary.json"
        if not exists(summary_path):
            raise PoolError(f"pool at {root} is incomplete (no summary.json): a build did not finish; "
                            "rerun `python -m jobs.prepare_pool CONFIG`")
        summary = read_json(summary_path)
        if "build" not in summary:
            raise PoolError(f"pool at {root} was written by an older version (no build folder in summary.json); "
                            "rerun `python -m jobs.prepare_pool CONFIG` to rebuild it")
        pool = cls(root, summary)
        listing = pool._files_path()
        if not exists(listing or pool.data_dir):
            raise PoolError(f"pool at {root}: summary.json names {listing or pool.build_dir}, which is missing; "
                            "rerun `python -m jobs.prepare_pool CONFIG`")
        return pool

    def refresh(self) -> bool:
        """Re-read ``summary.json``: a pool that grew (or was relabelled) since :meth:`open` is then read at its
        new version by every later call. Cheap (one small JSON read; the file list is read on next use).

        Returns:
            True when the pool changed (another version, or another lineage after a rebuild).

        Raises:
            PoolError: the pool is gone or incomplete (see :meth:`open`).
        """
        fresh = type(self).open(self.root)
        changed = (fresh.version, fresh.lineage, fresh.summary.get("build")) != (
            self.version, self.lineage, self.summary.get("build"))
        self.summary, self._files = fresh.summary, None
        return changed

    @property
    def lineage(self) -> str:
        """The pool's identity across versions: the fingerprint of the build that started it. Growing or
        relabelling keeps it; a rebuild (changed audio settings, ``grow=false``) starts a new one. Runs record
        it (``check_run``) and feature caches are named by it."""
        return str(self.summary.get("lineage") or self.summary.get("fingerprint"))

    @property
    def version(self) -> int:
        """1 for a fresh build, +1 for each update that added, relabelled, moved or dropped clips."""
        return int(self.summary.get("version", 1))

    def _files_path(self) -> str | None:
        name = self.summary.get("files")
        return None if name is None else f"{self.root}/{name}"

    def _file_map(self) -> dict[str, list[str]]:
        """``{split: [file, ...]}`` of the live files, as paths on the pool's filesystem (cached)."""
        if self._files is None:

            fs, root_path = filesystem(self.root)
            listing = self._files_path()
            if listing is not None:
                rel = read_json(listing)["files"]
                self._files = {split: sorted(f"{root_path}/{f}" for f in names) for split, names in rel.items()}
            else:  # written before growing pools: every file under the build's data folder
                _, data_dir = filesystem(self.data_dir)
                infos = fs.get_file_info(pafs.FileSelector(data_dir, recursive=True, allow_not_found=True))
                files: dict[str, list[str]] = {}
                for i in infos:
                    if i.type == pafs.FileType.File and i.path.endswith(".parquet"):
                        split = i.path[len(data_dir):].strip("/").split("/", 1)[0].split("=", 1)[-1]
                        files.setdefault(split, []).append(i.path)
                self._files = {k: sorted(v) for k, v in files.items()}
        return self._files

    def _arrow_dataset(self, files: list[str] | None = None) -> pads.Dataset:
        """The live files (or ``files``) as one pyarrow dataset with the ``split`` partition column."""
        fs, root_path = filesystem(self.root)
        files = self.files() if files is None else files
        # An explicit schema: a pool of older shards (no source columns) reads the same way.
        return pads.dataset(files, schema=SHARD_SCHEMA, filesystem=fs, format="parquet", partitioning=_HIVE_SPLIT,
                            partition_base_dir=root_path)

    @property
    def build_dir(self) -> str:
        """The folder of the current build (named by ``summary.json``)."""
        return f"{self.root}/{self.summary['build']}"

    @property
    def data_dir(self) -> str:
        """The current build's own ``data/`` folder; a pool that grew also reads older builds' files (use
        :meth:`files`, never a listing of this folder)."""
        return f"{self.build_dir}/data"

    @property
    def splits(self) -> list[str]:
        """Splits with at least one kept clip, from the summary."""
        return sorted(self.summary.get("splits", {}))

    def _split_name(self, split: str) -> str:
        if split not in self.splits:
            raise PoolError(f"split {split!r} has no clips in pool {self.root}; available: {self.splits}")
        return split

    def files(self, split: str | None = None) -> list[str]:
        """The pool's Parquet files (of ``split``, or all), sorted, as paths on the pool's filesystem: the units
        a job can plan its shards by (``jobs.predict``)."""
        files = self._file_map()
        if split is not None:
            return list(files.get(self._split_name(split), []))
        return sorted(f for names in files.values() for f in names)

    def dataset(self, split: str | None = None, columns: list[str] | None = None,
                where: dict[str, str] | None = None, files: list[str] | None = None) -> ray.data.Dataset:
        """The pool (or one split of it) as a Ray Dataset with :data:`POOL_COLUMNS`.

        A split reads only its own partition folder. The ``split`` column is a plain string. The ``speaker``
        column is each clip's :func:`~ser_models.data.speakers.speaker_key`: the manifest's speaker, or for a segment without one its
        stream (``<recording>#ch<channel>``), so every reader groups speakers alike.

        Args:
            split: ``"train"``, ``"dev"``, ``"test"`` or ``None`` for all.
            columns: subset of :data:`POOL_COLUMNS` to read (default: all, audio included).
            where: keep only rows whose columns equal these values (``{"language": "en"}``; a list value =
                any of them, e.g. ``{"utt_id": ids}``), filtered on the workers block by block.
            files: read only these of the pool's files (from :meth:`files`) instead of ``split``'s folder.
        """
        from ray.data.datasource.partitioning import Partitioning


        cols = _check_columns(columns, self.root)
        fs, root_path = filesystem(self.root)
        if not self.splits:
            raise PoolError(f"pool {self.root} holds no clips (all quarantined: see quarantine.parquet)")
        path = self.files(split) if files is None else list(files)
        # Explicit str type: inference would turn a split named "2024" into an int. The base is the pool's
        # root: a grown pool's files live in several build folders, each with its split=<name> folders.
        partitioning = Partitioning("hive", base_dir=root_path, field_names=["split"], field_types={"split": str})
        where = _check_where(where, self.root)
        read = cols + [c for c in [*where, *speaker_sources(cols)] if c not in cols]
        # Columns by name: the reader puts the partition column ("split") last.
        ds = read_parquet_dataset(path, filesystem=fs, columns=read, partitioning=partitioning)
        if where or "speaker" in cols:
            ds = ds.map_batches(_keep_where, fn_kwargs={"where": where, "columns": cols}, batch_format="pyarrow",
                                zero_copy_batch=True)
        # Which pool rows this dataset holds, for a reader that only needs their ids (FeatureCache.build
        # encodes the clips it lacks without reading any audio to find them).
        setattr(ds, POOL_READ_ATTR, PoolRead(self, list(path), where))
        return ds

    def ids_by_file(self, files: list[str] | None = None, where: dict | None = None) -> Iterator[pa.Table]:
        """``utt_id`` and ``file`` (the live file holding it) of every clip (of ``files``; matching ``where`` as in
        :meth:`metadata`), read on the driver without the audio, a batch of rows at a time (a pool of millions
        of clips is never held whole): which files to read for a few clips.

        Yields:
            Tables with the columns ``utt_id`` and ``file``.
        """
        flt = None
        for name, value in _check_where(where, self.root).items():
            term = pc.field(name).isin(value) if isinstance(value, (list, tuple)) else pc.field(name) == value
            flt = term if flt is None else flt & term
        for batch in self._arrow_dataset(files).to_batches(columns=["utt_id", "__filename"], filter=flt):
            yield pa.Table.from_batches([batch]).rename_columns(["utt_id", "file"])

    def metadata(self, columns: list[str] | None = None, split: str | None = None,
                 where: dict[str, str] | None = None) -> pd.DataFrame:
        """Pool columns read on the driver with pyarrow; the ``audio`` column only when asked for; only rows
        whose columns equal ``where``'s values when given (as in :meth:`dataset`). ``speaker`` is each clip's
        :func:`~ser_models.data.speakers.speaker_key`, as in :meth:`dataset`."""
        return self.table(columns, split, where).to_pandas()

    def table(self, columns: list[str] | None = None, split: str | None = None,
              where: dict[str, str] | None = None) -> pa.Table:
        """:meth:`metadata` as an Arrow table: no Python object per clip (a pool of millions of clips)."""
        cols = [c for c in POOL_COLUMNS if c != "audio"] if columns is None else _check_columns(columns, self.root)
        dataset = self._arrow_dataset(None if split is None or split not in self.splits else self.files(split))
        flt = None if split is None else (pc.field("split") == split)
        if split is not None:
            self._split_name(split)
        for name, value in _check_where(where, self.root).items():
            term = pc.field(name).isin(value) if isinstance(value, (list, tuple)) else pc.field(name) == value
            flt = term if flt is None else flt & term
        read = cols + [c for c in speaker_sources(cols) if c not in cols]
        table = dataset.to_table(columns=read, filter=flt)
        return fill_speaker_keys(table).select(cols)

    def value_range(self, column: str, split: str | None = None, where: dict | None = None) -> tuple | None:
        """``(min, max)`` of ``column`` over the rows of ``split`` (None = all) whose columns equal ``where``'s
        values, scanned batch by batch (the column is never held whole); None for no rows."""
        _check_columns([column], self.root)
        if split is not None:
            self._split_name(split)
        dataset = self._arrow_dataset(None if split is None or split not in self.splits else self.files(split))
        flt = None if split is None else (pc.field("split") == split)
        for name, value in _check_where(where, self.root).items():
            term = pc.field(name).isin(value) if isinstance(value, (list, tuple)) else pc.field(name) == value
            flt = term if flt is None else flt & term
        low = high = None
        for batch in dataset.to_batches(columns=[column], filter=flt):
            if not batch.num_rows:
                continue
            mm = pc.min_max(batch.column(0))
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            if lo is not None:
                low = lo if low is None else min(low, lo)
                high = hi if high is None else max(high, hi)
        return None if low is None else (low, high)

    def stream_speakers(self, split: str | None = None) -> int:
        """Clips whose ``speaker`` the pool derives from their stream (no speaker, but a recording)."""
        if split is not None:
            self._split_name(split)
        dataset = self._arrow_dataset()
        flt = None if split is None else (pc.field("split") == split)
        t = dataset.to_table(columns=["speaker", "recording"], filter=flt)
        return int(pc.sum(stream_mask(t.column("speaker"), t.column("recording"))).as_py() or 0)

    def log_stream_speakers(self, log=print, split: str | None = None) -> int:
        """Say once, in a job's log, how many clips take their stream as their speaker (see :func:`~ser_models.data.speakers.speaker_key`);
        returns that count (nothing is said when it is 0)."""
        n = self.stream_speakers(split)
        if n:
            log(f"speaker statistics: no speaker column; using recording and channel as the speaker for {n} clips")
        return n

    def check_labels(self, labels: list[str], splits: tuple[str, ...] = ("train", "dev", "test"),
                     key: str = "model.labels") -> None:
        """Fail fast, before any Ray Train start, when a clip of ``splits`` has a label outside ``labels``.

        Raises:
            PoolError: naming the unknown labels, one clip of each, and the config key to change.
        """
        present = [s for s in splits if s in self.splits]
        if not present:
            return
        meta = self.metadata(columns=["utt_id", "label", "split"])
        meta = meta[meta["split"].isin(present) & meta["label"].notna()]
        bad = meta[~meta["label"].isin(list(labels))]
        if len(bad):
            examples = bad.groupby("label")["utt_id"].first().to_dict()
            raise PoolError(f"pool {self.root} has labels outside {key}={list(labels)}: "
                            + ", ".join(f"{lab!r} (e.g. clip {uid!r})" for lab, uid in examples.items())
                            + f"; add them to {key} or map them in the manifest (label_map)")

    def check_evaluation_labels(self, model_cfg, splits: tuple[str, ...] = ("dev", "test")) -> None:
        """Fail fast, before any Ray Train start, when a clip of an evaluation split has no label (a model with
        classes scores every dev / test clip against its label).

        Raises:
            PoolError: naming each split's count of unlabelled clips, a few of them, and the ways out.
        """
        present = [s for s in splits if s in self.splits]
        if not model_cfg.labels or not present:
            return
        meta = self.metadata(columns=["utt_id", "label", "split"])
        meta = meta[meta["split"].isin(present)]
        missing = meta[meta["label"].isna()]
        if len(missing):
            counts = ", ".join(f"{int((missing['split'] == s).sum())} of {int((meta['split'] == s).sum())} {s}"
                               for s in present if (missing["split"] == s).any())
            raise PoolError(f"pool {self.root}: {counts} clips have no label (e.g. "
                            f"{', '.join(repr(u) for u in missing['utt_id'].head(3))}); every dev / test clip needs "
                            "one. Label them in the manifest, give segments labels by overlap (jobs.segment "
                            "annotations=..., which leaves unlabelled dev / test segments out), or move them to "
                            "train")

    def check_targets(self, targets: ModelTargets, splits: tuple[str, ...] = ("train", "dev", "test"),
                      key: str = "model.labels") -> None:
        """What every job checks on its pool before Ray starts: :meth:`check_labels` when the model has classes,
        :meth:`check_dimensions` when it has dimensions (``targets``: ``ModelConfig.targets``).

        Raises:
            PoolError: see the two checks.
        """
        if targets.labels:
            self.check_labels(targets.labels, splits, key=key)
        self.check_dimensions(targets.dimensions, targets.dimension_range, splits)

    def check_dimensions(self, dimensions: list[str], value_range: tuple[float, float],
                         splits: tuple[str, ...] = ("train", "dev", "test"), key: str = "model.dimensions") -> None:
        """Fail fast when a clip of ``splits`` lacks a value of ``dimensions`` or has one outside ``value_range``.

        Raises:
            PoolError: naming the column, how many clips, one clip of each problem and the config keys.
        """
        present = [s for s in splits if s in self.splits]
        if not dimensions or not present:
            return
        low, high = value_range
        meta = self.metadata(columns=["utt_id", *dimensions, "split"])
        meta = meta[meta["split"].isin(present)]
        problems = []
        for name in dimensions:
            values = pd.to_numeric(meta[name], errors="coerce")
            missing, outside = meta[values.isna()], meta[(values < low) | (values > high)]
            if len(missing):
                problems.append(f"{len(missing)} clips have no {name} value (e.g. {missing['utt_id'].iloc[0]!r})")
            if len(outside):
                problems.append(f"{len(outside)} clips have {name} outside model.dimension_range=[{low:g}, {high:g}] "
                                f"(e.g. {outside['utt_id'].iloc[0]!r}: {float(values[outside.index[0]]):g})")
        if problems:
            raise PoolError(f"pool {self.root}, splits {present}: " + "; ".join(problems)
                            + f" -- fix the manifest, set model.dimension_range, or drop them from {key}")

    def quarantine(self) -> pd.DataFrame:
        """The quarantined clips: ``utt_id, path, reason, detail``."""
        name = self.summary.get("quarantine") or f"{self.summary['build']}/quarantine.parquet"
        return read_parquet(f"{self.root}/{name}", columns=list(QUARANTINE_SCHEMA.names)).to_pandas()

    def labelled(self, ledger: LabelSource, split: str = "train") -> ray.data.Dataset:
        """Clips of ``split`` whose ``utt_id`` is in the ledger, with the ledger's targets: ``label`` and, when
        the ledger has them (``ledger.targets()``), ``arousal`` / ``valence`` / ``dominance`` replaced by its
        values (null where it has none) -- never the pool's own -- and its ``soft_label`` column when it has one."""
        if hasattr(ledger, "targets"):
            targets = ledger.targets()
        else:
            labels = ledger.labels()
            targets = pa.table({"utt_id": pa.array(list(labels), pa.string()),
                                "label": pa.array(list(labels.values()), pa.string())})
        return self.dataset(split).map_batches(
            _join_targets, fn_kwargs={"targets": targets}, batch_format="pyarrow", zero_copy_batch=True
        )

    def unlabelled(self, ledger: LabelSource, split: str = "train") -> ray.data.Dataset:
        """Clips of ``split`` not in the ledger, without ``label``/``arousal``/``valence``/``dominance``."""
        ids = pa.array(list(ledger.labels()), type=pa.string())
        cols = [c for c in POOL_COLUMNS if c not in TARGET_COLUMNS]
        return self.dataset(split, columns=cols).map_batches(
            _drop_ids, fn_kwargs={"ids": ids}, batch_format="pyarrow", zero_copy_batch=True
        )


def _check_columns(columns: list[str] | None, root: str) -> list[str]:
    if columns is None:
        return list(POOL_COLUMNS)
    unknown = [c for c in columns if c not in POOL_COLUMNS]
    if unknown:
        raise PoolError(f"unknown pool columns {unknown} (pool {root}); available: {list(POOL_COLUMNS)}")
    return list(columns)


# --- map_batches bodies (run on Ray workers; keep them free of heavy imports) -------------------------------


def _join_targets(table: pa.Table, targets: pa.Table) -> pa.Table:
    """Rows of ``table`` whose id is in ``targets``, their target columns replaced by ``targets``'."""
    idx = pc.index_in(table.column("utt_id"), value_set=targets.column("utt_id"))
    keep = pc.is_valid(idx)
    table, idx = table.filter(keep), idx.filter(keep)
    for name in TARGET_COLUMNS:
        if name in targets.column_names:
            values = pc.take(targets.column(name), idx).cast(table.schema.field(name).type)
            table = table.set_column(table.schema.get_field_index(name), name, values)
    if "soft_label" in targets.column_names:  # several annotators' vote shares: not a pool column
        table = table.append_column("soft_label", pc.take(targets.column("soft_label"), idx))
    return table


def _check_where(where: dict[str, str] | None, root: str) -> dict[str, str]:
    where = dict(where or {})
    _check_columns(list(where), root)
    return where


def _keep_where(table: pa.Table, where: dict[str, str], columns: list[str]) -> pa.Table:
    """Rows of ``table`` whose columns equal ``where``'s values (or are in a list value), ``columns`` only, with
    each clip's :func:`~ser_models.data.speakers.speaker_key` as ``speaker``."""
    keep = None
    for name, value in where.items():
        term = (pc.is_in(table.column(name), value_set=pa.array(list(value), table.schema.field(name).type))
                if isinstance(value, (list, tuple)) else pc.fill_null(pc.equal(table.column(name), value), False))
        keep = term if keep is None else pc.and_(keep, term)
    table = table if keep is None else table.filter(keep)
    return fill_speaker_keys(table).select(columns)


def _drop_ids(table: pa.Table, ids: pa.Array) -> pa.Table:
    return table.filter(pc.invert(pc.is_in(table.column("utt_id"), value_set=ids)))


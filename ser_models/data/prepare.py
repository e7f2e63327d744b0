"""Build a prepared pool from a manifest with Ray Data (decode, mono, 16 kHz, validate, quarantine, shard).

One pass over the audio: ``map_batches`` decodes every clip and tags each row ``status = "ok"`` or a
quarantine reason; a single ``write_parquet`` partitioned by split sends bad rows (whose audio is null) to a
reserved partition, which the driver then turns into ``quarantine.parquet`` and removes. No clip is decoded
twice and nothing is materialised in the object store.

The build is idempotent and crash-safe without a single rename, so it works the same on a local disk and
on an object store (``s3://``, ``gs://``): each build writes a new ``build-<id>/`` folder inside
``output_dir``, and ``summary.json``, written last in one atomic write, names the build it describes. A crash
at any point leaves ``summary.json`` naming the previous complete build (or none); the next build removes
folders no summary names. ``summary.json`` holds a fingerprint of the manifest bytes and the content-relevant
config, so a rerun with the same inputs does nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from ser_models.config import to_dict, to_yaml
from ser_models.data.audio import decode_batch
from ser_models.data.config import PoolConfig
from ser_models.data.manifest import read_manifest
from ser_models.data.pool import _HIVE_SPLIT, QUARANTINE_SCHEMA, SHARD_SCHEMA, Pool
from ser_models.exceptions import PoolError
from ser_models.failpoints import pausepoint
from ser_models.io import (
    delete_dir,
    exists,
    filesystem,
    is_local,
    join,
    list_dir,
    local_path,
    read_bytes,
    write_bytes_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from ser_models.progress import StageProgress, WrittenRows

#: Bumped when the pool's layout or decoding changes, so old pools are rebuilt.
POOL_FORMAT_VERSION = 3  # 3: segments keep recording, channel, start, end and group
#: Prefix of the per-build folders inside a pool (``summary.json`` names the current one).
BUILD_PREFIX = "build-"
#: Split given to every clip whose manifest row has none (a manifest without splits is one training pool).
DEFAULT_SPLIT = "train"
# Reserved partition value for quarantined rows during the build; never present in a finished pool.
_QUARANTINE_SPLIT = "_quarantine"


@dataclasses.dataclass
class PoolSummary:
    """What a build did (also the content of ``summary.json``).

    Attributes:
        clips_in: manifest rows.
        kept: clips written to the pool.
        quarantined: clips written to ``quarantine.parquet``.
        splits: ``{split: {"clips": int, "hours": float}}`` of kept clips.
        reasons: ``{reason: count}`` of quarantined clips.
        seconds: wall time of the build (s).
        clips_per_s: ``clips_in / seconds``.
        fingerprint: hash of the manifest bytes and the content-relevant config.
        output_dir: where the pool lives.
        up_to_date: True when the pool already matched and nothing was done.
    """

    clips_in: int
    kept: int
    quarantined: int
    splits: dict[str, dict[str, float]]
    reasons: dict[str, int]
    seconds: float
    clips_per_s: float
    fingerprint: str
    output_dir: str
    up_to_date: bool = False

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("up_to_date")
        d["format_version"] = POOL_FORMAT_VERSION
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], up_to_date: bool = False) -> PoolSummary:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names and k != "up_to_date"}, up_to_date=up_to_date)

    def table(self) -> str:
        """A human-readable summary (printed by the job)."""
        lines = [f"pool {self.output_dir}" + ("  (up to date, nothing done)" if self.up_to_date else "")]
        lines.append(f"  clips in      {self.clips_in:>8}")
        lines.append(f"  kept          {self.kept:>8}")
        lines.append(f"  quarantined   {self.quarantined:>8}")
        lines.append("  split           clips     hours")
        for split, s in sorted(self.splits.items()):
            lines.append(f"  {split:<12} {int(s['clips']):>8} {s['hours']:>9.3f}")
        if self.reasons:
            lines.append("  reason          clips")
            for reason, count in sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"  {reason:<12} {count:>8}")
        lines.append(f"  seconds       {self.seconds:>8.1f}   ({self.clips_per_s:.1f} clips/s)")
        return "\n".join(lines)


def pool_fingerprint(cfg: PoolConfig) -> str:
    """sha256 over the manifest bytes and path, the label map bytes (explicit or implicit) and :meth:`PoolConfig.content_fields`.

    The manifest's own path is included because relative clip paths resolve against its folder. Audio
    files are not hashed (that would read the whole corpus): replace a clip in place and you must rebuild
    by removing the pool or changing the manifest.
    """
    h = hashlib.sha256()
    h.update(f"pool-format-{POOL_FORMAT_VERSION}\n".encode())
    label_map = cfg.label_map
    if label_map is None:  # read_manifest picks up a label_map.json next to the manifest
        implicit = join(_parent(cfg.manifest), "label_map.json")
        label_map = implicit if exists(implicit) else None
    for key, path in (("manifest", cfg.manifest), ("label_map", label_map)):
        if path is None:
            continue
        if not exists(path):
            raise PoolError(f"{key} file not found: {path}")
        h.update(f"{key}:{_canonical(path)}\n".encode())
        h.update(hashlib.sha256(read_bytes(path)).digest())
    h.update(json.dumps(cfg.content_fields(), sort_keys=True).encode())
    return h.hexdigest()[:32]


def prepare_pool(cfg: PoolConfig, fingerprint: str | None = None) -> PoolSummary:
    """Decode, validate and shard a manifest's clips into a prepared pool at ``cfg.output_dir``.

    The manifest is read and validated on the driver first, so manifest errors surface before any Ray work.
    Uses the current Ray instance (``ray.init()`` first to pick a cluster; otherwise Ray starts locally).

    Args:
        cfg: the pool's configuration.
        fingerprint: ``pool_fingerprint(cfg)`` when the caller has already computed it (``jobs.prepare_pool``
            does, to check the manifest before Ray starts): the manifest is then not hashed twice.

    Returns:
        The build's :class:`PoolSummary` (``up_to_date=True`` if the pool already matched).

    Raises:
        ManifestError: the manifest is malformed.
        PoolError: one recording or group has clips in several splits (see :func:`check_split_leaks`), or the
            build failed (the previous pool stays readable).
    """
    t0 = time.perf_counter()
    out = _canonical(cfg.output_dir)
    fingerprint = fingerprint or pool_fingerprint(cfg)
    current = _current_summary(out)
    if current is not None and current.get("fingerprint") == fingerprint:
        summary = PoolSummary.from_dict(current, up_to_date=True)
        print(f"pool up to date: {out} (fingerprint {fingerprint})")
        return summary

    manifest = read_manifest(cfg.manifest, labels=list(cfg.labels) or None, label_map=cfg.label_map)
    if "split" not in manifest.columns:
        manifest["split"] = DEFAULT_SPLIT
    manifest["split"] = manifest["split"].where(manifest["split"].notna(), DEFAULT_SPLIT).astype(object)
    if (manifest["split"] == _QUARANTINE_SPLIT).any():
        raise PoolError(f"manifest {cfg.manifest}: split value {_QUARANTINE_SPLIT!r} is reserved")
    check_split_leaks(manifest, cfg.manifest)

    # One builder per output_dir is assumed (as for any job's output_dir): builds that no summary names
    # were left by a crash and are removed; the current one stays until the new summary replaces it.
    keep = (current or {}).get("build")
    _remove_builds(out, keep=keep)
    build = f"{BUILD_PREFIX}{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    staging = join(out, build)
    try:
        _write_shards(manifest, cfg, join(staging, "data"))
        quarantine = _collect_quarantine(join(staging, "data"))
        write_parquet_atomic(join(staging, "quarantine.parquet"), quarantine)
        splits = _split_stats(join(staging, "data"))
        seconds = time.perf_counter() - t0
        summary = PoolSummary(
            clips_in=len(manifest),
            kept=int(sum(s["clips"] for s in splits.values())),
            quarantined=quarantine.num_rows,
            splits=splits,
            reasons=dict(Counter(quarantine.column("reason").to_pylist())),
            seconds=round(seconds, 3),
            clips_per_s=round(len(manifest) / seconds, 2) if seconds > 0 else 0.0,
            fingerprint=fingerprint,
            output_dir=out,
        )
        if summary.kept + summary.quarantined != summary.clips_in:
            raise PoolError(
                f"pool build lost rows: {summary.clips_in} in, {summary.kept} kept + {summary.quarantined} "
                f"quarantined (build folder {staging})"
            )
        write_bytes_atomic(join(staging, "config.yaml"), to_yaml(cfg).encode())
        # The commit point: one atomic write switches readers from the old build to this one.
        write_json_atomic(join(out, "summary.json"), {**summary.to_dict(), "build": build, "config": to_dict(cfg)})
    except BaseException:
        delete_dir(staging)
        raise
    _remove_builds(out, keep=build)
    print(summary.table())
    return summary


#: Columns whose every value must lie in one split: segments of one recording (or one show, campaign or
#: customer) in both train and test would let a model score on voices and rooms it trained on.
SPLIT_KEYS = ("recording", "group")


def check_split_leaks(manifest, source: str = "manifest") -> None:
    """Refuse a manifest where one ``recording`` or one ``group`` has rows in more than one split.

    Args:
        manifest: the manifest DataFrame (``split`` already filled; rows without a recording / group are free).
        source: the manifest's name, for the message.

    Raises:
        PoolError: naming the column, up to three offending values with the splits found for each, and how many
            values straddle splits.
    """
    for col in SPLIT_KEYS:
        if col not in manifest.columns:
            continue
        rows = manifest.loc[manifest[col].notna(), [col, "split"]]
        splits = rows.groupby(col, sort=True)["split"].agg(lambda v: sorted(set(v)))
        leaks = splits[splits.map(len) > 1]
        if len(leaks):
            shown = "; ".join(f"{col} {name!r} in {', '.join(found)}" for name, found in leaks.head(3).items())
            raise PoolError(f"{source}: {len(leaks)} {col} value(s) have rows in more than one split ({shown}); "
                            f"one {col} must stay in one split (train, dev or test): fix the manifest's "
                            f"'split' column")


def _canonical(uri: str) -> str:
    """Absolute local path, or the URI as given (trailing slash removed)."""
    s = str(uri).rstrip("/")
    return str(local_path(s).absolute()) if is_local(s) else s


def _parent(uri: str) -> str:
    s = _canonical(uri)
    return s.rsplit("/", 1)[0] if "/" in s else "."


def _remove_builds(out: str, keep: str | None) -> None:
    """Delete ``build-*`` folders other than ``keep`` (and the pre-version-2 layout's ``data/``)."""
    for name in list_dir(out):
        if (name.startswith(BUILD_PREFIX) and name != keep) or name == "data":
            delete_dir(join(out, name))


def _current_summary(out: str) -> dict | None:
    try:
        return Pool.open(out).summary
    except (PoolError, OSError, ValueError):
        return None


# A decode task holds its block's audio until the fused write has flushed it (~100 MB of 3 s pcm16 clips at
# 1024 rows). Files are capped separately (write_parquet's max_rows_per_file): one task writing several small
# files is ~20 % faster than one task per small file (bench/ingest.py, stop 18).
DECODE_BLOCK_ROWS = 1024


def _num_blocks(n: int, cfg: PoolConfig) -> int:
    # Blocks of at most DECODE_BLOCK_ROWS rows, and enough of them to keep every worker busy with a short tail.
    return max(1, math.ceil(n / DECODE_BLOCK_ROWS), min(math.ceil(n / cfg.batch_size), 4 * cfg.num_workers))


def _write_shards(manifest, cfg: PoolConfig, data_dir: str, verbose: bool = True) -> None:
    import ray.data

    fs, path = filesystem(data_dir)
    n = len(manifest)
    if n == 0:
        fs.create_dir(path)
        return
    bounds = np.linspace(0, n, _num_blocks(n, cfg) + 1).astype(int)
    ds = ray.data.from_pandas([manifest.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:])])
    decoded = ds.map_batches(
        decode_to_arrow,
        fn_kwargs={"cfg": cfg},
        batch_size=cfg.batch_size,
        batch_format="numpy",
        num_cpus=1,
        compute=ray.data.TaskPoolStrategy(size=cfg.num_workers),
    )
    # concurrency equal to the decode pool's size lets Ray Data fuse decode and write into one task (with
    # no or a different value each decoded block crosses the object store to a separate Write task).
    # max_rows_per_file only splits each task's output into files (pyarrow write_dataset): no regrouping
    # between tasks in Ray 2.60, unlike min_rows_per_file. Every pool reader holds about one file.
    with StageProgress("decode and write", n, "clips", WrittenRows(data_dir), verbose=verbose):
        decoded.write_parquet(path, filesystem=fs, partition_cols=["split"], concurrency=cfg.num_workers,
                              max_rows_per_file=cfg.rows_per_file)
    fs.create_dir(path)  # an all-quarantined pool still has its (empty) data folder


def decode_to_arrow(batch: Mapping[str, Any], cfg: PoolConfig) -> pa.Table:
    """:func:`~ser_models.data.audio.decode_batch` as a pool-schema Arrow table (the map_batches UDF).

    Quarantined rows get the reserved split so the partitioned write separates them from the pool.
    """
    out = decode_batch(batch, cfg)
    pausepoint("prepare_decode")  # node-loss tests remove this task's node here
    bad = out["status"] != "ok"
    if bad.any():
        out["split"] = np.where(bad, _QUARANTINE_SPLIT, np.asarray(out["split"], dtype=object))
    n = len(out["status"])
    arrays = []
    for f in SHARD_SCHEMA:
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
        else:
            arrays.append(pa.array(np.asarray(col), f.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=SHARD_SCHEMA)


def _collect_quarantine(data_dir: str) -> pa.Table:
    qdir = join(data_dir, f"split={_QUARANTINE_SPLIT}")
    if not exists(qdir):
        return QUARANTINE_SCHEMA.empty_table()
    fs, path = filesystem(qdir)
    t = pads.dataset(path, filesystem=fs, format="parquet").to_table(columns=["utt_id", "path", "status", "detail"])
    t = t.rename_columns(QUARANTINE_SCHEMA.names).cast(QUARANTINE_SCHEMA)
    delete_dir(qdir)
    return t.sort_by("utt_id")


def _split_stats(data_dir: str) -> dict[str, dict[str, float]]:
    if not any(name.startswith("split=") for name in list_dir(data_dir)):
        return {}
    fs, path = filesystem(data_dir)
    t = pads.dataset(path, filesystem=fs, format="parquet", partitioning=_HIVE_SPLIT).to_table(
        columns=["split", "duration"]
    )
    stats = t.group_by("split").aggregate([("duration", "count"), ("duration", "sum")])
    return {
        s: {"clips": int(c), "hours": round(float(d) / 3600.0, 4)}
        for s, c, d in zip(
            stats.column("split").to_pylist(),
            stats.column("duration_count").to_pylist(),
            stats.column("duration_sum").to_pylist(),
        )
    }


__all__ = ["BUILD_PREFIX", "DEFAULT_SPLIT", "POOL_FORMAT_VERSION", "SPLIT_KEYS", "PoolSummary", "check_split_leaks",
           "decode_to_arrow", "pool_fingerprint", "prepare_pool"]

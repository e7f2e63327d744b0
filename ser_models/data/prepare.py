"""Build a prepared pool from a manifest with Ray Data, and grow or relabel it in place.

**A fresh build** is one pass over the audio: ``map_batches`` decodes every clip and tags each row ``status =
"ok"`` or a quarantine reason; one ``write_parquet`` partitioned by split sends bad rows (audio null) to a
reserved partition, which the driver turns into ``quarantine.parquet``. No clip is decoded twice.

**A pool grows and changes in place.** Rerun ``prepare_pool`` on a changed manifest and, while the settings
that shape decoded audio (:meth:`PoolConfig.audio_fields`) are unchanged, the pool is updated, not rebuilt:

* *new* ``utt_id`` values are decoded (only they) and written as new Parquet files in a new
  ``build-<id>/`` folder beside the existing ones;
* an *existing* clip whose label, arousal / valence / dominance, speaker, language, corpus, group,
  recording, transcript or split changed is **rewritten, not decoded**: each Parquet file holding such a clip
  is read, its non-audio columns are replaced from the manifest, and its rows are written again under their
  (new) split folder in the new build folder; the audio bytes are copied as they are. A clip moved from
  train to test is therefore found in the test partition; files without a change are never touched;
* an existing clip whose *audio* changed is refused with :class:`SourceChangedError` naming the id and the
  file: its ``channel`` / ``start`` / ``end`` differ, or its source file's bytes differ from the sha256
  recorded when it was decoded. Hashing every source on every update would read the whole corpus again
  (one GET per file on S3), so sources are only stat-ed (size and mtime; a folder listing on S3) and a file
  is hashed only when its path, size or mtime differ: a copied or touched file with the same bytes is
  accepted and its new signature recorded;
* clips gone from the manifest are dropped (``removed=drop``, the default; their files are rewritten
  without them) or kept (``removed=keep``), with a log line naming how many and which;
* a quarantined clip is decoded again when its file changed (path, size or mtime), also on a rerun with the
  same manifest: a file repaired in place comes back.

Why rewrite whole files rather than keep the audio apart and join a small metadata table at every read:
readers stay as fast as on a fresh pool (a split reads only its own partition folders) and every reader works
unchanged. An update copies the files holding changed clips (``rows_per_file`` rows each, no decoding): little
for the usual relabel of a few clips, the pool at worst.

**Identity.** ``summary.json`` records the pool's ``lineage`` (the fingerprint of the build that started it;
updates keep it, a rebuild starts a new one), its ``version`` (1, then +1 per update that changed clips) and
a ``history`` of every build and update (clips added, decoded, relabelled, moved, dropped). Runs record the
lineage (``check_run``), so they accept a pool that grew or changed labels and refuse a rebuilt one; feature
caches are named by it and encode only the clips they lack.

**Crash safety without renames** (the same on a local disk and on an object store): every build or update
writes a new ``build-<id>/`` folder with its new Parquet files, ``quarantine.parquet``, ``config.yaml`` and
``files.json`` (every live file of the pool, older builds' included); ``summary.json``, written last in one
atomic write, names it. A crash at any point leaves ``summary.json`` naming the previous complete version,
whose files are untouched (an update never modifies a file, it writes new ones); the next run removes the
folders no live version references and redoes the update. ``summary.json`` holds a fingerprint of the
manifest bytes and the content-relevant config: a rerun with the same inputs only stats the quarantined files.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from ser_models import ownership
from ser_models.config import strip_user_info, to_dict, to_yaml
from ser_models.data.audio import decode_batch
from ser_models.data.config import PoolConfig
from ser_models.data.manifest import SPLIT_KEYS, check_split_leaks, read_manifest  # noqa: F401 (re-exported)
from ser_models.data.pool import (
    FILES_NAME,
    QUARANTINE_FILE_SCHEMA,
    SHARD_SCHEMA,
    SOURCE_SCHEMA,
    Pool,
)
from ser_models.data.pool_builds import BUILD_PREFIX, drop_build, legacy_pool, referenced, remove_builds
from ser_models.data.pool_summary import POOL_FORMAT_VERSION, PoolSummary
from ser_models.data.pool_update import (  # noqa: F401 (SourceChangedError re-exported)
    METADATA_COLUMNS,
    SPAN_COLUMNS,
    SourceChangedError,
    changed_quarantine,
    check_sources,
    check_spans,
    list_files,
    manifest_frame,
    read_index,
    read_quarantine,
    replaced_quarantine,
    rewrite_file,
    same_values,
    schema_arrays,
    source_signatures,
    updates_table,
)
from ser_models.exceptions import PoolError
from ser_models.failpoints import failpoint, pausepoint
from ser_models.formats.ingest import read_as_ours
from ser_models.io import (
    exists,
    filesystem,
    is_local,
    join,
    local_path,
    read_bytes,
    read_json,
    write_bytes_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from ser_models.locks import FolderLock, fenced_for
from ser_models.progress import StageProgress, WrittenRows

#: Split given to every clip whose manifest row has none (a manifest without splits is one training pool).
DEFAULT_SPLIT = "train"
# Reserved partition value for quarantined rows during the build; never present in a finished pool.
_QUARANTINE_SPLIT = "_quarantine"


def pool_fingerprint(cfg: PoolConfig, source: str | None = None) -> str:
    """sha256 over the manifest bytes and path (``source``, the import of a foreign ``cfg.manifest``, when given),
    the label map bytes (explicit or implicit) and :meth:`PoolConfig.content_fields`.

    The manifest's own path is included because relative clip paths resolve against its folder. Audio
    files are not hashed here (that would read the whole corpus on every run): an update compares each
    existing clip's source with the signature recorded when it was decoded (see the module docstring).
    """
    h = hashlib.sha256()
    h.update(f"pool-format-{POOL_FORMAT_VERSION}\n".encode())
    for key, path in (("manifest", source or cfg.manifest), ("label_map", _label_map(cfg))):
        if path is None:
            continue
        if not exists(path):
            raise PoolError(f"{key} file not found: {path}")
        h.update(f"{key}:{_canonical(path)}\n".encode())
        h.update(hashlib.sha256(read_bytes(path)).digest())
    h.update(json.dumps(cfg.content_fields(), sort_keys=True).encode())
    return h.hexdigest()[:32]


def _label_map(cfg: PoolConfig) -> str | None:
    """``cfg.label_map``, else the ``label_map.json`` beside ``cfg.manifest`` (read_manifest's own rule, kept for
    the import of a foreign manifest, which lies in the pool folder)."""
    if cfg.label_map is not None:
        return cfg.label_map
    implicit = join(_parent(cfg.manifest), "label_map.json")
    return implicit if exists(implicit) else None


def prepare_pool(cfg: PoolConfig, fingerprint: str | None = None, source: str | None = None,
                 split_keys: Sequence[str] = SPLIT_KEYS) -> PoolSummary:
    """Decode, validate and shard a manifest's clips into a prepared pool at ``cfg.output_dir``, or update the
    pool there in place (new clips decoded, changed metadata rewritten; see the module docstring).

    The manifest is read and validated on the driver first, so manifest errors surface before any Ray work.
    A foreign manifest (Lhotse, Hugging Face, NeMo, a corpus folder) is imported into the pool folder first
    (:mod:`ser_models.formats.ingest`). Uses the current Ray instance (``ray.init()`` first to pick a cluster;
    otherwise Ray starts locally).

    Args:
        cfg: the pool's configuration.
        fingerprint: ``pool_fingerprint(cfg, source)`` when the caller has already computed it
            (``jobs.prepare_pool`` does, to check the manifest before Ray starts): the manifest is then not hashed
            twice.
        source: the manifest file to read in place of ``cfg.manifest``: the import of a foreign one that
            ``jobs.prepare_pool`` made before Ray started.
        split_keys: the columns whose every value must lie in one split (:func:`check_split_leaks`); the pool of
            a run's labels passes the run's own (:mod:`ser_models.runs.run_labels`).

    Returns:
        The :class:`PoolSummary` (``up_to_date=True`` if the pool already matched).

    Raises:
        ManifestError: the manifest is malformed, or of no format the jobs read (naming those and jobs.convert).
        SourceChangedError: an existing clip's audio changed (the pool stays as it was).
        PoolError: one recording or group (of ``split_keys``) has clips in several splits (see
            :func:`check_split_leaks`), or the build failed (the previous pool stays readable).
    """

    t0 = time.perf_counter()
    out = _canonical(cfg.output_dir)
    with read_as_ours(source or cfg.manifest, out, "segments", lambda: claim_pool(cfg)) as source:
        fingerprint = fingerprint or pool_fingerprint(cfg, source)
        with claim_pool(cfg):
            return _prepare_locked(cfg, out, source, fingerprint, t0, split_keys)


def claim_pool(cfg: PoolConfig) -> FolderLock:
    """``with claim_pool(cfg):`` the pool folder's claim (:func:`ser_models.ownership.claim_output`): refuses a
    folder that is not a pool of ours (nothing is written there), and a second writer."""
    return ownership.claim_output(_canonical(cfg.output_dir), "pool", what="pool", recognise=legacy_pool,
                                  inputs=_inputs(cfg))


def _inputs(cfg: PoolConfig) -> dict:
    return {"manifest": cfg.manifest}


def check_pool_output(cfg: PoolConfig) -> None:
    """:func:`prepare_pool`'s refusals of its ``output_dir``, writing nothing: a job calls it before Ray starts.

    Raises:
        ForeignFolderError: the folder is not a pool of ours (or overlaps the manifest).
    """
    ownership.check_output(_canonical(cfg.output_dir), "pool", recognise=legacy_pool, inputs=_inputs(cfg))


def _prepare_locked(cfg: PoolConfig, out: str, source: str, fingerprint: str, t0: float,
                    split_keys: Sequence[str] = SPLIT_KEYS) -> PoolSummary:
    """:func:`prepare_pool`'s work, under the pool's lock."""
    current = _current_summary(out)
    if current is not None and current.get("fingerprint") == fingerprint:
        # same manifest and config: up to date unless a quarantined clip's file was replaced (a repaired file)
        replaced = replaced_quarantine(Pool(out, current)) if current.get("quarantined") else []
        if not replaced:
            summary = PoolSummary.from_dict(current, up_to_date=True)
            print(f"pool up to date: {out} (fingerprint {fingerprint}, version {summary.version})")
            return summary
        print(f"pool {out}: {len(replaced)} quarantined clips' files changed; decoding them again: {replaced[:5]}")

    manifest = read_manifest(source, labels=list(cfg.labels) or None, label_map=_label_map(cfg))
    if "split" not in manifest.columns:
        manifest["split"] = DEFAULT_SPLIT
    manifest["split"] = manifest["split"].where(manifest["split"].notna(), DEFAULT_SPLIT).astype(object)
    if (manifest["split"] == _QUARANTINE_SPLIT).any():
        raise PoolError(f"manifest {cfg.manifest}: split value {_QUARANTINE_SPLIT!r} is reserved")
    check_split_leaks(manifest, cfg.manifest, split_keys)

    # We hold the pool's lock: builds that no live version references were left by a crash and are removed
    # (only those the pool's marker records as ours); the live ones stay until a new summary replaces them.
    remove_builds(out, keep=referenced(out, current))
    build = f"{BUILD_PREFIX}{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    ownership.record(out, "pool", [build])  # before the folder exists: a crash never leaves a build we could not clean
    reason = _why_not_grow(cfg, current)
    if reason is None:
        record = _update(cfg, out, current, manifest, fingerprint, build, t0)
    else:
        if current is not None:
            print(f"pool {out}: rebuilding from scratch ({reason}); runs started on the old pool will refuse it")
        record = _build(cfg, out, manifest, fingerprint, build, t0)
    # An update keeps the previous version's files until the next one: a run reading it (a loop between two
    # rounds) finishes its round before it refreshes. A rebuild keeps nothing: runs refuse the old lineage.
    remove_builds(out, keep=referenced(out, record) | (referenced(out, current) if reason is None else set()))
    summary = PoolSummary.from_dict(record)
    print(summary.table())
    return summary


def _why_not_grow(cfg: PoolConfig, current: dict | None) -> str | None:
    """None when the pool at hand can be updated in place; else why it is rebuilt."""
    if current is None:
        return "no pool yet"
    if not cfg.grow:
        return "grow=false"
    if current.get("format_version") != POOL_FORMAT_VERSION or "files" not in current:
        return f"the pool was written in format {current.get('format_version')}, this version writes " \
               f"{POOL_FORMAT_VERSION}"
    old = json.loads(json.dumps({k: (current.get("config") or {}).get(k) for k in cfg.audio_fields()}))
    new = json.loads(json.dumps(cfg.audio_fields()))
    changed = [f"{k} {old[k]!r} -> {new[k]!r}" for k in new if old[k] != new[k]]
    return f"audio settings changed: {', '.join(changed)}" if changed else None


def _build(cfg: PoolConfig, out: str, manifest: pd.DataFrame, fingerprint: str, build: str, t0: float) -> dict:
    """A fresh pool (version 1, a new lineage) in ``out/build``; returns the committed summary record."""
    staging = join(out, build)
    try:
        _write_shards(manifest, cfg, join(staging, "data"))
        quarantine = _collect_quarantine(out, build)
        files = list_files(join(staging, "data"), out)
        record = _commit(cfg, out, build, files, quarantine, fingerprint, t0, clips_in=len(manifest), base=None,
                         change={"kind": "build", "decoded": len(manifest), "relabelled": 0, "moved": 0,
                                 "dropped": 0})
    except BaseException:
        drop_build(out, build)
        raise
    return record


def _update(cfg: PoolConfig, out: str, current: dict, manifest: pd.DataFrame, fingerprint: str, build: str,
            t0: float) -> dict:
    """Grow / relabel the pool at ``out`` to match ``manifest`` without decoding existing clips; returns the
    committed summary record."""
    pool = Pool(out, current)
    index = read_index(pool)  # existing clips: utt_id index; path, span, metadata, source, __filename
    quarantine = read_quarantine(pool)
    man = manifest.set_index(manifest["utt_id"].astype(str), drop=False)
    present = index.index.intersection(man.index)
    removed = index.index.difference(man.index)

    check_spans(index.loc[present], man.loc[present])
    restamp = check_sources(index.loc[present], man.loc[present])
    new_meta = manifest_frame(man.loc[present], METADATA_COLUMNS)
    old_meta = index.loc[present, list(METADATA_COLUMNS)]
    differs = {c: ~same_values(old_meta[c], new_meta[c]) for c in METADATA_COLUMNS}
    moved = present[differs["split"].to_numpy()]
    relabelled = present[np.logical_or.reduce([differs[c].to_numpy() for c in METADATA_COLUMNS if c != "split"])] \
        if len(present) else present
    dropped = removed if cfg.removed == "drop" else removed[:0]
    if len(removed):
        shown = ", ".join(repr(u) for u in sorted(removed)[:5]) + (", ..." if len(removed) > 5 else "")
        verb = "dropped from the pool (removed=drop)" if cfg.removed == "drop" else \
            "kept in the pool (removed=keep)"
        print(f"pool {out}: {len(removed)} clips are no longer in the manifest and are {verb}: {shown}")

    q_listed = quarantine[quarantine["utt_id"].isin(man.index)]
    retry = changed_quarantine(q_listed, man)
    q_keep = q_listed[~q_listed["utt_id"].isin(retry)]
    new_ids = man.index.difference(index.index).difference(pd.Index(q_keep["utt_id"]))
    rewrite_ids = relabelled.union(moved).union(pd.Index(restamp.index)).union(dropped)
    unchanged = not len(new_ids) and not len(rewrite_ids) and len(q_keep) == len(quarantine)
    if unchanged:  # e.g. rows reordered, or a column the pool does not keep: same pool, new fingerprint
        record = {**current, "fingerprint": fingerprint, "clips_in": len(manifest), "decoded": 0, "added": 0,
                  "relabelled": 0, "moved": 0, "dropped": 0, "seconds": round(time.perf_counter() - t0, 3)}
        with fenced_for(join(out, "summary.json")):
            write_json_atomic(join(out, "summary.json"), record)
        return record

    staging = join(out, build)
    fs, root_path = filesystem(out)
    try:
        files: dict[str, list[str]] = {}
        q_new = QUARANTINE_FILE_SCHEMA.empty_table()
        if len(new_ids):
            rows = man.loc[new_ids].reset_index(drop=True)
            print(f"pool {out}: decoding {len(rows)} new clips (the pool holds {len(index)})")
            _write_shards(rows, cfg, join(staging, "data"), update=True)
            q_new = _collect_quarantine(out, build)
            files = list_files(join(staging, "data"), out)
        failpoint("prepare_after_decode")  # kill tests: new shards written, summary not yet
        old_files = pd.Series(index["__filename"])
        touched = set(old_files.loc[rewrite_ids]) if len(rewrite_ids) else set()
        if touched:
            print(f"pool {out}: rewriting the metadata of {len(rewrite_ids)} clips in {len(touched)} files "
                  f"(no decoding)")
            updates = updates_table(man.loc[rewrite_ids.difference(dropped)], index, restamp)
            for k, path in enumerate(sorted(touched)):
                for split, rel in rewrite_file(fs, path, root_path, updates, dropped, join(staging, "data"), k):
                    files.setdefault(split, []).append(rel)
        live = read_json(join(out, current["files"]))["files"]
        for split, names in live.items():
            kept_names = [n for n in names if f"{root_path}/{n}" not in touched]
            files.setdefault(split, []).extend(kept_names)
        quarantine_table = pa.concat_tables([
            pa.Table.from_pandas(q_keep, schema=QUARANTINE_FILE_SCHEMA, preserve_index=False), q_new])
        record = _commit(cfg, out, build, files, quarantine_table, fingerprint, t0, clips_in=len(manifest),
                         base=current, extra_kept=len(removed) - len(dropped),
                         change={"kind": "update", "decoded": len(new_ids), "relabelled": len(relabelled),
                                 "moved": len(moved), "dropped": len(dropped)})
    except BaseException:
        drop_build(out, build)
        raise
    return record


def _commit(cfg: PoolConfig, out: str, build: str, files: dict[str, list[str]], quarantine: pa.Table,
            fingerprint: str, t0: float, clips_in: int, base: dict | None, change: dict,
            extra_kept: int = 0) -> dict:
    """Write the build folder's quarantine, file list and config, then ``summary.json`` (the commit point)."""
    staging = join(out, build)
    quarantine = quarantine.sort_by("utt_id")
    write_parquet_atomic(join(staging, "quarantine.parquet"), quarantine)
    files = {split: sorted(names) for split, names in sorted(files.items()) if names}
    write_json_atomic(join(staging, FILES_NAME), {"files": files})
    write_bytes_atomic(join(staging, "config.yaml"), to_yaml(cfg).encode())
    splits = _split_stats(out, files)
    kept = int(sum(s["clips"] for s in splits.values()))
    seconds = time.perf_counter() - t0
    version = 1 if base is None else int(base.get("version", 1)) + 1
    lineage = fingerprint if base is None else str(base.get("lineage") or base.get("fingerprint"))
    added = kept if base is None else kept - int(base.get("kept", 0)) + change["dropped"]
    entry = {"version": version, **change, "added": added, "kept": kept, "fingerprint": fingerprint,
             "seconds": round(seconds, 3), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    summary = PoolSummary(
        clips_in=clips_in,
        kept=kept,
        quarantined=quarantine.num_rows,
        splits=splits,
        reasons=dict(Counter(quarantine.column("reason").to_pylist())),
        seconds=round(seconds, 3),
        clips_per_s=round(clips_in / seconds, 2) if seconds > 0 else 0.0,
        fingerprint=fingerprint,
        output_dir=out,
        lineage=lineage,
        version=version,
        decoded=change["decoded"],
        added=added,
        relabelled=change["relabelled"],
        moved=change["moved"],
        dropped=change["dropped"],
        history=[*(base or {}).get("history", []), entry],
    )
    if summary.kept + summary.quarantined != summary.clips_in + extra_kept:
        raise PoolError(
            f"pool build lost rows: {summary.clips_in} in, {summary.kept} kept + {summary.quarantined} "
            f"quarantined (build folder {staging})"
        )
    failpoint("prepare_before_commit")  # kill tests: everything written but the commit point
    record = {**summary.to_dict(), "build": build, "files": f"{build}/{FILES_NAME}",
              "quarantine": f"{build}/quarantine.parquet", "config": strip_user_info(to_dict(cfg))}
    # The commit point: one atomic write switches readers from the old version to this one; only while this
    # writer still holds the pool's lock, with no take-over in between (a writer taken over stops here).
    with fenced_for(join(out, "summary.json")):
        write_json_atomic(join(out, "summary.json"), record)
    return record

def _canonical(uri: str) -> str:
    """Absolute local path, or the URI as given (trailing slash removed)."""
    s = str(uri).rstrip("/")
    return str(local_path(s).absolute()) if is_local(s) else s


def _parent(uri: str) -> str:
    s = _canonical(uri)
    return s.rsplit("/", 1)[0] if "/" in s else "."


def _current_summary(out: str) -> dict | None:
    """The pool's summary; None when there is no complete pool of this format (then it is built afresh).

    Raises:
        PoolError: ``summary.json`` exists but cannot be read (a storage error, a corrupt file): rebuilding over
            it would delete builds that may hold the only copy of clips whose sources are gone.
    """
    try:
        return Pool.open(out).summary
    except PoolError:
        return None
    except (OSError, ValueError) as exc:
        raise PoolError(f"cannot read the pool at {out} ({type(exc).__name__}: {exc}); nothing was changed: retry, "
                        "or fix or remove its summary.json") from exc


# A decode task holds its block's audio until the fused write has flushed it (~100 MB of 3 s pcm16 clips at
# 1024 rows). Files are capped separately (write_parquet's max_rows_per_file): one task writing several small
# files is ~20 % faster than one task per small file (bench/ingest.py, stop 18).
DECODE_BLOCK_ROWS = 1024
#: An update adding at most this many clips decodes them in the job's own process (no Ray Data job).
IN_PROCESS_DECODE_ROWS = 256


def _num_blocks(n: int, cfg: PoolConfig) -> int:
    # Blocks of at most DECODE_BLOCK_ROWS rows, and enough of them to keep every worker busy with a short tail.
    return max(1, math.ceil(n / DECODE_BLOCK_ROWS), min(math.ceil(n / cfg.batch_size), 4 * cfg.num_workers))


def _write_shards(manifest, cfg: PoolConfig, data_dir: str, verbose: bool = True, update: bool = False) -> None:
    """Decode ``manifest``'s clips into ``data_dir`` (``update``: the new clips of a grown pool, decoded in
    process when there are few)."""
    import ray.data

    fs, path = filesystem(data_dir)
    n = len(manifest)
    if n == 0:
        fs.create_dir(path)
        return
    if update and n <= IN_PROCESS_DECODE_ROWS:
        _write_shards_in_process(manifest, cfg, fs, path, verbose)
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


def _write_shards_in_process(manifest, cfg: PoolConfig, fs, path: str, verbose: bool) -> None:
    """A few clips (a pool grown by a week's calls) decoded here and written in the layout Ray Data writes
    (hive partitions by split, at most ``rows_per_file`` rows per file): a Ray Data job's start-up would
    cost more than decoding them (bench.grow)."""
    t0 = time.perf_counter()
    rows = manifest.reset_index(drop=True)
    tables = [decode_to_arrow({c: rows[c].iloc[a:a + cfg.batch_size].to_numpy() for c in rows.columns}, cfg)
              for a in range(0, len(rows), cfg.batch_size)]
    pads.write_dataset(pa.concat_tables(tables), path, filesystem=fs, format="parquet",
                       partitioning=pads.partitioning(pa.schema([("split", pa.string())]), flavor="hive"),
                       basename_template=f"{uuid.uuid4().hex}-{{i}}.parquet", max_rows_per_file=cfg.rows_per_file,
                       max_rows_per_group=cfg.rows_per_file, existing_data_behavior="overwrite_or_ignore")
    if verbose:
        print(f"  decode and write: {len(rows)} clips in process, {time.perf_counter() - t0:.1f}s", flush=True)


def decode_to_arrow(batch: Mapping[str, Any], cfg: PoolConfig) -> pa.Table:
    """:func:`~ser_models.data.audio.decode_batch` as a pool-schema Arrow table (the map_batches UDF), with each
    row's source signature (size, mtime, sha256 of the file's bytes; see :func:`source_signatures`).

    Quarantined rows get the reserved split so the partitioned write separates them from the pool.
    """
    # Signed before decoding: a file replaced in between is then seen as changed by the next update.
    signatures = source_signatures(batch["path"])
    out = decode_batch(batch, cfg)
    pausepoint("prepare_decode")  # node-loss tests remove this task's node here
    bad = out["status"] != "ok"
    if bad.any():
        out["split"] = np.where(bad, _QUARANTINE_SPLIT, np.asarray(out["split"], dtype=object))
    n = len(out["status"])
    sig = [signatures[str(p)] for p in out["path"]]
    for i, name in enumerate(SOURCE_SCHEMA.names):
        out[name] = [s[i] for s in sig]
    return pa.Table.from_arrays(schema_arrays(out, n, list(SHARD_SCHEMA)), schema=SHARD_SCHEMA)


def _collect_quarantine(out: str, build: str) -> pa.Table:
    """The quarantined rows of ``out/build/data`` (the build this run is writing), removed from it."""
    rel = f"{build}/data/split={_QUARANTINE_SPLIT}"
    qdir = join(out, rel)
    if not exists(qdir):
        return QUARANTINE_FILE_SCHEMA.empty_table()
    fs, path = filesystem(qdir)
    t = pads.dataset(path, filesystem=fs, format="parquet").to_table(
        columns=["utt_id", "path", "status", "detail", "source_size", "source_mtime_ns"])
    t = t.rename_columns(QUARANTINE_FILE_SCHEMA.names).cast(QUARANTINE_FILE_SCHEMA)
    ownership.remove(out, "pool", rel, recorded_only=True)
    return t.sort_by("utt_id")


def _split_stats(out: str, files: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """``{split: {"clips", "hours"}}`` of the live ``files`` (paths relative to the pool root ``out``)."""
    fs, root_path = filesystem(out)
    stats = {}
    for split, names in files.items():
        t = pads.dataset([f"{root_path}/{n}" for n in names], filesystem=fs, format="parquet").to_table(
            columns=["duration"])
        if t.num_rows:
            stats[split] = {"clips": t.num_rows, "hours": round(float(pc.sum(t.column("duration")).as_py()) / 3600.0, 4)}
    return stats


__all__ = ["BUILD_PREFIX", "DEFAULT_SPLIT", "METADATA_COLUMNS", "POOL_FORMAT_VERSION", "SPAN_COLUMNS", "SPLIT_KEYS",
           "PoolSummary", "SourceChangedError", "check_split_leaks", "decode_to_arrow", "pool_fingerprint",
           "prepare_pool", "source_signatures"]

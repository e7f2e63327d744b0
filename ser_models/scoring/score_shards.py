"""A round's scores kept as Parquet shards where they were made, never gathered into one process.

``score_to_shards`` is the sharded form of :func:`~ser_models.scoring.scorer.score_dataset`: the scoring
actors' output goes to shard files of about ``rows_per_shard`` clips each (written by Ray Data tasks on
whichever node holds the rows, or streamed from this process in bounded pieces when scoring runs in process),
and the driver only learns the shards' names and row counts. A shard is a :meth:`Scores.to_table
<ser_models.scoring.scorer.Scores.to_table>` table of its clips, sorted by id.

Layout under the round's ``scores/`` folder::

    attempt=<token>/part-<uuid>.parquet     one scoring pass's shards (each written atomically)
    attempt=<token>/part-<uuid>.embedding   the shard's embeddings, raw float32 rows (written before its shard)
    manifest.json                          written last: the committed attempt, its files and row counts

A shard's embeddings sit beside it, not in it: selection reads the embeddings of a few thousand candidates, and a
Parquet column is read a whole row group at a time (at a million clips, 5,000 candidates touch every row group
of every shard: about 1 GB decoded for 8 MB wanted), where a file of fixed-size rows is read by offset.

Only the attempt the manifest names is ever read, so a pass killed half-way (a node lost, the disk full) is
never read back: the next pass writes a new attempt. :meth:`ScoreShards.map` runs a function over every
shard as Ray tasks (lost with their node: retried, the same result) or, in process, one shard at a time.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ser_models.data.inputs import AUDIO, ModelInputs
from ser_models.exceptions import PoolError
from ser_models.failpoints import failpoint
from ser_models.io import (
    exists,
    filesystem,
    is_local,
    join,
    list_dir,
    open_input_file,
    read_json,
    write_bytes_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from ser_models.progress import progress_line
from ser_models.scoring.scorer import PoolScorer, ScorerConfig, Scores, map_on_actor_pool, run_on_actor_pool

__all__ = ["MANIFEST", "ScoreShards", "dead_attempts", "embedding_file", "embedding_rows", "read_shard",
           "stray_files",
           "score_to_shards", "shard_rows"]

#: The file that commits a scoring pass (written last).
MANIFEST = "manifest.json"
#: Rows per Parquet row group of a shard: a read of a few clips' scores (the picks, the stop set) decodes only the
#: groups that hold them.
ROW_GROUP_ROWS = 4096
#: CPUs Ray reserves per shard-writing task of the scoring pass.
WRITE_CPUS = 0.5
#: Retries of a shard task whose worker or node died (Ray re-runs it elsewhere; the result is the same).
SHARD_TASK_RETRIES = 3
#: A pass over at most this many shards runs here, one shard at a time: a fresh Ray worker spends about a second
#: starting and importing the selection code, more than reading a few shards takes (``bench/round_scale.py``).
IN_PROCESS_SHARDS = 4
#: A shard's embedding file: ``part-<uuid>.parquet`` -> ``part-<uuid>.embedding``, [rows, E] little-endian float32
#: in the shard's row order (sorted by id); E is in the shard's schema metadata under :data:`EMBEDDING_DIM_KEY`.
EMBEDDING_SUFFIX = ".embedding"
EMBEDDING_DIM_KEY = b"embedding_dim"
#: Wanted rows of an embedding file closer than this are read as one range, the rows between them discarded: on
#: object storage a request costs about what a megabyte does; on a local disk a read call costs little.
HOLE_BYTES = {"local": 64 << 10, "remote": 1 << 20}
#: Concurrent range requests per embedding file on object storage.
REMOTE_RANGE_THREADS = 8


@dataclass(frozen=True)
class ScoreShards:
    """A committed scoring pass: the shard files of one round's scores.

    Attributes:
        folder: the ``scores/`` folder (a local path or URI).
        files: shard paths relative to ``folder``.
        rows: clips per shard, in ``files`` order.
        in_process: run :meth:`map` here, one shard at a time, even when Ray is up (without Ray, or over at
            most :data:`IN_PROCESS_SHARDS` shards, it always runs here).
    """

    folder: str
    files: tuple[str, ...]
    rows: tuple[int, ...]
    in_process: bool = False

    @classmethod
    def open(cls, folder: str) -> ScoreShards | None:
        """The committed pass in ``folder``, or None when no pass finished there."""
        path = join(folder, MANIFEST)
        if not exists(path):
            return None
        manifest = read_json(path)
        return cls(str(folder), tuple(manifest["files"]), tuple(int(n) for n in manifest["rows"]))

    def __len__(self) -> int:
        return int(sum(self.rows))

    @property
    def paths(self) -> list[str]:
        return [join(self.folder, f) for f in self.files]

    @property
    def runs_here(self) -> bool:
        """Whether work over the shards runs in this process: asked to, a few shards, or no Ray connected."""
        ray = sys.modules.get("ray")  # a process that never imported Ray is not connected (runtime.ray)
        return self.in_process or len(self.paths) <= IN_PROCESS_SHARDS or ray is None or not ray.is_initialized()

    def map(self, fn: Callable, *args) -> list:
        """``[fn(shard_path, *args) for every shard]``, as Ray tasks on the connected cluster (arguments put in
        the object store once; a task lost with its node runs again elsewhere) or, for a few shards, here one
        shard at a time; results in shard order."""
        if self.runs_here:
            return [fn(path, *args) for path in self.paths]

        ray = sys.modules["ray"]
        refs = [ray.put(a) for a in args]
        # SPREAD: shards are read from shared storage, so every node takes a share of the work.
        task = ray.remote(fn).options(num_cpus=1, max_retries=SHARD_TASK_RETRIES, scheduling_strategy="SPREAD")
        return ray.get([task.remote(path, *refs) for path in self.paths])

    def rows_of(self, ids: Iterable[str]) -> Scores:
        """The scores of the clips ``ids`` (those the shards hold), sorted by id: one pass over the shards that
        brings back only the matching rows."""
        wanted = pa.array(sorted(set(map(str, ids))), pa.string())
        parts = [t for t in self.map(shard_rows, wanted, False) if t.num_rows]
        if not parts:
            raise PoolError(f"none of the {len(wanted)} clips asked for are in the scores under {self.folder}")
        return Scores.from_table(pa.concat_tables(parts)).sorted_by_id()


def dead_attempts(shards: ScoreShards) -> list[str]:
    """The ``attempt=*`` folders beside ``shards`` that its manifest does not name: scoring passes killed before
    their manifest (never read; a round's are removed by :meth:`ActiveLearningLoop
    <ser_models.active.loop.ActiveLearningLoop>` once a pass is committed)."""
    live = {f.split("/", 1)[0] for f in shards.files}
    return sorted(n for n in list_dir(shards.folder) if n.startswith("attempt=") and n not in live)


def stray_files(shards: ScoreShards) -> list[str]:
    """Shard files (``part-*.parquet``, ``part-*.embedding``) in the attempt folders ``shards`` commits that its
    manifest does not name, relative to ``shards.folder``: a shard task Ray ran again after its worker died leaves
    the first try's files (never read)."""
    named = set(shards.files) | {embedding_file(f) for f in shards.files}
    stray = []
    for attempt in sorted({f.split("/", 1)[0] for f in shards.files if "/" in f}):
        for name in list_dir(join(shards.folder, attempt)):
            rel = f"{attempt}/{name}"
            if name.startswith("part-") and name.endswith((".parquet", EMBEDDING_SUFFIX)) and rel not in named:
                stray.append(rel)
    return stray


def embedding_file(path: str) -> str:
    """The embedding file of the shard ``path`` (:data:`EMBEDDING_SUFFIX`)."""
    return path[:-len(".parquet")] + EMBEDDING_SUFFIX if path.endswith(".parquet") else path + EMBEDDING_SUFFIX


def _embedding_dim(schema: pa.Schema) -> int:
    """E of a shard whose embeddings are in its embedding file; 0 when it has none there (none kept, or a shard
    written with its embeddings as a Parquet column)."""
    return int((schema.metadata or {}).get(EMBEDDING_DIM_KEY, b"0"))


def embedding_rows(path: str, rows: np.ndarray, dim: int, total: int) -> np.ndarray:
    """[R, dim] float32 embeddings of the shard ``path``'s rows ``rows`` (ascending positions), read by offset
    from its embedding file; wanted rows close together are read as one range (:data:`HOLE_BYTES`).

    Raises:
        PoolError: the embedding file is missing, or does not hold ``total`` rows of ``dim`` floats (truncated or
            foreign).
    """
    width = 4 * dim
    where = embedding_file(path)
    out = np.empty((len(rows), dim), "<f4")
    fs, p = filesystem(where)
    if fs.get_file_info(p).type == pafs.FileType.NotFound:
        raise PoolError(f"the score shard {path} has no embedding file {where} beside it (a copy that took only "
                        "the Parquet files?): delete the round's scores/ folder to score it again")
    with fs.open_input_file(p) as fh:
        if fh.size() != total * width:
            raise PoolError(f"the embedding file {where} holds {fh.size()} bytes, not the {total} rows x {dim} "
                            f"float32 of its shard {path}: the scores are damaged; delete the round's scores/ "
                            "folder to score it again")
        if not len(rows):
            return out
        gap = max(HOLE_BYTES["local" if is_local(where) else "remote"] // width, 1)
        cuts = np.flatnonzero(np.diff(rows) > gap) + 1
        runs = list(zip(np.r_[0, cuts], np.r_[cuts, len(rows)]))

        def fill(run: tuple[int, int]) -> None:
            a, b = run
            first = int(rows[a])
            block = np.frombuffer(fh.read_at((int(rows[b - 1]) - first + 1) * width, first * width), "<f4")
            out[a:b] = block.reshape(-1, dim)[rows[a:b] - first]

        if is_local(where) or len(runs) == 1:
            for run in runs:
                fill(run)
        else:  # one request at a time would spend most of the read waiting on the store
            with ThreadPoolExecutor(REMOTE_RANGE_THREADS) as pool:
                list(pool.map(fill, runs))
    return out


def read_shard(path: str, columns: Iterable[str] | None = None) -> Scores:
    """One shard as :class:`Scores`; ``columns``: only these score columns (besides ``utt_id``) are read, and
    an embedding not read is [N, 0]."""
    wanted = None if columns is None else {"utt_id", *columns}
    with open_input_file(path) as fh:  # one open for the schema and the columns (one request less on S3)
        parquet = pq.ParquetFile(fh)
        schema = parquet.schema_arrow
        scores = Scores.from_table(parquet.read(columns=None if wanted is None else
                                                [c for c in schema.names if c in wanted], use_threads=False))
    dim = _embedding_dim(schema)
    if dim and (wanted is None or "embedding" in wanted):
        n = len(scores.ids)
        scores = replace(scores, embedding=embedding_rows(path, np.arange(n), dim, n))
    return scores


def shard_rows(path: str, ids: pa.Array, also_excluded: bool, excluded: pa.Array | None = None) -> pa.Table:
    """The rows of one shard whose id is in ``ids`` (or, with ``also_excluded``, in ``excluded``): the id
    column is read first, then only the row groups that hold a wanted row, and only those rows' embeddings."""
    def wanted(column) -> pa.Array:
        keep = pc.is_in(column, value_set=ids)
        if also_excluded and excluded is not None and len(excluded):
            keep = pc.or_(keep, pc.is_in(column, value_set=excluded))
        return keep

    with open_input_file(path) as fh:
        parquet = pq.ParquetFile(fh, pre_buffer=True)  # coalesced reads: half the time locally, fewer S3 requests
        keep = wanted(parquet.read(columns=["utt_id"], use_threads=False).column(0)).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(keep)
        dim = _embedding_dim(parquet.schema_arrow)
        if not len(rows):
            table = parquet.schema_arrow.empty_table()
        else:
            sizes = [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)]
            groups = np.unique(np.searchsorted(np.cumsum(sizes), rows, side="right"))
            table = parquet.read_row_groups(groups.tolist(), use_threads=False)
            table = table.filter(wanted(table.column("utt_id")))  # the rows of ``rows``, in that order
    if dim:  # an empty result too: every result of a pass has one schema
        emb = embedding_rows(path, rows, dim, len(keep)) if len(rows) else np.zeros((0, dim), "<f4")
        table = table.append_column("embedding", pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim))
    return table


def _batch_scores(batch: dict, keep_pooled: bool, keep_embedding: bool = True) -> Scores:
    """A scorer batch (dict of numpy) as :class:`Scores` sorted by id. Ray Data may hand a column of rows
    from blocks of unequal shapes as an object array of rows: those are stacked back into a matrix."""
    def col(key):
        if key not in batch:
            return None
        a = batch[key]
        if a.dtype == object:
            a = np.stack([np.asarray(x, np.float32) for x in a]) if len(a) else np.zeros((0, 0), np.float32)
        return np.asarray(a, np.float32)

    n = len(batch["utt_id"])
    empty = np.zeros((n, 0), np.float32)
    probs = col("probs")
    pooled = col("pooled") if keep_pooled else None
    embedding = col("embedding") if keep_embedding else None
    scores = Scores(np.asarray(batch["utt_id"]).astype(str).astype(object), empty if probs is None else probs,
                    empty if embedding is None else embedding, empty if pooled is None else pooled, col("mc_probs"),
                    col("dims"), col("mc_dims"))
    return scores.sorted_by_id()


def write_shard(batch: dict, folder: str, keep_pooled: bool, keep_embedding: bool = True) -> dict:
    """Write one scorer batch as a shard file of ``folder`` (atomically); returns ``{"file": [name], "rows":
    [n]}`` (empty for an empty batch). Runs inside a Ray Data task, or in process."""
    n = len(batch["utt_id"])
    if not n:
        return {"file": np.zeros(0, object), "rows": np.zeros(0, np.int64)}
    name = f"part-{uuid.uuid4().hex}.parquet"
    scores = _batch_scores(batch, keep_pooled, keep_embedding)
    table = scores.to_table()
    if scores.embedding.shape[1]:
        emb = np.ascontiguousarray(scores.embedding, "<f4")
        # Before the shard: a shard file that exists always has its embeddings.
        write_bytes_atomic(embedding_file(join(folder, name)), emb.data.cast("B"))
        meta = {**(table.schema.metadata or {}), EMBEDDING_DIM_KEY: str(emb.shape[1]).encode()}
        table = table.drop_columns(["embedding"]).replace_schema_metadata(meta)
    write_parquet_atomic(join(folder, name), table, ROW_GROUP_ROWS, dictionary=False,
                         compression="lz4")  # unique ids and float vectors
    return {"file": np.array([name], object), "rows": np.array([n], np.int64)}


def _concat(parts: list[dict]) -> dict:
    keys = [k for k in parts[0] if all(k in p for p in parts)]
    out = {}
    for k in keys:
        arrays = [p[k] for p in parts if len(p[k])]
        out[k] = np.concatenate(arrays) if arrays else parts[0][k]
    return out


def score_to_shards(ds, checkpoint_dir: str | None, cfg: ScorerConfig, folder: str, *, inputs: ModelInputs = AUDIO,
                    seed: int = 0, verbose: bool = True, in_process: bool = False, total: int | None = None,
                    rows_per_shard: int = 65536, keep_pooled: bool = False, keep_embedding: bool = True,
                    model_cfg: dict | None = None) -> ScoreShards:
    """Score every row of ``ds`` (as :func:`~ser_models.scoring.scorer.score_dataset`) into shard files under
    ``folder``, committed by its manifest. The driver holds one shard's rows at most (in process) or none.

    Args:
        ds: Ray Dataset of pool rows or cached features.
        checkpoint_dir: the round's checkpoint.
        cfg: the scoring actors.
        folder: the round's ``scores/`` folder; a committed pass there is returned as it is.
        inputs / seed / in_process / total: as for ``score_dataset``.
        verbose: one line when done (and a progress line every 15 s in process).
        rows_per_shard: clips per shard file (about; Ray Data bundles blocks up to it).
        keep_pooled: keep the pooled encoder features too (the cold start clusters them).
        keep_embedding: keep the head's embeddings (selection reads them; the cold start does not).
        model_cfg: the model to score with when ``checkpoint_dir`` is None (a fresh model: the cold start).

    Returns:
        The committed :class:`ScoreShards`.

    Raises:
        PoolError: the dataset to score is empty.
    """
    done = ScoreShards.open(folder)
    if done is not None:
        return done
    t0 = time.perf_counter()
    attempt = f"attempt={uuid.uuid4().hex[:12]}"
    where = join(folder, attempt)
    kwargs = dict(checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir), model_cfg=model_cfg,
                  inputs=inputs, mc_samples=cfg.mc_samples, micro_batch_size=cfg.micro_batch_size,
                  max_seconds=cfg.max_seconds, threads=cfg.torch_threads(), seed=seed, num_gpus=cfg.num_gpus,
                  precision=cfg.precision, allow_tf32=cfg.allow_tf32)
    source = ds.select_columns(inputs.columns())
    files, rows = [], []
    if in_process:
        buffered, held, shown = [], 0, t0

        def flush(size: int) -> list[dict]:
            """Write the buffered rows as shards of ``size``; returns what is left over (fewer rows)."""
            batch = _concat(buffered)
            n = len(batch["utt_id"])
            for start in range(0, n - n % size, size):
                out = write_shard({k: v[start:start + size] for k, v in batch.items()}, where, keep_pooled,
                                  keep_embedding)
                files.extend(f"{attempt}/{f}" for f in out["file"])
                rows.extend(out["rows"].tolist())
            rest = n - n % size
            return [{k: v[rest:] for k, v in batch.items()}] if rest < n else []

        for batch in run_on_actor_pool(source, PoolScorer, kwargs, cfg, in_process=True):
            buffered.append(batch)
            held += len(batch["utt_id"])
            if held >= rows_per_shard:
                buffered = flush(rows_per_shard)
                held = sum(len(b["utt_id"]) for b in buffered)
            if verbose and time.perf_counter() - shown > 15:
                shown = time.perf_counter()
                print("  " + progress_line("scoring", sum(rows) + held, total, shown - t0, "clips"), flush=True)
        if held:
            flush(held)
    else:
        # Blocks in the pool's order: the shards' contents are then the same on every run, which the two-round
        # strategies' picks depend on (they pick per shard first).
        options = source.context.execution_options
        before, options.preserve_order = options.preserve_order, True
        scored = map_on_actor_pool(source, PoolScorer, kwargs, cfg)
        # Half a CPU: the writes are mostly copies and I/O, and a whole one would make them wait for the CPU
        # the scoring actors and the read tasks hold.
        written = scored.map_batches(write_shard, fn_kwargs={"folder": where, "keep_pooled": keep_pooled,
                                                             "keep_embedding": keep_embedding},
                                     batch_size=rows_per_shard, batch_format="numpy", num_cpus=WRITE_CPUS)
        try:
            for batch in written.iter_batches(batch_size=None, batch_format="numpy"):
                files += [f"{attempt}/{f}" for f in batch["file"]]
                rows += [int(n) for n in batch["rows"]]
        finally:
            options.preserve_order = before
    if not sum(rows):
        raise PoolError("scoring produced no rows: the dataset to score is empty")
    failpoint("before_score_manifest")
    write_json_atomic(join(folder, MANIFEST), {"files": files, "rows": rows})
    if verbose:
        secs = time.perf_counter() - t0
        print(f"  scored {sum(rows)} clips into {len(files)} shards in {secs:.1f}s "
              f"({sum(rows) / max(secs, 1e-9):.0f} clips/s)", flush=True)
    return ScoreShards(str(folder), tuple(files), tuple(rows))

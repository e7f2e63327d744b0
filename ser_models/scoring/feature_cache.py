"""Frozen-encoder feature cache: encode every pool clip once, train and score every round from the cache.

When the encoder is frozen (``model.adapter.kind=frozen``) and pooling is a masked mean, the model's
trainable part only ever sees the per-layer mean-pooled encoder output [L, D] of a clip: the learned layer
weighting is linear, so it commutes with the mean (``EmotionModel.forward_from_pooled``). Those [L, D] features
are computed once per (clip, encoder) and stored as Parquet keyed by clip id under a folder named by the
encoder's fingerprint (config + weights by content, and the feature code's version), so a changed encoder (e.g.
a new TAPT checkpoint, or new weights saved into the same folder) never reuses stale features.

With ``model.functionals=egemaps`` (or ``auto``) the same actors also compute each clip's 88 eGeMAPS
functionals from the audio they already hold (``ser_models.encoders.functionals``) into a ``functionals``
column beside ``features``: one pass, one cache (its folder named by the encoder and the openSMILE version),
and every reader gets both from one row, with no join.

Models that need frames (``model.pooling=attentive_stats``, or the WAP-Transformer adapter ``model.wap``) use
the *frame* cache instead: every hidden state's frames ``[F, L, D]`` per clip, float16 (half the bytes; the
adapter and the pooling run in float32). It is larger (Whisper-tiny: 384 kB per second of audio against
7.7 kB per clip) but still needs no encoder forward after the one build.

**Growing pools.** A cache is named by the pool's *lineage* (``Pool.lineage``), not its version: a pool that
grew or was relabelled keeps its cache, and the next :meth:`FeatureCache.build` (or :meth:`FeatureCache.ensure`)
compares the clip ids the cache holds with the pool's and encodes only the missing ones, read from the pool
files that hold them, into one more shard folder; ``meta.json`` lists the shard folders and is written last,
so a build killed mid-way leaves the cache as it was (the next build removes the unlisted folder). A rebuilt
pool (new lineage) gets a new cache. Relabels need nothing: the cache holds features, never labels.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ser_models import ownership
from ser_models.data.id_keys import KeySet
from ser_models.data.inputs import ModelInputs
from ser_models.data.local_rows import LocalRows
from ser_models.exceptions import ConfigError, FeatureCacheMissError
from ser_models.io import (
    exists,
    filesystem,
    read_json,
    storage_path,
    write_json_atomic,
    write_parquet_atomic,
)
from ser_models.locks import fenced_for
from ser_models.progress import StageProgress, WrittenRows, progress_line
from ser_models.runtime import cluster_cpus, read_parquet_dataset
from ser_models.scoring.cache_guard import (
    CACHE_LOCK_WAIT_S,
    check_holds,
    drop_abandoned,
    legacy_cache,
    settle_shards,
    sorted_ids,
)
from ser_models.scoring.cache_keys import cache_supported
from ser_models.scoring.cache_rows import feature_table as _feature_table
from ser_models.scoring.cache_rows import features_array, shard_column, shard_column_parts
from ser_models.scoring.cache_rows import select_rows as _select_rows
from ser_models.scoring.cache_rows import shard_names as _shard_names
from ser_models.scoring.encoder_pooler import EncoderPooler

#: An extension of at most this many clips (a pool that grew a little) is encoded in this process: starting an
#: actor pool (processes that import torch and load the encoder, ~10 s) costs more than encoding them here.
INLINE_EXTENSION_CLIPS = 256
#: Cache kinds: per-layer utterance means, or every hidden state's frames.
CACHE_KINDS = ("pooled", "frames")
#: Pooled caches held in this process by :meth:`FeatureCache.pin`, by cache folder: every ``FeatureCache`` of
#: that folder (each loop opens its own) then serves rows from memory instead of reading Parquet.
_PINNED: dict[str, pa.Table] = {}


def functionals_actors(sc) -> tuple[int, float]:
    """``(actors, CPUs each)`` for the separate eGeMAPS stage: what the cluster's CPUs leave after the encoding
    actors and one CPU for Ray Data's reads; up to 8 one-CPU actors (openSMILE runs one core per actor), or one
    actor on the fraction that is left; ``(0, 0.0)`` when nothing is left."""

    spare = cluster_cpus() - sc.num_actors * sc.num_cpus - 1
    if spare >= 1:
        return min(8, int(spare)), 1.0
    return (1, round(spare, 3)) if spare >= 0.1 else (0, 0.0)


class FeatureCache:
    """Per-clip [L, D] mean-pooled encoder features, written once, read every round, never held whole.

    Layout (``root`` may be a local path or a ``pyarrow.fs`` URI)::

        <root>/<key[:16]>/meta.json          L, D, clip count, the shard folders (a list); written last
        <root>/<key[:16]>/features-<id>/     Parquet shards: utt_id, features (float32 bytes)
                                             [, functionals (88 float32 bytes)]; one folder per build or
                                             extension (the clips a grown pool added)

    ``functionals="egemaps"``: the cache also holds each clip's eGeMAPS functionals (its folder is then named
    by the encoder and the openSMILE version, with the suffix ``-egemaps``).

    The build streams: actors (or this process) encode batch by batch and the shards are written as the
    batches come (Ray Data ``write_parquet``), so neither the driver nor any worker holds the pool's
    features. A build killed before ``meta.json`` leaves folders that the next build removes. Readers get a
    lazy Ray Dataset filtered to the clips they need (:meth:`dataset`).
    """

    SHARDS_PREFIX = "features-"

    def __init__(self, root: str | Path, fingerprint: str, kind: str = "pooled", states: int | None = None,
                 functionals: str | None = None, local: bool = False):
        if kind not in CACHE_KINDS:
            raise ConfigError(f"feature cache kind must be one of {CACHE_KINDS}, got {kind!r}")
        if states is not None and kind != "pooled":
            raise ConfigError("only a pooled feature cache can hold the first hidden states alone")
        if functionals not in (None, "egemaps") or (functionals and kind != "pooled"):
            raise ConfigError(f"a feature cache holds eGeMAPS functionals (functionals='egemaps') beside per-layer "
                              f"means only; got functionals={functionals!r} with kind={kind!r}")
        self.kind, self.states, self.functionals = kind, states, functionals
        suffix = "-frames" if kind == "frames" else (f"-states{states}" if states is not None else "")
        if functionals:  # another openSMILE version may compute other values: another cache
            from ser_models.encoders.functionals import functionals_fingerprint

            fingerprint = hashlib.sha256(f"{fingerprint}:{functionals_fingerprint()}".encode()).hexdigest()
            suffix += f"-{functionals}"
        self.dir = storage_path(root) / (fingerprint[:16] + suffix)
        self.fingerprint = fingerprint
        self.side: pa.Table | None = None
        #: Readers get rows read in this process (:class:`~ser_models.data.local_rows.LocalRows`), never a Ray
        #: Dataset: a run that does not start Ray (``runtime.ray``).
        self.local = local
        #: Clips the last :meth:`build` / :meth:`ensure` call encoded (0: the cache already held them all).
        self.last_encoded = 0

    def __repr__(self) -> str:
        return f"FeatureCache(dir={str(self.dir)!r}, kind={self.kind!r})"

    @property
    def ready(self) -> bool:
        if not exists(self.dir / "meta.json"):
            return False
        shards = _shard_names(read_json(self.dir / "meta.json"))
        return bool(shards) and all(exists(self.dir / s) for s in shards)

    @property
    def shape(self) -> tuple[int, ...]:
        """``(L, D)`` of the pooled cache, ``(-1, L, D)`` of the frame cache (frames vary per clip): the shape
        of the :class:`~ser_models.data.inputs.ModelInputs` that training and scoring take (:func:`model_inputs`)."""
        meta = read_json(self.dir / "meta.json")
        shape = (int(meta["num_layers"]), int(meta["hidden_size"]))
        return (-1, *shape) if self.kind == "frames" else shape

    @property
    def columns(self) -> list[str]:
        """What every row holds: ``utt_id``, ``features`` and, with functionals, ``functionals``."""
        return ["utt_id", "features", *(["functionals"] if self.functionals else [])]

    def column_shape(self, column: str = "features") -> tuple[int, ...]:
        """:attr:`shape` of ``features``; ``(1, 88)`` of ``functionals`` (one "layer" of 88 values)."""
        if column == "features":
            return self.shape
        meta = read_json(self.dir / "meta.json")
        if column != "functionals" or "functionals" not in meta:
            raise ConfigError(f"the feature cache {self.dir} holds no {column!r} column")
        return (1, int(meta["functionals"]["dim"]))

    @property
    def shard_dirs(self) -> list:
        """The shard folders ``meta.json`` lists (the first build's, then one per extension)."""
        return [self.dir / s for s in _shard_names(read_json(self.dir / "meta.json"))]

    @property
    def shards_dir(self):
        """The first shard folder (a cache that was never extended has only this one)."""
        return self.shard_dirs[0]

    def clip_ids(self) -> pa.Array:
        """The ids of every cached clip (the ``utt_id`` column only, file by file)."""
        fs, folders = self._shard_paths()
        return shard_column(fs, folders, "utt_id")

    def ensure(self, pool, model_cfg, num_layers: int, scorer_cfg=None, *, verbose: bool = True,
               in_process: bool = False) -> int:
        """Make the cache hold every clip of ``pool`` (all splits): build it, or encode only the clips it lacks
        (a pool that grew since the cache was built). Call it at the start of a round to see new clips.

        Returns:
            The clips encoded now (0 when the cache already held them all).
        """
        self.build(pool.dataset(None), model_cfg, num_layers, scorer_cfg, verbose=verbose, in_process=in_process,
                   total=int(pool.summary.get("kept", 0)) or None)
        return self.last_encoded

    def build(self, ds, model_cfg, num_layers: int, scorer_cfg=None, *, verbose: bool = True,
              in_process: bool = False, total: int | None = None) -> None:
        """Encode every row of ``ds`` (pool rows with audio) once; a ready cache encodes only the rows it lacks
        (none: a no-op), see :meth:`build_with`.

        Args:
            ds: Ray Dataset of pool rows (every split that will be trained, evaluated or scored).
            model_cfg: the ModelConfig (frozen adapter, mean pooling).
            num_layers: L, the encoder's hidden-state count (the cache holds ``states`` of them when set).
            scorer_cfg: the loop's ``ScorerConfig``: the build runs on the same actor pool settings (actors,
                CPUs, threads, GPUs, batch and micro-batch sizes). None = its defaults.
            in_process: encode in this process (one batch at a time, each written as one shard), with a
                progress line every 15 s.
            total: the rows of ``ds``, for the progress line's share and ETA (None: count only).
        """
        reason = cache_supported(model_cfg)
        if reason:
            raise ConfigError(f"the feature cache cannot be used: {reason}")
        from ser_models.config import to_dict
        from ser_models.scoring.scorer import ScorerConfig

        sc = scorer_cfg or ScorerConfig()
        # On their own CPU actors ahead of the encoder (a GPU actor would wait on openSMILE), or in it.
        separate = bool(self.functionals) and sc.separate_functionals() and not in_process
        if separate and functionals_actors(sc)[0] == 0:
            if sc.functionals_stage == "separate":
                raise ConfigError("active.scorer.functionals_stage=separate needs a CPU beyond the encoding actors' "
                                  "(active.scorer.num_actors x num_cpus) and one for Ray Data's reads; lower "
                                  "active.scorer.num_cpus or set functionals_stage=actor")
            separate = False
            if verbose:
                print("  feature cache: no CPU left for a separate eGeMAPS stage; the encoding actors compute them")
        kwargs = {"model_cfg": to_dict(model_cfg), "threads": sc.torch_threads(),
                  "micro_batch_size": sc.micro_batch_size, "max_seconds": sc.max_seconds,
                  "frames": self.kind == "frames", "states": self.states,
                  "functionals": None if separate else self.functionals,
                  "num_gpus": sc.num_gpus, "precision": sc.precision, "allow_tf32": sc.allow_tf32}
        self.build_with(ds, EncoderPooler, kwargs, self.states or num_layers, sc, verbose=verbose,
                        in_process=in_process, total=total, what="encoded", functionals_stage=separate)

    def build_with(self, ds, extractor, kwargs: dict, num_layers: int, scorer_cfg, *, verbose: bool = True,
                   in_process: bool = False, total: int | None = None, what: str = "encoded",
                   functionals_stage: bool = False) -> None:
        """Write every row of ``ds`` through ``extractor`` (a Ray Data callable class built with ``kwargs``
        that maps pool rows to ``utt_id`` and ``features`` bytes of ``[num_layers, D]``) on ``scorer_cfg``'s actor
        pool, as shards, then ``meta.json`` (last: a killed build leaves no ready cache and is redone); a
        cache that holds every clip of ``ds`` already. :meth:`build` passes the encoder; eGeMAPS functionals pass
        ``EgemapsExtractor``.

        A ready cache is *extended*: the clips of ``ds`` it does not hold (a pool that grew) are encoded into
        one more shard folder and ``meta.json`` is rewritten listing it (last, as for a build).

        ``functionals_stage``: the rows pass through :class:`~ser_models.encoders.functionals.FunctionalsColumn`
        on CPU actors of their own first (:func:`functionals_actors`), and ``extractor`` carries that
        column through (Ray Data runs both stages at once, streaming).

        Raises:
            LockHeldError: another process kept the cache's lock for :data:`CACHE_LOCK_WAIT_S` (a live
                writer), naming it.
        """
        columns = ["utt_id", "audio", "audio_format", "num_samples"]
        self.last_encoded = 0
        # Lock-free when there is nothing to write: many runs sharing a ready cache (jobs.evidence's fanned-out
        # runs) never wait for each other; a writer takes the cache's lock and checks again under it.
        if self.ready and self._missing(ds, columns)[0] is None:
            return
        with ownership.open_output(self.dir, "feature_cache", what="feature cache", recognise=legacy_cache,
                                   wait_s=CACHE_LOCK_WAIT_S):
            self._build_locked(ds, extractor, kwargs, num_layers, scorer_cfg, columns, verbose=verbose,
                               in_process=in_process, total=total, what=what, functionals_stage=functionals_stage)

    def _build_locked(self, ds, extractor, kwargs: dict, num_layers: int, scorer_cfg, columns: list[str], *,
                      verbose: bool, in_process: bool, total: int | None, what: str, functionals_stage: bool) -> None:
        """:meth:`build_with` under the cache's lock."""

        import pyarrow.dataset as pads

        from ser_models.scoring.scorer import map_on_actor_pool, run_on_actor_pool

        sc = scorer_cfg
        t0 = time.perf_counter()
        ready = self.ready
        meta = read_json(self.dir / "meta.json") if ready else None
        drop_abandoned(self.dir, self.SHARDS_PREFIX, set(_shard_names(meta)) if meta else set(), verbose)
        if ready:
            source, total = self._missing(ds, columns)
            if source is None:
                return
            if verbose:
                print(f"  feature cache: {total} clips of the pool are not cached yet (it grew): encoding them")
            in_process = in_process or total <= INLINE_EXTENSION_CLIPS
        else:
            source = ds.select_columns(columns)
        shards = f"{self.SHARDS_PREFIX}{uuid.uuid4().hex[:8]}"
        ownership.record(self.dir, "feature_cache", [shards])  # before it exists: a crash leaves it cleanable
        committed = False
        try:
            out = self.dir / shards
            fs, path = filesystem(out)
            if in_process:
                fs.create_dir(path)
                done, last = 0, time.perf_counter()
                for i, batch in enumerate(run_on_actor_pool(source, extractor, kwargs, sc, in_process=True)):
                    write_parquet_atomic(out / f"part-{i:06d}.parquet", _feature_table(batch), dictionary=False)
                    done += len(batch["utt_id"])
                    if verbose and (time.perf_counter() - last > 15 or done == total):
                        last = time.perf_counter()
                        print("  " + progress_line("feature cache", done, total, last - t0, "clips"), flush=True)
            else:
                if functionals_stage:
                    from ray.data import ActorPoolStrategy

                    from ser_models.encoders.functionals import FunctionalsColumn

                    actors, cpus = functionals_actors(sc)
                    if verbose:
                        print(f"  feature cache: eGeMAPS functionals on {actors} CPU actor(s) of their own "
                              f"({cpus:g} CPU each)")
                    source = source.map_batches(FunctionalsColumn, batch_size=sc.batch_size, batch_format="numpy",
                                                compute=ActorPoolStrategy(size=actors), num_cpus=cpus)
                # Binary features as an Arrow column (a numpy object column would be pickled), written as produced.
                encoded = map_on_actor_pool(source, extractor, kwargs, sc)
                with StageProgress("feature cache", total, "clips", WrittenRows(str(out)), every=15.0, verbose=verbose):
                    encoded.map_batches(_feature_table, batch_format="numpy", batch_size=None).write_parquet(
                        path, filesystem=fs, use_dictionary=False)  # unique ids and float vectors
            fs.create_dir(path)  # an extension whose clips all fell out of ``ds``'s filter still lists a folder
            written = pads.dataset(path, filesystem=fs, format="parquet")
            clips = written.count_rows()
            self.last_encoded = clips
            if ready:
                _PINNED.pop(str(self.dir), None)  # a pinned table would miss the new clips
                with fenced_for(self.dir / "meta.json"):  # a writer whose lock was taken over publishes nothing
                    write_json_atomic(self.dir / "meta.json", {  # last: lists the new shard folder
                        **meta, "clips": int(meta["clips"]) + clips, "shards": [*_shard_names(meta), shards]})
                committed = True
                if verbose:
                    print(f"  feature cache: {what} {clips} new clips in {time.perf_counter() - t0:.1f}s -> {out}")
                return
            first = written.head(1, columns=["features"]).column("features")[0].as_py() if clips else b""
            if self.kind == "frames":
                frames = written.head(1, columns=["num_frames"]).column("num_frames")[0].as_py() if clips else 1
                hidden = len(first) // 2 // num_layers // max(frames, 1)
            else:
                hidden = len(first) // 4 // num_layers
            extra = {}
            if self.functionals:
                from ser_models.encoders.functionals import EGEMAPS_DIM

                extra["functionals"] = {"set": self.functionals, "dim": EGEMAPS_DIM}
            with fenced_for(self.dir / "meta.json"):
                write_json_atomic(self.dir / "meta.json", {  # last: marks the cache complete
                    "num_layers": num_layers, "hidden_size": hidden, "clips": clips, "kind": self.kind,
                    "fingerprint": self.fingerprint, "shards": [shards], **extra})
            committed = True
            if verbose:
                print(f"  feature cache: {what} {clips} clips once in {time.perf_counter() - t0:.1f}s -> {out}")
        finally:
            settle_shards(self.dir, shards, committed)

    def _missing(self, ds, columns: list[str]):
        """``(dataset of the rows of ds this cache lacks, their count)``, or ``(None, 0)`` when it lacks none.

        A dataset from ``Pool.dataset`` says which files and filter it reads: the ids come from those files'
        ``utt_id`` column (no audio read) and only the files holding missing clips are read. Any other
        dataset is read once for its ids."""

        from ser_models.data.pool import POOL_READ_ATTR

        # The cache's ids as 8-byte keys, the pool's read a batch at a time: only the clips the cache lacks
        # (few, except on the first build) are held as strings (R9 of the round's memory map: every cached id
        # and every pool id with its file path, about 100 bytes a clip, before).
        have = self._held_keys()  # called on a ready cache only (build_with, _build_locked)
        read = getattr(ds, POOL_READ_ATTR, None)
        if read is not None:
            files, missing = set(), set()
            for ids in read.pool.ids_by_file(read.files, read.where):
                lacking = ids.filter(pa.array(~have.contains(ids.column("utt_id"))))
                files.update(lacking.column("file").to_pylist())
                missing.update(lacking.column("utt_id").to_pylist())
            if not missing:
                return None, 0
            return read.pool.dataset(None, columns=columns, files=sorted(files),
                                     where={**read.where, "utt_id": sorted(missing)}), len(missing)
        missing = set()
        for batch in ds.select_columns(["utt_id"]).iter_batches(batch_format="pyarrow", batch_size=None):
            ids = batch.column("utt_id")
            missing.update(ids.filter(pa.array(~have.contains(ids))).to_pylist())
        if not missing:
            return None, 0
        keep = pa.array(sorted(missing), pa.string())
        return ds.select_columns(columns).map_batches(_select_rows, fn_kwargs={"ids": keep, "values": None},
                                                      batch_format="pyarrow", zero_copy_batch=True), len(keep)

    def pin(self, max_bytes: int) -> bool:
        """Hold this pooled cache in this process when its features take at most ``max_bytes``, for many runs
        over one small pool (``jobs.evidence``): each round then reads rows from memory, not Parquet through
        Ray Data (about a second a round on 2 cores). Bigger caches, and frame caches, stay streamed.

        Returns:
            Whether the cache is now held (until :meth:`unpin`).
        """
        if self.kind != "pooled" or not self.ready:
            return False
        meta = read_json(self.dir / "meta.json")
        if int(meta["clips"]) * int(meta["num_layers"]) * int(meta["hidden_size"]) * 4 > max_bytes:
            return False
        _PINNED[str(self.dir)] = self.table()
        return True

    def unpin(self) -> None:
        """Stop serving this cache from memory."""
        _PINNED.pop(str(self.dir), None)

    def attach(self, side: pa.Table | None) -> None:
        """Join the columns of ``side`` (``utt_id`` and, e.g., ``speaker``) into every row :meth:`dataset`
        gives from now on (None = none); ``side`` then names the clips the whole cache stands for."""
        self.side = side

    def dataset(self, ids=None, labels: dict[str, str] | None = None, targets: pa.Table | None = None):
        """The cached rows as a lazy Ray Dataset: only ``ids`` (None = all), with target columns from
        ``targets`` (a table of ``utt_id`` and any of ``label, arousal, valence, dominance``; its ids are the
        rows kept when ``ids`` is None) or a ``label`` column from ``labels``, and the :meth:`attach`-ed
        columns. Filtering runs on the workers, shard by shard. A :attr:`local` cache gives the same rows, in the
        same order, read file by file in this process (:class:`~ser_models.data.local_rows.LocalRows`)."""
        if labels is not None:
            targets = pa.table({"utt_id": pa.array(list(labels), pa.string()),
                                "label": pa.array(list(labels.values()), pa.string())})
        pinned = _PINNED.get(str(self.dir))
        if ids is None and targets is None and self.side is None:
            return self._held_rows(pinned) if pinned is not None else self._all_rows()
        if ids is None and targets is None:
            ids = self.side.column("utt_id")
        keep = sorted_ids(ids if ids is not None else targets.column("utt_id"))
        check_holds(self.dir, keep, pinned.column("utt_id") if pinned is not None else self._held_keys())
        values = None
        if targets is not None:
            where = pc.index_in(keep, value_set=targets.column("utt_id"))
            values = {name: pc.take(targets.column(name), where) for name in targets.column_names if name != "utt_id"}
        if self.side is not None:
            where = pc.index_in(keep, value_set=self.side.column("utt_id"))
            values = {**(values or {}), **{name: pc.take(self.side.column(name), where)
                                           for name in self.side.column_names if name != "utt_id"}}
        if pinned is not None:  # filtered here, in memory; the rows as the streamed path gives them
            return self._held_rows(_select_rows(pinned, keep, values))
        return self._all_rows().map_batches(_select_rows, fn_kwargs={"ids": keep, "values": values},
                                            batch_format="pyarrow", zero_copy_batch=True)

    def _all_rows(self):
        """Every cached row, streamed: a Ray Dataset, or read here file by file when :attr:`local`."""
        fs, path = self._shard_paths()
        if self.local:
            return LocalRows.from_parquet(fs, path, self.columns)
        return read_parquet_dataset(path, filesystem=fs, columns=self.columns)

    def _held_rows(self, table: pa.Table):
        """``table`` (rows in memory) as what readers take: a Ray Dataset, or :class:`LocalRows` when :attr:`local`."""
        if self.local:
            return LocalRows.from_table(table)
        import ray.data

        return ray.data.from_arrow(table)

    def missing_clips(self, pool) -> int:
        """How many clips of ``pool`` (all splits) this cache does not hold, from ids alone (no audio read, no
        Ray): all of them when it was never built."""
        if not self.ready:
            return int(pool.summary.get("kept", 0))
        have = self._held_keys()  # 8 bytes a cached clip; the pool's ids a batch at a time
        return sum(int((~have.contains(ids.column("utt_id"))).sum()) for ids in pool.ids_by_file())

    def _held_keys(self) -> KeySet:
        """The keys of every cached clip's id (8 bytes a clip: :class:`~ser_models.data.id_keys.KeySet`), read file by
        file once per set of shard folders (``meta.json`` lists a new one per extension): a read's check never
        holds every cached id string, however many clips the cache holds."""
        shards = tuple(_shard_names(read_json(self.dir / "meta.json")))
        gone = [name for name in shards if not exists(self.dir / name)]
        if gone:  # its clips would read as absent: name the folder rather than the clips
            raise FeatureCacheMissError(f"feature cache {self.dir}: meta.json lists shard folders that are gone: "
                                        f"{', '.join(gone)}; its clips cannot be read. Remove {self.dir} to rebuild it")
        cached = getattr(self, "_keys_cache", None)
        if cached is None or cached[0] != shards:
            fs, folders = self._shard_paths()
            self._keys_cache = (shards, KeySet(shard_column_parts(fs, folders, "utt_id")))
        return self._keys_cache[1]

    def _shard_paths(self):
        """``(filesystem, [shard folder, ...])`` for a Ray Data read of every shard."""

        fs, _ = filesystem(self.dir)
        return fs, [filesystem(d)[1] for d in self.shard_dirs]

    def statistics(self, ids=None, column: str = "features") -> tuple[np.ndarray, np.ndarray, int]:
        """Per-layer, per-dimension mean and std ``[L, D]`` of the cached features of ``ids`` (None = all),
        streamed shard by shard (memory O(L x D), not O(clips)); returns ``(mean, std, clips)``. The frame
        cache gives the statistics of every frame (what frame-level standardisation needs). ``column=
        "functionals"``: those of the functionals, ``[1, 88]``."""
        from ser_models.encoders.standardizer import RunningMoments

        shape = self.column_shape(column)
        inputs = ModelInputs.cached(shape)  # decodes the frame cache's clips
        moments = RunningMoments()
        clips = 0
        for batch in self.dataset(ids).iter_batches(batch_format="pyarrow", batch_size=256):
            if not batch.num_rows:
                continue
            clips += batch.num_rows
            if self.kind == "frames":
                moments.add(np.concatenate([inputs.decode(b) for b in batch.column("features").to_pylist()])
                            .astype(np.float32))
            else:
                moments.add(features_array(batch.column(column), shape))
        mean, std = moments.result()
        return mean, std, clips

    def speaker_statistics(self, shrink_clips: float, column: str = "features"):
        """Per-speaker statistics (:class:`~ser_models.encoders.speaker_norm.SpeakerStatistics`) of the cached
        features (or, with ``column="functionals"``, functionals) of every :meth:`attach`-ed clip, by its
        ``speaker`` column, streamed shard by shard (memory O(speakers x L x D)). Pooled caches only.

        Raises:
            ConfigError: no ``speaker`` column is attached, or the cache holds frames.
        """
        from ser_models.encoders.speaker_norm import SpeakerMoments

        if self.side is None or "speaker" not in self.side.column_names:
            raise ConfigError("speaker statistics need the pool's speaker column attached to the feature cache")
        if self.kind != "pooled":
            raise ConfigError("model.feature_norm=speaker needs per-layer means (model.pooling=mean, no "
                              "model.wap): the frame cache is not supported")
        moments = SpeakerMoments()
        for batch in self.dataset().iter_batches(batch_format="pyarrow", batch_size=256):
            if batch.num_rows:
                moments.add(features_array(batch.column(column), self.column_shape(column)),
                            batch.column("speaker").to_pylist())
        return moments.result(shrink_clips), moments.without_speaker

    def table(self, ids=None, labels: dict[str, str] | None = None) -> pa.Table:
        """:meth:`dataset` gathered on the driver (small selections and tests only)."""
        parts = list(self.dataset(ids, labels).iter_batches(batch_format="pyarrow", batch_size=None))
        parts = [t for t in parts if t.num_rows]
        if not parts:
            return pa.table({"utt_id": pa.array([], pa.string()), "features": pa.array([], pa.binary()),
                             **({"functionals": pa.array([], pa.binary())} if self.functionals else {})})
        return pa.concat_tables(parts).sort_by("utt_id")


def model_inputs(cache: FeatureCache | None, model_cfg=None) -> ModelInputs:
    """What a model trained or scored from ``cache`` reads: its pooled ``[L, D]`` features or frames
    ``[F, L, D]`` (by the cache's kind), or audio when there is no cache; with a model config, plus the side
    inputs it asks for (:meth:`~ser_models.models.model_config.ModelConfig.inputs`). The one place the inputs
    are built from a run's cache, so training, scoring and pre-training agree on them.

    Args:
        cache: the run's frozen-encoder feature cache (built: its ``meta.json`` gives the shape), or None.
        model_cfg: the ``ModelConfig`` of the model that reads them; None for no side inputs (a pre-training
            objective reads the features alone).
    """
    shape = None if cache is None else cache.shape
    return ModelInputs.of(shape) if model_cfg is None else model_cfg.inputs(shape)

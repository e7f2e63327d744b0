"""Scoring the pool with a round's checkpoint: a Ray Data callable class plus the driver-side runner.

Each actor loads the checkpoint once, then for every batch emits per clip the class probabilities and/or the
dimensional predictions, T MC-dropout samples of each (dropout on in the head and adapters, everything else in
eval mode), the head's penultimate embedding (k-center / BADGE / k-means / greedy sampling) and the encoder's
pooled features (cold start).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ser_models.config import RESULT, SPEED, field, from_dict
from ser_models.data.clips import collect_clips
from ser_models.data.inputs import AUDIO, ModelInputs
from ser_models.exceptions import ConfigError, PoolError
from ser_models.failpoints import pausepoint
from ser_models.io import read_parquet, write_parquet_atomic
from ser_models.precision import (
    AUTO_MICRO_BATCH_FLOOR,
    autocast,
    check_flag,
    check_precision,
    configure_device,
    gpu_share,
    pin_for,
    size_micro_batch,
)
from ser_models.progress import progress_line
from ser_models.runtime import cluster_cpu_nodes, cluster_cpus


@dataclass
class ScorerConfig:
    """Ray Data actor pool that scores clips."""

    batch_size: int = field(128, effect=SPEED,
                            help="clips per Ray Data batch handed to one actor call (larger amortises "
                                 "Ray's per-call cost; bench.scoring)")
    micro_batch_size: int = field(0, effect=SPEED, help="clips per forward pass inside an actor, sorted by length; 0 = auto: "
                                                        "on a GPU sized from its free memory (8-128, measured on the first "
                                                        "batch's longest clips), 1 on CPU (there padded batches only cost "
                                                        "time: bench.scoring measured 1.6x faster one at a time)")
    num_actors: int = field(1, effect=SPEED, help="scoring actors (each holds one model copy)")
    num_cpus: float = field(1.0, effect=SPEED,
                            help="CPUs Ray reserves per scoring actor; the actors together must leave at "
                                 "least one CPU free for Ray Data's read tasks, or scoring waits forever")
    threads: int = field(0, effect=SPEED,
                         help="torch threads per scoring actor (0 = num_cpus); may exceed num_cpus to use "
                              "cores that Ray Data's read tasks leave idle")
    num_gpus: float = field(0.0, effect=RESULT, help="GPUs per scoring actor (0 = CPU)")
    mc_samples: int = field(0, effect=RESULT, help="MC-dropout passes per clip (BALD needs > 1; 0 = none)")
    max_seconds: float = field(20.0, effect=RESULT, help="clips longer than this are centre-cropped for scoring (s)")
    precision: str = field("fp32", effect=RESULT, help="forward passes of scoring and of the feature cache's encoder: fp32 | "
                                                       "bf16 (torch.autocast with bfloat16, on a GPU or a CPU; weights stay "
                                                       "float32, outputs are cast back to float32)")
    allow_tf32: bool = field(True, effect=RESULT, help="on a GPU, float32 matmuls and convolutions use TF32 tensor cores "
                                                       "(2.4x strict fp32 for wav2vec2-base scoring on an H100); false = "
                                                       "strict float32. No effect on a CPU")
    functionals_stage: str = field("auto", effect=SPEED,
                                   help="where the feature cache computes eGeMAPS functionals (model.functionals): "
                                        "actor = inside each encoding actor, on its threads | separate = on CPU "
                                        "actors of their own ahead of it, so a GPU actor never waits on "
                                        "openSMILE | auto = separate when the actors reserve GPUs")

    def __post_init__(self):
        check_precision(self.precision, "active.scorer.precision")
        check_flag(self.allow_tf32, "active.scorer.allow_tf32")
        if self.functionals_stage not in ("auto", "actor", "separate"):
            raise ConfigError(f"active.scorer.functionals_stage must be auto, actor or separate, got "
                              f"{self.functionals_stage!r}")
        if self.batch_size < 1 or self.micro_batch_size < 0:
            raise ConfigError(f"active.scorer.batch_size must be >= 1 and micro_batch_size >= 0 (0 = auto), got "
                              f"{self.batch_size} / {self.micro_batch_size}")
        if self.num_actors < 1:
            raise ConfigError(f"active.scorer.num_actors must be >= 1, got {self.num_actors}")
        if self.num_cpus <= 0 or self.threads < 0:
            raise ConfigError(f"active.scorer.num_cpus must be > 0 and threads >= 0, got {self.num_cpus} / "
                              f"{self.threads}")
        if self.mc_samples < 0 or self.mc_samples == 1:
            raise ConfigError(f"active.scorer.mc_samples must be 0 or >= 2, got {self.mc_samples}")

    def separate_functionals(self) -> bool:
        """Whether the feature cache computes eGeMAPS functionals on CPU actors of their own
        (``functionals_stage``; auto = when the encoding actors reserve GPUs)."""
        return self.functionals_stage == "separate" or (self.functionals_stage == "auto" and self.num_gpus > 0)

    def torch_threads(self) -> int:
        """Torch threads per scoring actor: ``threads``, or ``num_cpus`` rounded down (at least 1)."""
        return self.threads or max(int(self.num_cpus), 1)


#: ``micro_batch_size=0`` resolves to this per device type for audio where nothing is measured. On CPU a padded
#: batch of audio costs more than its clips one by one (padding, working sets beyond the caches). A GPU needs
#: batches to fill it: the scorer and the feature cache size theirs from free memory
#: (:func:`ser_models.precision.size_micro_batch`); 16 is the size for callers that cannot measure.
AUTO_MICRO_BATCH = {"cuda": 16, "cpu": 1}
#: Cached pooled features are tiny and equal-sized: one forward per Ray Data batch, whatever the device.
AUTO_MICRO_BATCH_FEATURES = 4096


def auto_micro_batch(device_type: str, features: bool = False) -> int:
    """Clips per forward for ``micro_batch_size=0``: on ``device_type`` (``"cuda"`` / ``"cpu"``) for audio, or
    for cached features (``features=True``)."""
    return AUTO_MICRO_BATCH_FEATURES if features else AUTO_MICRO_BATCH.get(device_type, 16)


def check_reservation(cfg: ScorerConfig, cluster_cpus: float, cpu_nodes: int = 1) -> None:
    """Reject an actor pool that can leave no node a whole CPU on a CPU-only run.

    Ray Data's read tasks need a CPU of their own to feed the actors; when the actors hold them all, the
    read tasks never start and scoring waits forever without an error. Actors of a fractional CPU can also
    fragment a multi-node cluster: two 0.5-CPU actors spread over two 1-CPU nodes leave 1 CPU free in all
    but half a CPU on each node, and a 1-CPU read task fits nowhere (seen on a two-node cluster). So a
    fractional ``num_cpus`` must leave a CPU per node (``reserved <= cluster_cpus - cpu_nodes``: some node
    then keeps a whole one, wherever Ray puts the actors); a whole one, a CPU in all. ``cluster_cpus`` = 0
    (unknown, e.g. a head node with no CPUs on an autoscaling cluster) skips the check.

    Args:
        cfg: the scorer's actor pool.
        cluster_cpus: CPUs of the cluster's live nodes.
        cpu_nodes: live nodes that have CPUs.

    Raises:
        ConfigError: naming ``active.scorer.num_cpus`` / ``num_actors`` and the way out (``threads``).
    """
    if cfg.num_gpus or cluster_cpus <= 0:
        return
    reserved = cfg.num_actors * cfg.num_cpus
    whole = float(cfg.num_cpus).is_integer()
    if reserved > cluster_cpus - (1 if whole else max(cpu_nodes, 1)):
        spread = "" if whole or cpu_nodes <= 1 else (
            f" (fractional actors spread over the {cpu_nodes} nodes with CPUs can leave each with less than a "
            "whole CPU: use a whole number of CPUs per actor there)")
        raise ConfigError(
            f"active.scorer.num_actors x active.scorer.num_cpus = {reserved:g} CPUs leaves no whole CPU of the "
            f"cluster's {cluster_cpus:g} for Ray Data's read tasks{spread}, so scoring would wait forever: lower "
            "num_cpus or num_actors, and set active.scorer.threads to give each actor more torch threads "
            "than it reserves")


def run_on_actor_pool(source, udf: type, kwargs: dict, cfg: ScorerConfig, in_process: bool = False):
    """Numpy batches of ``udf`` (a Ray Data callable class) over ``source``, on the actor pool ``cfg`` describes.

    The one place the scorer and the feature-cache build map a model over the pool: actors, CPUs, GPUs and
    batch size from ``cfg``, the reservation check, or (``in_process``) one ``udf`` instance in this process.

    Returns:
        An iterator of dict-of-numpy batches, in no particular order (in process: the dataset's order).
    """
    if in_process:
        return _in_order(source, udf(**kwargs), cfg.batch_size)
    return map_on_actor_pool(source, udf, kwargs, cfg).iter_batches(batch_size=None, batch_format="numpy")


def _in_order(source, instance, batch_size: int):
    """``instance`` over ``source``'s batches in the dataset's own order. Read tasks finish in any order, and
    a clip's float rounding depends on the clips it is padded with in a micro-batch: fixed batches make a
    rerun in process give the same bits (an actor pool's batches still vary, within rounding)."""
    context = getattr(source, "context", None)  # a Ray Dataset; any other batch source keeps its own order
    options = context.execution_options if context is not None else None
    before = options.preserve_order if options is not None else None
    if options is not None:
        options.preserve_order = True
    try:
        for batch in source.iter_batches(batch_size=batch_size, batch_format="numpy"):
            yield instance(batch)
    finally:
        if options is not None:
            options.preserve_order = before


def map_on_actor_pool(source, udf: type, kwargs: dict, cfg: ScorerConfig):
    """``source.map_batches(udf)`` on the actor pool ``cfg`` describes, as a lazy Ray Dataset (to iterate on
    the driver, or to write straight to storage without passing through it)."""
    from ray.data import ActorPoolStrategy

    check_reservation(cfg, cluster_cpus(), cluster_cpu_nodes())
    return source.map_batches(
        udf, fn_constructor_kwargs=kwargs, batch_size=cfg.batch_size, batch_format="numpy",
        compute=ActorPoolStrategy(size=cfg.num_actors), num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus or None,
    )


class PoolScorer:
    """Ray Data callable class: ``ds.map_batches(PoolScorer, fn_constructor_kwargs=..., concurrency=k)``.

    Args:
        checkpoint_dir: an ``EmotionModel`` checkpoint (None = a freshly initialised model from ``model_cfg``,
            used for the cold start before anything is trained).
        model_cfg: ModelConfig dict, used only when ``checkpoint_dir`` is None.
        inputs: what the rows carry: audio (the default), or the cache's pooled features or frames.
        mc_samples: T MC-dropout passes.
        micro_batch_size: clips per forward pass (0 = :func:`auto_micro_batch` for the device).
        max_seconds: crop limit (s).
        threads: torch threads.
        seed: seeds the MC-dropout masks of each batch.
        speaker_stats: a speaker statistics file that replaces the checkpoint's (``model.feature_norm=speaker``;
            ``jobs.predict`` computes one over its own input).
        functionals_speaker_stats: the same for the functionals (``model.functionals`` with speaker statistics).
        encoder_source: where the checkpoint's encoder lives now (``EmotionModel.load_checkpoint``); None = the
            places the checkpoint records.
        device: torch device to score on; None = :func:`~ser_models.devices.actor_device` of ``num_gpus``
            (CUDA only where a GPU is reserved), reported in one line.
        num_gpus: the GPUs this actor reserved (``active.scorer.num_gpus``).
        precision: ``fp32`` or ``bf16`` (autocast) forward passes (:mod:`ser_models.precision`).
        allow_tf32: TF32 matmuls on CUDA (set process-wide here, the actor's own process).

    On CUDA with ``micro_batch_size=0`` the first batch with clips measures the peak memory of a forward of its
    longest clips and sizes the micro-batch from the memory left (:func:`~ser_models.precision.size_micro_batch`,
    logged once); batches are built in pinned memory and copied asynchronously.

    A model with ``model.functionals`` reads each clip's eGeMAPS functionals from the feature cache's column;
    given audio instead (``jobs.predict``, ``jobs.evaluate``), the scorer computes them from it.
    """

    def __init__(self, checkpoint_dir: str | None, model_cfg: dict | None = None,
                 inputs: ModelInputs = AUDIO, mc_samples: int = 0, micro_batch_size: int = 0,
                 max_seconds: float = 20.0, threads: int = 1, seed: int = 0, speaker_stats: str | None = None,
                 functionals_speaker_stats: str | None = None, encoder_source: str | None = None,
                 device: str | None = None, num_gpus: float = 0.0, precision: str = "fp32",
                 allow_tf32: bool = True):
        import torch

        from ser_models.devices import actor_device, log_device
        from ser_models.encoders import FRAME_RATE
        from ser_models.models.model import EmotionModel, ModelConfig
        from ser_models.training.micro_batches import MicroBatcher

        torch.set_num_threads(max(int(threads), 1))
        if checkpoint_dir is not None:
            self.model = EmotionModel.load_checkpoint(checkpoint_dir, encoder_source=encoder_source)
        else:
            torch.manual_seed(seed)
            self.model = EmotionModel(from_dict(ModelConfig, model_cfg))
        if speaker_stats is not None:
            from ser_models.encoders.speaker_norm import SpeakerStatistics

            if self.model.speaker_norm is None:
                raise ConfigError("speaker statistics were given, but the model does not use model.feature_norm=speaker")
            self.model.speaker_norm.set_statistics(SpeakerStatistics.load(speaker_stats))
        if functionals_speaker_stats is not None:
            from ser_models.encoders.speaker_norm import SpeakerStatistics

            if self.model.functionals_norm is None:
                raise ConfigError("speaker statistics of the functionals were given, but the model reads none "
                                  "(model.functionals=none)")
            self.model.functionals_norm.speaker.set_statistics(SpeakerStatistics.load(functionals_speaker_stats))
        self.egemaps = None
        if self.model.uses_functionals and inputs.is_audio:  # audio in: functionals computed here
            from ser_models.encoders.functionals import EgemapsExtractor

            self.egemaps = EgemapsExtractor(threads)
        self.device = torch.device(device) if device else actor_device(num_gpus)
        if not device:  # chosen here, so say so (a caller that names its device knows it)
            log_device("scorer", self.device, num_gpus)
        self.model.to(self.device).eval()
        self.precision = check_precision(precision, "scorer.precision")
        configure_device(self.device, allow_tf32)
        self.inputs = inputs
        self.mc_samples = mc_samples
        self.num_gpus = num_gpus
        # None = sized from free memory on the first batch (audio on CUDA); else a fixed size. Either way it
        # halves on an out-of-memory error (MicroBatcher): a clip's scores do not depend on its batch, so the
        # size changes speed only.
        micro = micro_batch_size or (
            None if self.device.type == "cuda" and self.inputs.is_audio
            else auto_micro_batch(self.device.type, self.inputs.is_cached))
        self.max_seconds = max_seconds
        # Lengths the batcher sees: samples of audio, frames of cached frames, nothing of pooled features.
        self.rate = 16000 if self.inputs.is_audio else (FRAME_RATE if self.inputs.is_frames else None)
        self.batcher = None if micro is None else MicroBatcher(micro, "scorer", max_seconds, self.rate)
        self.max_samples = int(max_seconds * 16000)
        self.seed = seed

    def __call__(self, batch: dict) -> dict:
        import torch

        from ser_models.training.batching import make_batch
        from ser_models.training.micro_batches import MicroBatcher

        clips = collect_clips([batch], self.model.cfg.labels, inputs=self.inputs,
                              require_labels=False)
        if self.egemaps is not None and clips.audio is not None:
            clips.functionals = np.concatenate([self.egemaps.clip(a) for a in clips.audio]) if len(clips) \
                else np.zeros((0, self.model.functionals_norm.dim), np.float32)
        pausepoint("score_batch")  # node-loss tests remove this actor's node here
        n, c, k = len(clips), len(self.model.cfg.labels), len(self.model.cfg.dimensions)
        probs = np.zeros((n, c), np.float32)
        mc = np.zeros((n, self.mc_samples, c), np.float32)
        dims = np.zeros((n, k), np.float32)
        mc_dims = np.zeros((n, self.mc_samples, k), np.float32)
        emb = pooled = np.zeros((0, 0), np.float32)  # sized by the first forward
        pin = pin_for(self.device)
        if self.batcher is None and n:
            self.batcher = MicroBatcher(self._size_micro_batch(clips), "scorer", self.max_seconds, self.rate)

        def step(index: np.ndarray) -> None:  # one micro-batch; redone whole after an out-of-memory error
            nonlocal emb, pooled
            b = make_batch(clips, index, self.max_samples, None, pin).to(self.device)
            out = self._forward(b)
            probs[index] = torch.softmax(out.logits.float(), -1).cpu().numpy()
            dims[index] = out.dimensions.float().cpu().numpy()
            e = out.embedding.float().cpu().numpy()
            p = out.pooled.float().cpu().numpy()
            if not emb.size:
                emb = np.zeros((n, e.shape[1]), np.float32)
                pooled = np.zeros((n, p.shape[1]), np.float32)
            emb[index], pooled[index] = e, p
            if self.mc_samples:
                # Masks seeded per clip (id, sample): a clip gets the same MC samples whatever batch or
                # micro-batch it lands in and however long its neighbours are, so a redone round, or one
                # scored with other batch sizes, scores identically.
                base = [_stable_hash([str(i)]) for i in b.ids]
                for t in range(self.mc_samples):
                    seeds = [(self.seed * 7919 + h) * 131 + t for h in base]
                    with self.model.mc_dropout(row_seeds=seeds):
                        sample = self._forward(b)
                    mc[index, t] = torch.softmax(sample.logits.float(), -1).cpu().numpy()
                    mc_dims[index, t] = sample.dimensions.float().cpu().numpy()

        with torch.no_grad():
            if n:  # sorted by length: little padding
                self.batcher.run(clips.lengths(), clips.ids, step)
        # Plain float32 arrays: Ray Data carries them as tensor columns (no per-row Python objects).
        out = {"utt_id": np.asarray(clips.ids, dtype=object), "probs": probs, "embedding": emb, "pooled": pooled}
        if self.mc_samples and c:
            out["mc_probs"] = mc
        if k:
            out["dims"] = dims
            if self.mc_samples:
                out["mc_dims"] = mc_dims
        return out

    def _forward(self, b):
        with autocast(self.device, self.precision):
            return self.model.forward_batch(b)

    def _size_micro_batch(self, clips) -> int:
        """Clips per forward on CUDA, from a probe forward of the longest clips of ``clips`` (scaled to
        ``max_seconds``) and the device memory left (:func:`~ser_models.precision.size_micro_batch`)."""
        from ser_models.training.batching import probe_batch
        from ser_models.training.micro_batches import size_or_halve

        probe, length = probe_batch(clips, AUTO_MICRO_BATCH_FLOOR, self.max_samples, self.device)
        return size_or_halve("scorer", lambda: size_micro_batch(
            "scorer", lambda: self._forward(probe), self.device, len(probe.ids), length, self.max_samples,
            gpu_share(self.num_gpus)), len(probe.ids))


def _stable_hash(ids) -> int:
    return zlib.crc32("\x00".join(ids).encode()) % (2**31)


@dataclass
class Scores:
    """Scores of a pool, sorted by clip id.

    Attributes:
        ids: [N]; probs: [N, C] ([N, 0] without classes); mc_probs: [N, T, C] or None; embedding: [N, E]
        (head penultimate layer); pooled: [N, D] (featurized, pooled encoder output); dims: [N, K] dimensional
        predictions or None; mc_dims: [N, T, K] their MC-dropout samples or None.
    """

    ids: np.ndarray
    probs: np.ndarray
    embedding: np.ndarray
    pooled: np.ndarray
    mc_probs: np.ndarray | None = None
    dims: np.ndarray | None = None
    mc_dims: np.ndarray | None = None

    def to_table(self) -> pa.Table:
        n = len(self.ids)
        cols = {"utt_id": pa.array(self.ids.astype(str))}
        if self.embedding.shape[1]:  # kept by selection and scoring; evaluation reads none
            cols["embedding"] = _fixed(self.embedding)
        if self.probs.shape[1]:  # a model without classes has none (Arrow lists cannot be 0 wide)
            cols["probs"] = _fixed(self.probs)
        if self.pooled.size:  # gathered only for the cold start (score_dataset(keep_pooled=True))
            cols["pooled"] = _fixed(self.pooled)
        if self.mc_probs is not None:
            cols["mc_probs"] = _fixed(self.mc_probs.reshape(n, -1))
        if self.dims is not None:
            cols["dims"] = _fixed(self.dims)
        if self.mc_dims is not None:
            cols["mc_dims"] = _fixed(self.mc_dims.reshape(n, -1))
        table = pa.table(cols)
        meta = {"mc_shape": ",".join(map(str, self.mc_probs.shape[1:])) if self.mc_probs is not None else "",
                "mc_dims_shape": ",".join(map(str, self.mc_dims.shape[1:])) if self.mc_dims is not None else ""}
        return table.replace_schema_metadata({k.encode(): v.encode() for k, v in meta.items()})

    @classmethod
    def from_table(cls, table: pa.Table) -> Scores:
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        ids = np.asarray(table.column("utt_id").to_pylist(), dtype=object)
        def samples(column: str, shape_key: str):
            if column not in table.column_names or not meta.get(shape_key):
                return None
            shape = tuple(int(x) for x in meta[shape_key].split(","))
            return _unfixed(table.column(column)).reshape(len(ids), *shape)

        pooled = (_unfixed(table.column("pooled")) if "pooled" in table.column_names
                  else np.zeros((len(ids), 0), np.float32))
        dims = _unfixed(table.column("dims")) if "dims" in table.column_names else None
        probs = (_unfixed(table.column("probs")) if "probs" in table.column_names
                 else np.zeros((len(ids), 0), np.float32))
        embedding = (_unfixed(table.column("embedding")) if "embedding" in table.column_names
                     else np.zeros((len(ids), 0), np.float32))
        return cls(ids, probs, embedding, pooled,
                   samples("mc_probs", "mc_shape"), dims, samples("mc_dims", "mc_dims_shape"))

    def take(self, rows: np.ndarray) -> Scores:
        """The scores of ``rows`` [R] (positions), in that order."""
        def pick(a):
            return None if a is None else a[rows]

        return Scores(self.ids[rows], self.probs[rows], self.embedding[rows], self.pooled[rows],
                      pick(self.mc_probs), pick(self.dims), pick(self.mc_dims))

    def sorted_by_id(self) -> Scores:
        """These scores with their rows in id order (the order every strategy sees a pool in)."""
        return self.take(np.argsort(self.ids.astype(str), kind="stable"))

    def save(self, path: str | Path) -> None:
        # Unique ids and float vectors: no dictionary, LZ4 (see write_parquet_atomic).
        write_parquet_atomic(path, self.to_table(), dictionary=False, compression="lz4")

    @classmethod
    def load(cls, path: str | Path) -> Scores:
        return cls.from_table(read_parquet(path))

    def as_scored_pool(self, targets: np.ndarray | None = None, costs: np.ndarray | None = None,
                       labels: np.ndarray | None = None):
        """The :class:`~ser_models.active.strategies.ScoredPool` a strategy reads; ``targets`` [N, K] are the
        known dimensional values of labelled clips (NaN elsewhere), for greedy sampling in output space;
        ``costs`` [N] the seconds each clip costs to label (cost-aware selection), or None; ``labels`` [N] the
        known class index of labelled clips (-1 elsewhere), or None."""
        from ser_models.scoring.scored_pool import ScoredPool

        return ScoredPool(ids=self.ids.astype(str), probs=self.probs, embeddings=self.embedding,
                          mc_probs=self.mc_probs, predictions=self.dims, mc_predictions=self.mc_dims,
                          targets=targets, costs=costs, labels=labels)


def _fixed(arr: np.ndarray) -> pa.FixedSizeListArray:
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), arr.shape[1] if arr.ndim > 1 else 1)


def _unfixed(col) -> np.ndarray:
    col = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    width = col.type.list_size
    if width == 0:  # e.g. the probabilities of a model without classes
        return np.zeros((len(col), 0), np.float32)
    return col.values.to_numpy(zero_copy_only=False).reshape(-1, width).astype(np.float32, copy=False)


def score_dataset(ds, checkpoint_dir: str | Path | None, cfg: ScorerConfig, *, model_cfg: dict | None = None,
                  inputs: ModelInputs = AUDIO, seed: int = 0, verbose: bool = True,
                  in_process: bool = False, keep_pooled: bool = False, keep_embedding: bool = True,
                  total: int | None = None) -> Scores:
    """Score every row of ``ds`` with an actor pool of :class:`PoolScorer` and gather the results.

    Args:
        ds: Ray Dataset of pool rows (audio mode) or cached features (``inputs`` names the cache). Only the
            audio/feature columns are read: labels never reach the scorer.
        checkpoint_dir: the round's model checkpoint (None = fresh model from ``model_cfg``).
        cfg: actor pool size, GPUs, batch sizes, MC samples.
        inputs: what the rows carry and the model reads, built from its config (:meth:`ModelConfig.inputs
            <ser_models.models.model_config.ModelConfig.inputs>`, or ``model_inputs`` given the feature cache):
            audio (the default) or the cache's pooled features or frames, and the side columns (transcripts,
            speakers, functionals) read with them.
        in_process: call one :class:`PoolScorer` in this process instead of an actor pool (the loop's
            ``scaling.backend=in_process``: no actor start-up, for quick local runs).
        keep_pooled: gather the [N, D] pooled encoder vectors too (only the cold start needs them; at 1M
            clips of a 768-d encoder they are 3 GB the driver otherwise never holds). When False,
            ``Scores.pooled`` is an [N, 0] array.
        keep_embedding: gather the [N, E] head embeddings (selection needs them; evaluation does not, and
            then ``Scores.embedding`` is an [N, 0] array).
        total: rows in ``ds`` when the caller knows them: with ``verbose``, a progress line (done / total,
            rate, time left) every 15 s of a long scoring pass.

    Returns:
        :class:`Scores` sorted by clip id (deterministic whatever order the actors finished in).
    """
    t0 = time.perf_counter()
    columns = inputs.columns()
    kwargs = dict(checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir), model_cfg=model_cfg,
                  inputs=inputs, mc_samples=cfg.mc_samples, micro_batch_size=cfg.micro_batch_size,
                  max_seconds=cfg.max_seconds, threads=cfg.torch_threads(), seed=seed, num_gpus=cfg.num_gpus,
                  precision=cfg.precision, allow_tf32=cfg.allow_tf32)
    batches = run_on_actor_pool(ds.select_columns(columns), PoolScorer, kwargs, cfg, in_process)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("utt_id", "probs", "embedding", "pooled", "mc_probs",
                                                          "dims", "mc_dims")}
    wanted = [k for k in parts if (keep_pooled or k != "pooled") and (keep_embedding or k != "embedding")]
    done, shown = 0, t0
    for batch in batches:
        for key in wanted:
            if key in batch:
                parts[key].append(np.asarray(batch[key]))
        done += len(batch["utt_id"])
        if verbose and time.perf_counter() - shown > 15:
            shown = time.perf_counter()
            print("  " + progress_line("scoring", done, total, shown - t0, "clips"), flush=True)
    if not sum(len(a) for a in parts["utt_id"]):
        raise PoolError("scoring produced no rows: the dataset to score is empty")
    ids = np.concatenate(parts["utt_id"]).astype(str)
    order = np.argsort(ids, kind="stable")

    def stack(key):
        arrays = [a for a in parts[key] if len(a)]  # an empty batch carries no shape
        return np.concatenate(arrays).astype(np.float32, copy=False)[order] if arrays else None

    pooled = stack("pooled") if keep_pooled else np.zeros((len(ids), 0), np.float32)
    embedding = stack("embedding") if keep_embedding else np.zeros((len(ids), 0), np.float32)
    scores = Scores(ids[order].astype(object), stack("probs"), embedding, pooled, stack("mc_probs"),
                    stack("dims"), stack("mc_dims"))
    if verbose:
        secs = time.perf_counter() - t0
        print(f"  scored {len(ids)} clips in {secs:.1f}s ({len(ids) / max(secs, 1e-9):.0f} clips/s)")
    return scores

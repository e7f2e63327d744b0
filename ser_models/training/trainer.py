"""Driver side of fine-tuning: build the Ray Train ``TorchTrainer``, run it, collect artifacts.

Everything is written under one ``output_dir``, a local path or a ``pyarrow.fs`` URI (``s3://bucket/run``;
Ray Train then writes its checkpoints there through ``storage_filesystem``)::

    output_dir/
      ray_train/<name>/      Ray Train's run folder (checkpoints per epoch); rerunning resumes from it
      checkpoint/            the best model (EmotionModel.save_checkpoint: trainable weights only)
      metrics.json           history, best epoch, dev and test metrics
      confusion.png          test (else dev) confusion matrix
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ser_models.config import to_dict
from ser_models.data.clips import AUDIO_INPUT_COLUMNS
from ser_models.data.inputs import ModelInputs
from ser_models.data.local_rows import is_held
from ser_models.exceptions import ConfigError, TrainingError
from ser_models.io import (
    StoragePath,
    exists,
    filesystem,
    finish_dir_swap,
    is_local,
    read_json,
    replace_dir,
    storage_path,
    write_json_atomic,
)
from ser_models.metrics import plot_confusion
from ser_models.models.model import META_FILE
from ser_models.ownership import discard_staging, make_staging
from ser_models.runtime import cluster_cpus
from ser_models.training.config import ScalingConfig, TrainConfig
from ser_models.training.distributed import GPU_BACKEND
from ser_models.training.in_process import train_in_process
from ser_models.training.loop import MODEL_DIR, RESULT_FILE, train_loop_per_worker

if TYPE_CHECKING:
    import ray.data


@dataclass
class TrainResult:
    """What a finished fine-tuning run left behind."""

    output_dir: StoragePath
    checkpoint_dir: StoragePath
    metrics: dict
    seconds: float
    resumed: bool = False


def _feed(ds, name: str, columns, in_process: bool):
    """The dataset a fit reads for feed ``name``: only the columns it needs, except an evaluation split that
    is already materialised for an in-process fit, passed as it is so that ``train_in_process`` reads it once
    per loop, not once per round (its extra columns are ignored)."""
    if name == "anchor_target":
        return ds.select_columns(AUDIO_INPUT_COLUMNS)
    if in_process and name != "train" and is_held(ds):
        return ds
    return ds.select_columns(columns(name))


def _inputs_for(model_cfg, inputs: ModelInputs | None) -> ModelInputs:
    """``inputs``, checked to be what ``model_cfg`` reads from their source (None: audio)."""
    expected = model_cfg.inputs(inputs.shape if inputs is not None else None)
    if inputs is not None and inputs != expected:
        raise TrainingError(f"train_model: inputs {inputs} were not built for this model config, which reads "
                            f"{expected}: build them with ModelConfig.inputs or scoring.feature_cache.model_inputs")
    return expected


def train_model(model_cfg, train_cfg: TrainConfig, scaling: ScalingConfig, datasets: dict[str, ray.data.Dataset],
                output_dir: str | Path, *, class_counts: list[int] | None = None,
                inputs: ModelInputs | None = None, init_checkpoint: str | Path | None = None,
                run_name: str = "finetune", train_rows: int | None = None, verbose: bool = True,
                report=None, callbacks: list | None = None, anchoring: dict | None = None,
                soft_labels: bool = False, plots: bool = True) -> TrainResult:
    """Fine-tune with Ray Train (or return the finished result of an earlier identical call).

    Args:
        model_cfg: a ``ModelConfig``.
        train_cfg: training hyperparameters.
        scaling: workers, GPUs, failure retries.
        datasets: ``train`` (required), ``dev``, ``test`` Ray Datasets of pool rows (audio mode) or of cached
            features (``inputs`` names the cache). Only ``train`` is split across workers; rank 0 evaluates.
        output_dir: local folder or ``pyarrow.fs`` URI (Ray Train's storage must be visible to every node on
            a cluster: use ``s3://``/``gs://`` or a shared filesystem path there).
        class_counts: [C] labelled training clips per class (class-weighted loss).
        inputs: what the rows carry, built from ``model_cfg`` (:meth:`ModelConfig.inputs
            <ser_models.models.model_config.ModelConfig.inputs>`, or ``model_inputs`` given the feature cache):
            audio, or the cache's pooled features or frames, with the side columns the model reads. None = audio
            for ``model_cfg``.
        init_checkpoint: warm-start from this model checkpoint's trainable weights.
        run_name: Ray Train run name under ``output_dir/ray_train``.
        train_rows: clips in ``datasets["train"]`` when the caller knows (None = counted here); above
            ``scaling.stream_above_clips`` per worker the training set is streamed, not held.
        report: ``in_process`` only: called with every epoch's metrics row and the final row (a Tune trial
            passes ``ray.tune.report``).
        callbacks: Ray Train V2 ``UserCallback`` s for the run (a Tune trial passes ``TuneReportCallback``).
        anchoring: layer anchoring, ``{"groups", "weight", "batch_size"}``: ``datasets["anchor_target"]``
            (unlabelled target-domain pool rows) is held whole by every worker and aligned with the training
            batches at the anchor layers (:class:`~ser_models.training.anchoring.AnchorFeed`).
        soft_labels: ``datasets["train"]`` has a ``soft_label`` column (JSON vote shares from several
            annotators, null for hard labels): the classification loss fits the shares.
        plots: draw ``confusion.png`` of the evaluation split (many-seed simulations skip it).

    Returns:
        A :class:`TrainResult`; ``metrics`` has ``history``, ``best_epoch``, ``dev`` and ``test``.

    Raises:
        TrainingError: when Ray Train gives up (after ``scaling.max_failures`` restarts), or ``inputs`` were not
            built for ``model_cfg``.
    """
    inputs = _inputs_for(model_cfg, inputs)
    output_dir = storage_path(output_dir)
    ckpt_dir = output_dir / "checkpoint"
    metrics_path = output_dir / "metrics.json"
    finish_dir_swap(ckpt_dir, META_FILE)  # a replacement a kill interrupted: the complete version goes in place
    if exists(metrics_path) and exists(ckpt_dir / META_FILE):
        if verbose:
            print(f"training already finished in {output_dir}: reusing it")
        return TrainResult(output_dir, ckpt_dir, read_json(metrics_path), 0.0, resumed=True)
    if "train" not in datasets:
        raise TrainingError("datasets must contain 'train'")

    def columns(name: str) -> list[str]:  # only the training feed carries soft labels
        return inputs.feed_columns(model_cfg.dimensions, soft=soft_labels and name == "train")

    if anchoring and "anchor_target" not in datasets:
        raise TrainingError("anchoring needs datasets['anchor_target'] (the unlabelled target clips)")
    # anchor_target: unlabelled target clips, audio only
    feeds = {name: _feed(ds, name, columns, scaling.backend == "in_process")
             for name, ds in datasets.items() if ds is not None}
    if train_rows is None:
        train_rows = feeds["train"].count()
    if scaling.backend == "in_process":

        t0 = time.perf_counter()
        metrics = train_in_process(model_cfg, train_cfg, feeds, output_dir, class_counts=class_counts,
                                   inputs=inputs, init_checkpoint=init_checkpoint,
                                   threads=scaling.cpus_per_worker, use_gpu=scaling.use_gpu, verbose=verbose,
                                   stream_rows=train_rows if train_rows > scaling.stream_above_clips else None,
                                   stream_window=scaling.stream_window, report=report, anchoring=anchoring)
        return _finish(model_cfg, output_dir, metrics, time.perf_counter() - t0, plots)
    for ds in feeds.values():
        # Progress bars of datasets fed to workers would interleave with the epoch lines.
        ds.context.enable_progress_bars = False
    loop_config = {
        "model": to_dict(model_cfg),
        "train": to_dict(train_cfg),
        "inputs": inputs.to_dict(),
        "class_counts": class_counts,
        "init_checkpoint": str(init_checkpoint) if init_checkpoint else None,
        "threads": scaling.cpus_per_worker,
        "anchoring": anchoring,
    }
    result, seconds, staging = run_torch_trainer(train_loop_per_worker, loop_config, scaling, feeds, output_dir,
                                                 run_name, train_rows=train_rows, callbacks=callbacks)
    try:
        metrics = result.return_value or read_json(staging / RESULT_FILE)
        # A swap: the new checkpoint is complete beside the old one before the old one goes, and model.json
        # (written last) marks a complete version, so a kill at any point leaves one that loads.
        replace_dir(staging / MODEL_DIR, ckpt_dir, META_FILE)
    finally:
        discard_staging(staging)
    return _finish(model_cfg, output_dir, metrics, seconds, plots)


def run_torch_trainer(loop_fn, loop_config: dict, scaling: ScalingConfig, datasets: dict, output_dir: str,
                      run_name: str, train_rows: int | None = None, callbacks: list | None = None) -> tuple:
    """Run ``loop_fn`` with Ray Train V2 and download its last checkpoint to a local temporary folder.

    Shared by fine-tuning and TAPT: one place decides how scaling, failure retries, checkpoint retention and
    dataset splitting map onto Ray Train. Rerunning with the same ``output_dir`` and ``run_name`` resumes
    from the run's last checkpoint (Ray Train restores it; the worker reads it with ``get_checkpoint``).

    Returns:
        ``(result, seconds, staging_dir)``: ``staging_dir`` is a local ``Path``; the caller copies what it
        needs out of it and removes it.

    Raises:
        TrainingError: Ray Train gave up after ``scaling.max_failures`` restarts, or left no checkpoint.
    """
    # Here, not at the top: an in-process fit on rows read without Ray never imports it (runtime.ray).
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig
    from ray.train import ScalingConfig as RayScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    stream_rows = _stream_rows(scaling, train_rows)
    # A held training set is read on the driver, before the workers reserve their CPUs: when num_workers *
    # cpus_per_worker takes every CPU (2 workers on 2 CPUs), reads started by the workers wait for a free CPU
    # forever (a silent hang). A streamed one, and then its evaluation splits too, is read by the workers
    # (_stream_rows checked that CPUs are left for the read tasks).
    if stream_rows is None:
        datasets = {name: held_on_driver_node(ds) for name, ds in datasets.items()}
        eval_rows = None
    else:
        eval_rows = {name: ds.count() for name, ds in datasets.items() if name != "train"}
    loop_config = {**loop_config, "stream_rows": stream_rows, "stream_window": scaling.stream_window,
                   "eval_rows": eval_rows}
    trainer = TorchTrainer(
        loop_fn,
        train_loop_config=loop_config,
        # On GPUs NCCL carries the gradients and gloo the loop's small CPU collectives (NCCL rejects CPU
        # tensors); on CPUs Ray's default (gloo) is kept.
        torch_config=TorchConfig(backend=GPU_BACKEND) if scaling.use_gpu else None,
        scaling_config=RayScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
                                     resources_per_worker={"CPU": scaling.cpus_per_worker}),
        run_config=RunConfig(
            name=run_name,
            **_ray_storage(storage_path(output_dir) / "ray_train"),
            failure_config=FailureConfig(max_failures=scaling.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=list(callbacks or []),
        ),
        datasets=datasets,
        # Resolved here, in the driver: Train would otherwise read the controller actor's DataContext, which
        # lacks the pool's object-store budget (runtime.configure_ray_data)
        dataset_config=DataConfig(datasets_to_split=["train"],
                                  execution_options=DataConfig.default_ingest_options()),
    )
    t0 = time.perf_counter()
    try:
        result = trainer.fit()
    except Exception as exc:  # TrainingFailedError and friends
        raise TrainingError(f"Ray Train run {run_name!r} in {output_dir} failed: {exc}") from exc
    seconds = time.perf_counter() - t0
    if result.checkpoint is None:
        raise TrainingError(f"Ray Train run {run_name!r} in {output_dir} finished without a checkpoint")
    staging = Path(make_staging(f"{run_name}-checkpoint"))
    result.checkpoint.to_directory(str(staging))
    return result, seconds, staging


def held_on_driver_node(ds):
    """``ds`` read now, its blocks put in the object store of the driver's node (the head node of a cluster).

    ``ds.materialize()`` would leave each block on the worker node that read it. When that node is lost, Ray
    rebuilds the block by rerunning its read task, which needs a CPU, while the restarted Train workers hold
    every CPU they asked for: a silent hang (seen on a two-node cluster with two 1-CPU workers). A held set is
    small (``scaling.stream_above_clips`` bounds it), and blocks put by the driver live as long as the driver's
    node. The driver holds one block at a time.
    """
    import ray
    import ray.data

    held = ray.data.from_arrow_refs([ray.put(ray.get(ref)) for ref in ds.to_arrow_refs()])
    held.context.enable_progress_bars = ds.context.enable_progress_bars  # the caller's choice, not the default
    return held


def _stream_rows(scaling: ScalingConfig, train_rows: int | None) -> int | None:
    """Rows per worker when the training set is streamed (``scaling.stream_above_clips``), else None.

    Raises:
        ConfigError: streaming was chosen but the workers reserve every CPU of the cluster, so Ray Data's
            read tasks could never run.
    """
    if train_rows is None:
        return None
    per_worker = train_rows // scaling.num_workers  # Ray Train splits the training set equally
    if per_worker <= scaling.stream_above_clips:
        return None

    cpus, reserved = cluster_cpus(), scaling.num_workers * scaling.cpus_per_worker
    if cpus and reserved >= cpus:
        raise ConfigError(f"{train_rows} training clips are streamed (> scaling.stream_above_clips="
                          f"{scaling.stream_above_clips} per worker), but the {scaling.num_workers} workers reserve "
                          f"{reserved} of the cluster's {cpus:g} CPUs and leave none for reading: lower "
                          "scaling.num_workers or scaling.cpus_per_worker")
    return per_worker


def _ray_storage(uri: str) -> dict:
    """``storage_path`` (+ ``storage_filesystem`` for URIs) of a Ray Train ``RunConfig``."""
    if is_local(uri):
        return {"storage_path": str(uri)}
    fs, path = filesystem(uri)
    return {"storage_path": path, "storage_filesystem": fs}


def _finish(model_cfg, output_dir: StoragePath, metrics: dict, seconds: float, plots: bool = True) -> TrainResult:
    """Plot (unless ``plots`` is false), then write metrics.json last (its presence marks the run finished)."""
    ckpt_dir, metrics_path = output_dir / "checkpoint", output_dir / "metrics.json"
    metrics["train_wall_seconds"] = seconds
    split = "test" if metrics.get("test") else "dev"
    if plots and metrics.get(split) and "confusion" in metrics[split]:
        plot_confusion(metrics[split]["confusion"], model_cfg.labels, output_dir / "confusion.png",
                       title=f"{split}: UA {metrics[split]['ua']:.3f}")
    write_json_atomic(metrics_path, metrics)  # written last: its presence marks the run finished
    return TrainResult(output_dir, ckpt_dir, metrics, seconds)

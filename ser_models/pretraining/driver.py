"""The driver every pre-training run shares: reuse a finished run, or train on Ray Train and publish the result.

TAPT (:func:`~ser_models.pretraining.tapt.run_tapt`), distillation
(:func:`~ser_models.pretraining.distill.run_distill`) and adapter pre-training
(:func:`~ser_models.pretraining.adapter_pretrain.run_adapter_pretrain`) differ in what they prepare before
training and in what the published folder's marker records; :func:`run_pretraining` holds the rest::

    output_dir/
      <folder>/<weights>       the trained weights, published by a folder swap
      <folder>/<marker>        what the weights are (written last into the folder: its completion marker)
      <metrics>                losses per epoch, seconds (written last of all: marks the run finished)
      <plot>                   loss curve
      ray_train/<run_name>/    Ray Train checkpoints per epoch; rerunning resumes from them
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ser_models.exceptions import TrainingError
from ser_models.io import (
    StoragePath,
    begin_dir_swap,
    commit_dir_swap,
    exists,
    finish_dir_swap,
    read_json,
    storage_path,
    write_bytes_atomic,
    write_json_atomic,
)
from ser_models.ownership import discard_staging
from ser_models.pretraining.pretraining import RESULT_FILE, plot_loss_curve
from ser_models.training.config import ScalingConfig

#: A console line writer: ``print``, or a no-op when the run is quiet.
Say = Callable[..., None]


@dataclass(frozen=True)
class PretrainLayout:
    """What one kind of pre-training run is called in console lines and where it keeps its artifacts.

    Attributes:
        label: the run's name in the reuse line (``"TAPT"``, ``"distillation"``).
        folder: the folder under the output folder the weights are published in (replaced by a swap).
        weights: the weights file, in ``folder`` and in the last checkpoint.
        marker: the completion marker in ``folder``.
        metrics: the metrics file; its presence marks the run finished.
        plot: the loss-curve figure.
        finished_by_marker: a finished run is recognised by ``marker`` instead of ``weights``, and the marker
            is read back into :attr:`PretrainRun.info` (distillation's marker holds the student's encoder config).
    """

    label: str
    folder: str
    weights: str
    marker: str
    metrics: str
    plot: str
    finished_by_marker: bool = False


@dataclass
class PretrainTraining:
    """What a driver's ``prepare`` hands :func:`run_pretraining` once the run is known not to be finished.

    Attributes:
        loop: the Ray Train worker function.
        config: the worker's ``train_loop_config``.
        dataset: the Ray Dataset trained on.
        train_rows: clips in ``dataset`` (decides whether workers stream their shard).
        started: the ``time.perf_counter()`` the run's ``seconds`` count from (so a driver decides whether
            its own preparation, such as k-means targets, is included).
        missing: the :class:`TrainingError` message when the last checkpoint has no weights file.
        describe: ``(metrics, staged) -> dict``, the completion marker's content.
        title: ``metrics -> str``, the loss plot's title.
        extra_metrics: merged into the metrics after ``seconds`` (distillation's parameter counts).
        staged_info: a JSON file of the last checkpoint read before the checkpoint is discarded and passed to
            ``describe`` as ``staged`` (the adapter's ``wap.json``); None passes None.
    """

    loop: Callable[[dict], dict]
    config: dict
    dataset: Any
    train_rows: int
    started: float
    missing: str
    describe: Callable[[dict, dict | None], dict]
    title: Callable[[dict], str]
    extra_metrics: dict = field(default_factory=dict)
    staged_info: str | None = None


@dataclass
class PretrainRun:
    """A finished pre-training run, trained now or reused.

    Attributes:
        output_dir: the run folder (as :func:`~ser_models.io.storage_path` gives it).
        weights: the published weights file.
        metrics: the metrics file's content.
        seconds: training time (0.0 when reused).
        reused: True when an earlier run had finished and nothing was trained.
        info: the completion marker read back on reuse when the layout asks for it (else None).
    """

    output_dir: StoragePath
    weights: StoragePath
    metrics: dict
    seconds: float
    reused: bool = False
    info: dict | None = None


def run_pretraining(output_dir: str, layout: PretrainLayout, scaling: ScalingConfig, run_name: str,
                    prepare: Callable[[StoragePath, Say], PretrainTraining], *,
                    plot: Callable[[list[dict], StoragePath, str], None] = plot_loss_curve,
                    verbose: bool = True) -> PretrainRun:
    """Reuse the finished run in ``output_dir``, or prepare, train with Ray Train and publish the weights.

    A swap interrupted by a kill is completed (or undone) first. A fresh run then trains through
    :func:`~ser_models.training.trainer.run_torch_trainer` (resuming from its checkpoints), copies the weights
    out of the last checkpoint into a new version of ``layout.folder``, writes the marker and swaps it in,
    plots the loss and writes the metrics last.

    Args:
        output_dir: run folder (local or URI); rerunning with it resumes or reuses.
        layout: the run's name and artifact names.
        scaling: Ray Train workers, CPUs, retries and streaming.
        run_name: Ray Train run name under ``output_dir/ray_train``.
        prepare: ``(output folder, say) -> PretrainTraining``, called only when the run has not finished; it
            may print and raise (a bad config is refused before Ray Train starts).
        plot: ``(history, path, title)`` draws the loss curve.
        verbose: print the reuse line (and let ``prepare`` print through ``say``).

    Returns:
        A :class:`PretrainRun`.

    Raises:
        TrainingError: Ray Train gives up after ``scaling.max_failures`` restarts, or the last checkpoint has no
            weights file (``PretrainTraining.missing``).
    """
    from ser_models.training.trainer import run_torch_trainer  # Ray is imported only when a run trains

    say: Say = print if verbose else (lambda *_: None)
    out = storage_path(output_dir)
    folder = out / layout.folder
    weights = folder / layout.weights
    metrics_path = out / layout.metrics
    finish_dir_swap(folder, layout.marker)  # a replacement a kill interrupted: the complete version goes in
    if exists(metrics_path) and exists(folder / layout.marker if layout.finished_by_marker else weights):
        say(f"{layout.label} already finished in {out}: reusing {weights}")
        info = read_json(folder / layout.marker) if layout.finished_by_marker else None
        return PretrainRun(out, weights, read_json(metrics_path), 0.0, reused=True, info=info)
    training = prepare(out, say)
    result, _, staging = run_torch_trainer(training.loop, training.config, scaling, {"train": training.dataset},
                                           out, run_name, train_rows=training.train_rows)
    seconds = time.perf_counter() - training.started
    try:
        if not (staging / layout.weights).exists():
            raise TrainingError(training.missing)
        metrics = result.return_value or read_json(staging / RESULT_FILE)
        metrics["seconds"] = seconds
        metrics.update(training.extra_metrics)
        staged = None if training.staged_info is None else read_json(staging / training.staged_info)
        # A swap: the new weights and the marker (written last) go beside the old folder first, so a kill at
        # any point leaves one complete pair.
        incoming = begin_dir_swap(folder, layout.marker)
        write_bytes_atomic(incoming / layout.weights, (staging / layout.weights).read_bytes())
    finally:
        discard_staging(staging)
    write_json_atomic(incoming / layout.marker, training.describe(metrics, staged))
    commit_dir_swap(folder, layout.marker)
    plot(metrics["history"], out / layout.plot, training.title(metrics))
    write_json_atomic(metrics_path, metrics)  # written last: its presence marks the run finished
    return PretrainRun(out, weights, metrics, seconds)

"""Ray Train worker function for fine-tuning: shards in, :func:`fit`, checkpoints and reports out."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from ser_models.config import from_dict
from ser_models.data.clips import collect_clips
from ser_models.data.inputs import ModelInputs
from ser_models.training.anchoring import anchor_feed
from ser_models.training.batching import StreamingClips
from ser_models.training.config import TrainConfig
from ser_models.training.fitting import (
    FitState,
    epoch_row,
    evaluate,
    final_row,
    fit,
    load_trainable_weights,
    parameter_counts,
    trainable_weights,
)
from ser_models.training.state_io import load_state, save_state

STATE_FILE = "fit_state.pt"
MODEL_DIR = "model"
RESULT_FILE = "result.json"


def _shard_clips(name: str, labels, inputs: ModelInputs, dimensions=()):
    import ray.train

    shard = ray.train.get_dataset_shard(name)
    if shard is None:
        return None
    clips = collect_clips(shard.iter_batches(batch_size=64, batch_format="numpy"), labels,
                          inputs=inputs, dimensions=dimensions)
    return clips.sorted_by_id()


def train_loop_per_worker(config: dict) -> dict:
    """Fine-tune an ``EmotionModel`` on this worker's shard of ``train``; rank 0 evaluates ``dev``/``test``.

    Args:
        config: ``{"model": ModelConfig dict, "train": TrainConfig dict, "inputs": ModelInputs dict,
            "class_counts": [C], "init_checkpoint": dir | None, "threads": int, "anchoring": {"groups",
            "weight", "batch_size"} | None}`` (anchoring reads the ``anchor_target`` dataset).

    Returns:
        On rank 0: ``{"history", "best_epoch", "best_dev_ua", "dev", "test"}`` (Ray Train hands it to the
        driver as ``Result.return_value``); other ranks return ``{}``.
    """
    import ray.train
    import ray.train.torch

    from ser_models.models.model import EmotionModel, ModelConfig

    torch.set_num_threads(max(int(config.get("threads", 1)), 1))
    model_cfg = from_dict(ModelConfig, config["model"])
    train_cfg = from_dict(TrainConfig, config["train"])
    inputs = ModelInputs.from_dict(config.get("inputs"))
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    device = ray.train.torch.get_device()
    torch.manual_seed(train_cfg.optim.seed)  # identical head init on every replica
    model = EmotionModel(model_cfg)
    if config.get("init_checkpoint"):
        # Warm start (an AL option): previous round's trainable weights.
        init = EmotionModel.load_checkpoint(config["init_checkpoint"])
        load_trainable_weights(model, trainable_weights(init))
    if config.get("check_gradients", True) and inputs.is_audio:
        model.check_gradients()
    labels, dims = model_cfg.labels, model_cfg.dimensions
    if config.get("stream_rows"):
        # Too large to hold: read the shard anew every epoch, one decoded window at a time.
        train = StreamingClips(ray.train.get_dataset_shard("train"), labels, int(config["stream_rows"]),
                               inputs=inputs, dimensions=dims,
                               window=int(config.get("stream_window", 256)))
        if rank == 0:
            print(f"streaming {len(train)} training clips per worker, {train.window} decoded at a time")
    else:
        train = _shard_clips("train", labels, inputs, dims)
    if config.get("eval_rows") is not None:  # streamed: evaluated window by window, never held
        window = int(config.get("stream_window", 256))
        dev, test = (StreamingClips(ray.train.get_dataset_shard(name), labels, config["eval_rows"][name],
                                    inputs=inputs, dimensions=dims, window=window)
                     if rank == 0 and name in config["eval_rows"] else None for name in ("dev", "test"))
    else:
        dev = _shard_clips("dev", labels, inputs, dims) if rank == 0 else None
        test = _shard_clips("test", labels, inputs, dims) if rank == 0 else None

    anchor = None
    if config.get("anchoring"):  # unlabelled target clips, whole on every worker (not split)
        target = ray.train.get_dataset_shard("anchor_target")
        anchor = anchor_feed(config["anchoring"], target.iter_batches(batch_size=64, batch_format="numpy"))

    state = FitState()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state, saved = load_state(Path(d) / STATE_FILE, FitState)
        load_trainable_weights(model, saved["current"])
        line = state.mark_resumed()
        if rank == 0:
            print(line)

    counts = parameter_counts(model)

    def on_epoch_end(st: FitState, mdl, _opt, _sched) -> None:
        metrics = epoch_row(st, counts)
        if rank != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory() as tmp:
            save_state(Path(tmp) / STATE_FILE, st, current=trainable_weights(mdl))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    state = fit(model, train, dev, train_cfg, device=device, class_counts=config.get("class_counts"),
                state=state, on_epoch_end=on_epoch_end, log=print if rank == 0 else (lambda _: None), anchor=anchor)
    if rank != 0:
        ray.train.report({"final": 1, "epoch": state.epoch}, checkpoint=None)  # every rank reports equally
        return {}
    result = {
        "history": state.history,
        "best_epoch": state.best_epoch,
        "best_dev_ua": state.best_ua,
        "resumed_after": state.resumed_after,  # epochs finished at each restart: the next one was redone
        "dev": evaluate(model, dev, train_cfg, device) if dev is not None and len(dev) else None,
        "test": evaluate(model, test, train_cfg, device) if test is not None and len(test) else None,
        **counts,
    }
    with tempfile.TemporaryDirectory() as tmp:
        model.save_checkpoint(Path(tmp) / MODEL_DIR)
        (Path(tmp) / RESULT_FILE).write_text(json.dumps(result, default=float))
        save_state(Path(tmp) / STATE_FILE, state, current=trainable_weights(model))
        # Ray Train V2 keeps this checkpoint as the run's latest; the row repeats the last epoch's metrics (a
        # Tune scheduler reads dev_ua from every row) and adds the test metrics.
        ray.train.report(final_row(result), checkpoint=ray.train.Checkpoint.from_directory(tmp))
    return result

"""The same fine-tuning as the Ray Train path, run inside the calling process.

For quick local iteration, CI-sized loop tests and label-efficiency sweeps where Ray Train's worker start-up
(~20-40 s on 2 cores) dwarfs a fit of a few seconds. Data still comes from the Ray Datasets; checkpoints
per epoch make it resumable exactly like the Ray Train path (``output_dir/in_process/fit_state.pt``).
"""

from __future__ import annotations

import weakref

import torch

from ser_models.data.clips import collect_clips
from ser_models.data.inputs import AUDIO, ModelInputs
from ser_models.data.local_rows import is_held
from ser_models.exceptions import ConfigError
from ser_models.io import begin_dir_swap, commit_dir_swap, exists, storage_path, write_json_atomic
from ser_models.training.anchoring import anchor_feed
from ser_models.training.batching import StreamingClips
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
from ser_models.training.loop import STATE_FILE
from ser_models.training.state_io import load_state, save_state

#: Clip sets already read from a materialised (so immutable) dataset, by dataset: the loop evaluates every
#: round on the same materialised dev and test sets, and reading them again cost ~0.3 s each per round.
_READ: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _clips(ds, labels, inputs: ModelInputs, dimensions=()):
    if ds is None:
        return None
    key = (tuple(labels), inputs, tuple(dimensions))
    if is_held(ds) and key in _READ.get(ds, {}):
        return _READ[ds][key]
    clips = collect_clips(ds.iter_batches(batch_size=256, batch_format="numpy"), labels, dimensions=dimensions,
                          inputs=inputs).sorted_by_id()
    if is_held(ds):
        _READ.setdefault(ds, {})[key] = clips
    return clips


def train_in_process(model_cfg, train_cfg, datasets: dict, output_dir: str, *, class_counts=None,
                     inputs: ModelInputs = AUDIO, init_checkpoint=None, threads: int = 1, use_gpu: bool = False,
                     verbose: bool = True, stream_rows: int | None = None, stream_window: int = 256,
                     report=None, anchoring: dict | None = None) -> dict:
    """Fit in this process; returns the same metrics dict as the Ray Train worker and leaves the model in
    ``output_dir/checkpoint``. With ``stream_rows`` the training set is read from Ray Data every epoch, one
    decoded window of ``stream_window`` clips at a time (:class:`StreamingClips`), instead of held.
    ``report(row)``, when given, is called with the metrics row of every epoch and with the final row
    (:func:`~ser_models.training.fitting.final_row`), as the Ray Train worker reports them (a Tune trial
    passes ``ray.tune.report``).

    Raises:
        ConfigError: ``use_gpu`` (``scaling.use_gpu``) is set but this process sees no CUDA device.
    """
    from ser_models.models.model import EmotionModel

    if use_gpu and not torch.cuda.is_available():
        raise ConfigError("scaling.use_gpu=true but the in_process backend's process sees no CUDA device; set "
                          "scaling.use_gpu=false or run where a GPU is visible")
    device = torch.device("cuda" if use_gpu else "cpu")

    torch.set_num_threads(max(int(threads), 1))
    torch.manual_seed(train_cfg.optim.seed)
    model = EmotionModel(model_cfg)
    if init_checkpoint:
        load_trainable_weights(model, trainable_weights(EmotionModel.load_checkpoint(init_checkpoint)))
    if inputs.is_audio:
        model.check_gradients()
    labels, dims = model_cfg.labels, model_cfg.dimensions
    if stream_rows is not None:
        train = StreamingClips(datasets["train"].iterator(), labels, stream_rows, inputs=inputs,
                               dimensions=dims,
                               window=stream_window)
    else:
        train = _clips(datasets["train"], labels, inputs, dims)
    dev = _clips(datasets.get("dev"), labels, inputs, dims)
    test = _clips(datasets.get("test"), labels, inputs, dims)
    output_dir = storage_path(output_dir)
    state_path = output_dir / "in_process" / STATE_FILE
    state = FitState()
    if exists(state_path):
        state, saved = load_state(state_path, FitState)
        load_trainable_weights(model, saved["current"])
        line = state.mark_resumed()
        if verbose:
            print(line)

    counts = parameter_counts(model)

    def on_epoch_end(st, mdl, _o, _s):
        save_state(state_path, st, current=trainable_weights(mdl))  # atomic
        if report is not None:
            report(epoch_row(st, counts))

    anchor = anchor_feed(anchoring, datasets["anchor_target"].iter_batches(batch_size=256, batch_format="numpy")
                         if anchoring else None)
    state = fit(model, train, dev, train_cfg, device=device, class_counts=class_counts, state=state,
                on_epoch_end=on_epoch_end, log=print if verbose else (lambda _: None), anchor=anchor)
    result = {
        "history": state.history, "best_epoch": state.best_epoch, "best_dev_ua": state.best_ua,
        "resumed_after": state.resumed_after,  # epochs finished at each resume: the next one was redone
        "dev": evaluate(model, dev, train_cfg, device) if dev is not None and len(dev) else None,
        "test": evaluate(model, test, train_cfg, device) if test is not None and len(test) else None,
        **counts,
    }
    # Swapped in: the previous checkpoint stays whole until this one is (model.json is written last).
    model.save_checkpoint(begin_dir_swap(output_dir / "checkpoint", "model.json"))
    commit_dir_swap(output_dir / "checkpoint", "model.json")
    write_json_atomic(output_dir / "in_process" / "result.json", result)
    if report is not None:
        report(final_row(result))
    return result

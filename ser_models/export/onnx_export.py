"""Export a trained checkpoint's whole audio inference path to one ONNX graph.

The graph takes what :func:`ser_models.load` hands the model after decoding and resampling: ``wavs [B, T]``
float32 mono at 16 kHz, zero-padded, and ``lengths [B]`` int64 valid samples per clip (for Whisper encoders,
the log-mel windows of those clips instead: ``torch.stft`` does not export faithfully, so
:mod:`.whisper_mel` computes them in numpy, to within 1e-5 of the platform's torch front end). It holds the encoder's
front end (the waveform standardisation when the encoder's config asks for it), the encoder, the layer
featurizer, the pooling, the pool-statistics feature standardisation and the head, and returns
``probabilities [B, C]`` (softmax of the logits) and, for models with dimensional outputs, ``dimensions [B, K]``.
Batch and length are dynamic axes.

The graph is traced from the same :class:`~ser_models.models.model.EmotionModel` the checkpoint loads into, and checked
after export: ONNX Runtime must give the torch model's probabilities within :data:`PARITY_TOLERANCE` on probe
batches of other sizes and lengths than the traced one, or the export is refused (the file is removed). Settings
the graph cannot carry exactly are refused before tracing (:func:`check_exportable`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

import numpy as np

from ser_models import io
from ser_models.exceptions import ExportError
from ser_models.export.whisper_mel import whisper_inputs

#: Largest absolute difference in any class probability allowed between ONNX Runtime (fp32) and torch.
PARITY_TOLERANCE = 1e-4
#: ONNX opset of the exported graph (ONNX Runtime 1.18 and later run it).
OPSET = 17
#: ``metadata_props`` keys the exporter writes (values are strings; lists and dicts as JSON).
METADATA_KEYS = ("ser.labels", "ser.dimensions", "ser.sample_rate", "ser.min_samples", "ser.preprocessing",
                 "ser.encoder", "ser.quantization", "ser.batch", "ser.front_end", "ser.format_version")
QUANTIZE_MODES = ("none", "int8")


#: The operators ``quantize=int8`` stores with int8 weights (activations quantised per batch at run time).
INT8_OPS = ("MatMul", "Gemm")


def check_exportable(model) -> None:
    """Refuse a model whose prediction the graph could not reproduce exactly.

    Args:
        model: an :class:`~ser_models.models.model.EmotionModel`.

    Raises:
        ExportError: naming the setting: a text branch (``model.text``: needs transcripts and a tokenizer),
            eGeMAPS functionals in use (``model.functionals``: openSMILE runs outside torch), speaker
            standardisation (``model.feature_norm=speaker``: needs each clip's speaker), or, with a Whisper
            encoder, trimmed windows, a pooling other than mean, ``model.wap`` or waveform standardisation.
    """
    from ser_models.encoders.whisper import WhisperSpeechEncoder

    cfg = model.cfg
    if model.text is not None:
        raise ExportError("model.text is enabled: the text branch needs transcripts and a tokenizer, which the "
                          "audio-only ONNX graph cannot carry; export a model trained without model.text")
    if model.uses_functionals:
        raise ExportError(f"model.functionals={cfg.functionals} (chosen: {cfg.functionals_choice or 'egemaps'}): the "
                          "eGeMAPS functionals come from openSMILE outside the model, so a graph would predict "
                          "without them; export a model trained with model.functionals=none")
    if model.norm == "speaker":
        raise ExportError(f"model.feature_norm={cfg.feature_norm} standardises by speaker (chosen: speaker): the "
                          "graph has no speaker input; export a model trained with model.feature_norm=pool or none")
    if model.wap is not None and isinstance(model.encoder, WhisperSpeechEncoder):
        raise ExportError("model.wap with a Whisper encoder: the Whisper graph pools window by window, which the "
                          "WAP adapter's attention over the whole clip does not allow; export without model.wap")
    if isinstance(model.encoder, WhisperSpeechEncoder):
        if model.encoder.trim_frames is not None:
            raise ExportError(f"model.encoder.whisper_windows={cfg.encoder.whisper_windows}: trimmed windows are "
                              "not exported; export a model trained with whisper_windows=full")
        if cfg.pooling != "mean":
            raise ExportError(f"model.pooling={cfg.pooling} with a Whisper encoder: the Whisper graph pools window "
                              "by window, exactly only for pooling=mean")
        if model.encoder.normalize_waveform:
            raise ExportError("model.encoder.normalize_waveform=true with a Whisper encoder is not exported (Whisper "
                              "reads log-mel features of the raw waveform)")


def metadata(model, quantization: str = "none") -> dict[str, str]:
    """The ``metadata_props`` of an exported graph: labels, sample rate and the preprocessing a caller repeats.

    Args:
        model: the exported :class:`~ser_models.models.model.EmotionModel`.
        quantization: ``none`` | ``int8``.

    Returns:
        ``{key: string}`` with the keys of :data:`METADATA_KEYS`.
    """
    from ser_models.data.config import POOL_SAMPLE_RATE

    preprocessing = {
        "input": "wavs [B, T] float32 mono in [-1, 1] at sample_rate, zero-padded after lengths [B] int64",
        "decode": "mono average of channels, resampled to sample_rate (the platform's Resampler)",
        "pcm16_round_trip": True,  # ser_models.load rounds to 16-bit PCM before the model, as the pool stores it
        "crop_seconds": 20.0,  # ser_models.load's default max_seconds: longer clips are cut to their start
        "normalize_waveform_in_graph": bool(model.encoder.normalize_waveform),
        "min_samples": int(model.encoder.min_samples),
    }
    return {
        "ser.labels": json.dumps(list(model.labels)),
        "ser.dimensions": json.dumps(list(model.dimensions)),
        "ser.sample_rate": str(POOL_SAMPLE_RATE),
        "ser.min_samples": str(int(model.encoder.min_samples)),
        "ser.preprocessing": json.dumps(preprocessing),
        "ser.encoder": str(model.cfg.encoder.source),
        "ser.quantization": quantization,
        "ser.batch": "1" if per_clip(model) else "any",
        "ser.format_version": "1",
    } | _whisper_metadata(model)


def _whisper_metadata(model) -> dict[str, str]:
    if not is_whisper(model):
        return {"ser.front_end": "waveform"}
    filters = model.encoder.mel_filters.float().numpy()
    return {"ser.front_end": "whisper_log_mel", "ser.window_frames": str(int(model.encoder.window_frames)),
            "ser.mel_filters": json.dumps(filters.tolist())}


def is_whisper(model) -> bool:
    """Whether the graph starts at log-mel windows (Whisper encoders; :mod:`.whisper_mel` computes them)."""
    from ser_models.encoders.whisper import WhisperSpeechEncoder

    return isinstance(model.encoder, WhisperSpeechEncoder)


def _whisper_wrapper(model):
    import torch

    class _WhisperGraph(torch.nn.Module):
        """``(features [M, n_mels, 2W], frame_mask [M, W], assign [B, M]) -> probabilities [B, C] (, dimensions
        [B, K])``: the encoder on each window, the standardisation and featurizer per frame, and the clip's mean
        over its valid frames of all its windows (sums per window, added up per clip: exactly the platform's
        masked mean over the concatenated windows)."""

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, features, frame_mask, assign):
            m = self.m
            out = m.encoder.hf_model(features, output_hidden_states=True)
            x = m.featurizer(m._standardise(tuple(out.hidden_states), None))  # [M, W, D]
            sums = (x * frame_mask[..., None]).sum(1)  # [M, D]
            pooled = (assign @ sums) / (assign @ frame_mask.sum(1, keepdim=True))
            logits, dims, _ = m.head(pooled)
            probs = torch.softmax(logits.float(), -1)
            return (probs, dims.float()) if m.dimensions else (probs,)

    return _WhisperGraph(model).eval()


def per_clip(model) -> bool:
    """Whether the graph takes one unpadded clip per call (``ser.batch=1``): encoders whose CNN front end starts
    with a group norm over time (wav2vec2-base, HuBERT-base, WavLM base) normalise each clip over its own
    samples, which the platform computes clip by clip (a loop a traced graph would fix to the traced batch)."""
    return bool(getattr(model.encoder, "group_norm_front_end", False))


@contextlib.contextmanager
def _tracing_front_end(model):
    """For :func:`per_clip` models: HF's own front end while tracing. On one clip without padding it is the
    platform's per-clip front end exactly (the clip is its own whole batch)."""
    if not per_clip(model):
        yield
        return
    model.encoder._padding_aware_front_end = lambda *_: contextlib.nullcontext()  # shadows the method
    try:
        yield
    finally:
        del model.encoder._padding_aware_front_end


def _wrapper(model):
    import torch

    class _Graph(torch.nn.Module):
        """``(wavs [B, T], lengths [B]) -> probabilities [B, C] (, dimensions [B, K])``, the model in eval mode."""

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, wavs, lengths):
            out = self.m(wavs, lengths)
            probs = torch.softmax(out.logits.float(), -1)
            if out.dimensions is not None and out.dimensions.shape[-1]:
                return probs, out.dimensions.float()
            return (probs,)

    return _Graph(model).eval()


def probe_batches(min_samples: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Zero-padded probe batches ``(wavs [B, T] float32, lengths [B] int64)``: tones in noise, of batch sizes
    and lengths other than the traced input's, the shortest at the encoder's receptive field, the longest 9.4 s
    (several windows of an 8 s Whisper window)."""
    rng = np.random.default_rng(seed)
    batches = []
    for lengths in ([24000, 9000, 17777], [12345], [max(min_samples, 400), 32000, 150000]):
        t_max = max(lengths)
        wavs = np.zeros((len(lengths), t_max), np.float32)
        for i, n in enumerate(lengths):
            t = np.arange(n) / 16000.0
            wavs[i, :n] = 0.3 * np.sin(2 * np.pi * (150 + 200 * i) * t) + 0.05 * rng.standard_normal(n)
        batches.append((wavs, np.asarray(lengths, np.int64)))
    return batches


def torch_probabilities(model, wavs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``[B, C]`` float32 class probabilities of the torch model on a padded batch."""
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(wavs), torch.from_numpy(lengths))
        return torch.softmax(out.logits.float(), -1).numpy()


def _session(path: str):
    import onnxruntime as ort

    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def _set_metadata(path: str, props: dict[str, str]) -> None:
    import onnx

    graph = onnx.load(path)
    del graph.metadata_props[:]
    for key, value in props.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, path)


def export_model(model, output: str, quantize: str = "none") -> dict:
    """Export an eval-mode model to ``output`` and check it against torch.

    Args:
        model: an :class:`~ser_models.models.model.EmotionModel` (put in eval mode here).
        output: ``.onnx`` file to write: a local path or a URI (``s3://bucket/models/model.onnx``), written
            atomically (a reader sees the previous file or the whole new one).
        quantize: ``none`` (fp32) or ``int8`` (ONNX Runtime's dynamic quantisation of the weights of
            :data:`INT8_OPS`).

    Returns:
        ``{"output", "max_abs_diff_fp32", "max_abs_diff" (of the written graph), "quantization"}``.

    Raises:
        ExportError: a setting :func:`check_exportable` refuses, or the fp32 graph's probabilities differ from
            torch's by more than :data:`PARITY_TOLERANCE` on a probe batch (nothing is left at ``output``).
    """
    import torch

    if quantize not in QUANTIZE_MODES:
        raise ExportError(f"quantize={quantize!r}: expected one of {list(QUANTIZE_MODES)}")
    model = model.eval()
    check_exportable(model)
    whisper = is_whisper(model)
    graph = _whisper_wrapper(model) if whisper else _wrapper(model)
    names = ["probabilities"] + (["dimensions"] if model.dimensions else [])
    if whisper:
        inputs = ["features", "frame_mask", "assign"]
        axes = {"features": {0: "windows"}, "frame_mask": {0: "windows"}, "assign": {0: "batch", 1: "windows"}}
    else:
        inputs = ["wavs", "lengths"]
        axes = {"wavs": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}}
    axes.update({n: {0: "batch"} for n in names})
    min_samples = int(model.encoder.min_samples)
    one = per_clip(model)
    trace = (torch.zeros(1 if one else 2, 19200), torch.tensor([19200] if one else [19200, 14400]))
    trace[0][0] = torch.sin(torch.arange(19200) / 10.0) * 0.2
    if not one:
        trace[0][1, :14400] = torch.cos(torch.arange(14400) / 7.0) * 0.2
    if whisper:
        trace = tuple(torch.from_numpy(v) for v in _graph_inputs(model, trace[0].numpy(), trace[1].numpy()).values())
    with tempfile.TemporaryDirectory() as tmp:  # the graph is built here, then published whole at output
        fp32 = os.path.join(tmp, "model.fp32.onnx")
        with torch.no_grad(), _tracing_front_end(model):
            torch.onnx.export(graph, trace, fp32, input_names=inputs, output_names=names,
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        _set_metadata(fp32, metadata(model, "none"))
        worst = _max_diff(model, fp32, min_samples)
        if not worst <= PARITY_TOLERANCE:  # NaN fails too
            raise ExportError(f"the exported graph of model.encoder.source={model.cfg.encoder.source!r} "
                              f"(pooling={model.cfg.pooling}) gives probabilities up to {worst:.3g} away from torch "
                              f"(tolerance {PARITY_TOLERANCE:g}): not written to {output}")
        written = worst
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            q = os.path.join(tmp, "model.int8.onnx")
            # Matrix multiplications only: ONNX Runtime's integer convolution (ConvInteger) ran slower than the
            # float one on CPU and cost accuracy (bench/results/onnx_throughput.md); convolutions stay float32.
            quantize_dynamic(fp32, q, weight_type=QuantType.QInt8, op_types_to_quantize=list(INT8_OPS))
            _set_metadata(q, metadata(model, "int8"))
            written = _max_diff(model, q, min_samples)
            io.write_file_atomic(output, q)
        else:
            io.write_file_atomic(output, fp32)
    return {"output": output, "max_abs_diff_fp32": worst, "max_abs_diff": written, "quantization": quantize}


def _max_diff(model, path: str, min_samples: int) -> float:
    """Largest probability difference, ONNX Runtime against torch, over :func:`probe_batches` (split into
    single unpadded clips for :func:`per_clip` models); inf when the graph fails to run on a probe."""
    session = _session(path)
    batches = probe_batches(min_samples)
    if per_clip(model):
        batches = [(w[None, :n], np.asarray([n], np.int64)) for b, lens in batches for w, n in zip(b, lens)]
    worst = 0.0
    for wavs, lengths in batches:
        try:
            got = session.run(["probabilities"], _graph_inputs(model, wavs, lengths))[0]
        except Exception:  # noqa: BLE001 - a graph that cannot run a probe is refused like a wrong one
            return float("inf")
        worst = max(worst, float(np.abs(got - torch_probabilities(model, wavs, lengths)).max()))
    return worst


def _graph_inputs(model, wavs: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
    """The graph's inputs for a padded batch: itself, or for Whisper the numpy log-mel windows."""
    if not is_whisper(model):
        return {"wavs": wavs, "lengths": lengths}

    clips = [w[:n] for w, n in zip(wavs, lengths)]
    return whisper_inputs(clips, int(model.encoder.window_frames), model.encoder.mel_filters.float().numpy())


def export_checkpoint(checkpoint: str, output: str, quantize: str = "none",
                      encoder_source: str | None = None) -> dict:
    """Load a checkpoint (or a run holding one, as ``jobs.predict checkpoint=`` takes) and export it.

    Args:
        checkpoint: checkpoint folder or run folder.
        output: ``.onnx`` file to write.
        quantize: ``none`` | ``int8``.
        encoder_source: where the encoder lives now, if it moved (as :func:`ser_models.load` takes).

    Returns:
        :func:`export_model`'s report, plus ``checkpoint`` (the folder loaded).
    """
    from ser_models.models.model import EmotionModel
    from ser_models.runs.predict import resolve_checkpoint

    folder = resolve_checkpoint(str(checkpoint))
    model = EmotionModel.load_checkpoint(folder, encoder_source=encoder_source)
    report = export_model(model, output, quantize)
    report["checkpoint"] = folder
    return report


__all__ = ["INT8_OPS", "METADATA_KEYS", "OPSET", "PARITY_TOLERANCE", "QUANTIZE_MODES", "check_exportable", "export_checkpoint",
           "export_model", "is_whisper", "metadata", "per_clip", "probe_batches", "torch_probabilities"]

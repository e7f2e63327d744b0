"""Checking an imported Smart Turn encoder against the ONNX graph it came from (``ser-models import-encoder``
verifies every import this way unless ``--no-verify``).

Kept apart from :mod:`ser_models.encoders.smart_turn` (the import itself): the check builds the encoder through
the factory, which resolves encoder names through the import, so the two would otherwise import each other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ser_models.encoders.config import EncoderConfig
from ser_models.encoders.factory import build_encoder
from ser_models.encoders.smart_turn import (
    _PREFIX,
    EncoderImportError,
    _Graph,
    fetch_wheel,
    read_onnx,
)
from ser_models.encoders.whisper import log_mel_spectrogram


def reference_graph(onnx_bytes: bytes, *, bypass_activation_qdq: bool = True) -> tuple[bytes, str]:
    """The shipped graph with the encoder's final layer norm as an extra output.

    Args:
        onnx_bytes: the Smart Turn ONNX file.
        bypass_activation_qdq: rewire every consumer of an activation ``DequantizeLinear(QuantizeLinear(x))``
            to ``x`` (weights stay int8 and are dequantised in the graph), which is the float network the
            imported weights define.

    Returns:
        ``(model bytes, name of the output [B, 400, 384])``.
    """
    import onnx

    model = onnx.load_model_from_string(onnx_bytes)
    g = _Graph(model)
    final_norm = [n for n in model.graph.node if n.op_type == "LayerNormalization"
                  and n.input[1] == f"{_PREFIX}layer_norm.weight"]
    if len(final_norm) != 1:
        raise EncoderImportError("the graph has no single final encoder layer norm (inner.encoder.layer_norm)")
    output = final_norm[0].output[0]
    if bypass_activation_qdq:
        rename = {}
        for node in model.graph.node:
            if node.op_type == "DequantizeLinear" and node.input[0] not in g.inits:
                q = g.producer.get(node.input[0])
                if q is not None and q.op_type == "QuantizeLinear":
                    rename[node.output[0]] = q.input[0]
        for node in model.graph.node:
            for i, name in enumerate(node.input):
                if name in rename:
                    node.input[i] = rename[name]
        for out in model.graph.output:
            if out.name in rename:
                raise EncoderImportError(f"graph output {out.name} is a dequantised activation")
        keep = [n for n in model.graph.node
                if not (n.output[0] in rename or (n.op_type == "QuantizeLinear" and n.input[0] not in g.inits
                                                   and all(c.op_type == "DequantizeLinear"
                                                           for c in g.consumers[n.output[0]])))]
        del model.graph.node[:]
        model.graph.node.extend(keep)
        used = {name for node in keep for name in node.input}
        inits = [i for i in model.graph.initializer if i.name in used]
        del model.graph.initializer[:]
        model.graph.initializer.extend(inits)
    model.graph.output.append(onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None))
    return model.SerializeToString(), output


def compare_with_graph(encoder_dir: Path | str, onnx_bytes: bytes, wav: np.ndarray) -> dict:
    """Run the imported encoder and the ONNX graph on one clip and compare their last hidden states.

    Both get the same log-mel input (the encoder's own front end, one 8 s window), so the comparison is of
    the networks alone.

    Args:
        encoder_dir: the imported folder.
        onnx_bytes: the Smart Turn ONNX file.
        wav: ``[T]`` float32 16 kHz mono, at most 8 s.

    Returns:
        ``{"cosine_float_graph", "cosine_int8_graph"}`` (cosine over the clip's valid frames, flattened),
        plus ``"min_frame_cosine_float_graph"`` and ``"frames"``.
    """
    import onnxruntime as ort


    encoder = build_encoder(EncoderConfig(source=str(encoder_dir)))
    x = torch.from_numpy(np.asarray(wav, dtype=np.float32))[None]
    lengths = torch.tensor([x.shape[1]])
    if x.shape[1] > encoder.window_samples:
        raise ValueError(f"compare_with_graph takes at most {encoder.window_samples} samples, got {x.shape[1]}")
    with torch.no_grad():
        out = encoder(x, lengths)
        inputs, _ = encoder.prepare_inputs(x, lengths)
        inputs = torch.nn.functional.pad(inputs, (0, encoder.window_samples - inputs.shape[1]))
        features = log_mel_spectrogram(inputs, encoder.mel_filters).numpy()
    frames = int(out.frame_lengths[0])
    ours = out.hidden_states[-1][0, :frames].numpy().astype(np.float64)
    report: dict = {"frames": frames}
    options = ort.SessionOptions()
    options.log_severity_level = 3
    for key, bypass in (("float_graph", True), ("int8_graph", False)):
        graph, name = reference_graph(onnx_bytes, bypass_activation_qdq=bypass)
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        ref = session.run([name], {"input_features": features})[0][0, :frames].astype(np.float64)
        report[f"cosine_{key}"] = float(ours.ravel() @ ref.ravel()
                                        / (np.linalg.norm(ours) * np.linalg.norm(ref)))
        per_frame = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
        report[f"min_frame_cosine_{key}"] = float(per_frame.min())
    return report


def verify_import(encoder_dir: Path | str, source: Path | str | None = None, *,
                  cache_dir: Path | str | None = None) -> dict | None:
    """:func:`compare_with_graph` on a synthetic voiced test clip (3 s, the demo corpus's synthesizer).

    Returns:
        The report, or ``None`` when ``onnxruntime`` is not installed.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    from ser_models.data.synth import plan_corpus, synthesize_clip

    wav, _ = synthesize_clip(plan_corpus(12, seed=0)[1], seed=0, sample_rate=16_000)
    onnx_bytes, _ = read_onnx(Path(source) if source is not None else fetch_wheel(cache_dir, quiet=True))
    return compare_with_graph(encoder_dir, onnx_bytes, wav[: 8 * 16_000])

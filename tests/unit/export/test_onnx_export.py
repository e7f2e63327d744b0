"""ONNX export of the audio inference path: parity with torch per encoder family, metadata, refusals, int8."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ser_models.exceptions import ExportError
from ser_models.export.onnx_export import (
    METADATA_KEYS,
    PARITY_TOLERANCE,
    _graph_inputs,
    export_model,
    per_clip,
    torch_probabilities,
)
from ser_models.models.model import EmotionModel
from ser_models.testing import tiny_model_config


def _model(source: str, adapter: str = "lora", **changes) -> EmotionModel:
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_model_config(source, adapter, dimensions=["arousal"]), **changes)
    model = EmotionModel(cfg).eval()
    if model.standardizer is not None:  # pool statistics far from identity, so the graph must carry them
        rng = np.random.default_rng(3)
        shape = tuple(model.standardizer.mean.shape)
        model.standardizer.set_statistics(rng.normal(0, 0.5, shape), rng.uniform(0.5, 2.0, shape), 100)
    return model


def _batch(lengths, seed):
    rng = np.random.default_rng(seed)
    wavs = np.zeros((len(lengths), max(lengths)), np.float32)
    for i, n in enumerate(lengths):
        wavs[i, :n] = rng.standard_normal(n) * 0.2
    return wavs, np.asarray(lengths, np.int64)


@pytest.mark.parametrize(("source", "changes"), [
    ("tiny-wav2vec2", {"feature_norm": "pool"}),
    ("tiny-hubert", {"feature_norm": "pool", "featurizer_layer": 1}),
    ("tiny-wavlm", {"feature_norm": "pool"}),
    ("tiny-wav2vec2-group", {"pooling": "attentive_stats"}),
    ("tiny-whisper", {"feature_norm": "pool"}),
])
def test_fp32_graph_matches_torch_on_unseen_shapes(tmp_path, source, changes):
    model = _model(source, **changes)
    report = export_model(model, str(tmp_path / "model.onnx"))
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    # Batch sizes and lengths other than the exporter's own probes; clips padded with zeros in a batch.
    # 70000 samples: three windows of tiny-whisper's 2 s, cut into log-mel windows in numpy
    batches = [_batch(lengths, seed) for lengths, seed in (([40000, 6000, 70000, 16000], 7), ([5000], 8))]
    if per_clip(model):  # group-norm front end: the graph takes one unpadded clip per run (ser.batch=1)
        batches = [(w[None, :n], lens[i:i + 1]) for wavs, lens in batches for i, (w, n) in enumerate(zip(wavs, lens))]
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "model.onnx")).metadata_props}
    assert props["ser.batch"] == ("1" if source.endswith("-group") else "any")
    for wavs, lens in batches:
        got = session.run(["probabilities", "dimensions"], _graph_inputs(model, wavs, lens))
        want = torch_probabilities(model, wavs, lens)
        assert got[0].shape == want.shape
        assert np.abs(got[0] - want).max() <= PARITY_TOLERANCE
        with torch.no_grad():
            dims = model(torch.from_numpy(wavs), torch.from_numpy(lens)).dimensions.numpy()
        assert np.abs(got[1] - dims).max() <= 1e-4
    assert report["max_abs_diff_fp32"] <= PARITY_TOLERANCE


def test_metadata_names_labels_rate_and_preprocessing(tmp_path):
    model = _model("tiny-wav2vec2")
    export_model(model, str(tmp_path / "m.onnx"))
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert set(METADATA_KEYS) <= set(props)
    assert json.loads(props["ser.labels"]) == model.labels
    assert json.loads(props["ser.dimensions"]) == ["arousal"]
    assert props["ser.sample_rate"] == "16000"
    assert int(props["ser.min_samples"]) == model.encoder.min_samples
    pre = json.loads(props["ser.preprocessing"])
    assert pre["normalize_waveform_in_graph"] == bool(model.encoder.normalize_waveform)
    assert props["ser.quantization"] == "none"


@pytest.mark.parametrize(("source", "changes", "named"), [
    ("tiny-wav2vec2", {"feature_norm": "speaker"}, "model.feature_norm"),
    ("tiny-wav2vec2", {"functionals": "egemaps", "adapter": "frozen"}, "model.functionals"),
    ("tiny-whisper", {"pooling": "attentive_stats"}, "model.pooling"),
])
def test_refuses_what_the_graph_cannot_carry(tmp_path, source, changes, named):
    model = _model(source, **changes)
    with pytest.raises(ExportError, match=named):
        export_model(model, str(tmp_path / "m.onnx"))
    assert not (tmp_path / "m.onnx").exists()


def test_int8_is_smaller_close_and_labelled(tmp_path):
    model = _model("tiny-wav2vec2", feature_norm="pool")
    export_model(model, str(tmp_path / "fp32.onnx"))
    report = export_model(model, str(tmp_path / "int8.onnx"), quantize="int8")
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "int8.onnx")).metadata_props}
    assert props["ser.quantization"] == "int8"
    assert report["max_abs_diff"] > 0  # the weights really changed
    assert report["max_abs_diff"] < 0.2
    assert (tmp_path / "int8.onnx").stat().st_size < (tmp_path / "fp32.onnx").stat().st_size


def test_unknown_quantize_mode_is_refused(tmp_path):
    with pytest.raises(ExportError, match="quantize"):
        export_model(_model("tiny-wav2vec2"), str(tmp_path / "m.onnx"), quantize="int4")


def test_whisper_trimmed_windows_are_refused(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_model_config("tiny-whisper")
    cfg = dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, whisper_windows="trim"))
    with pytest.raises(ExportError, match="whisper_windows=trim"):
        export_model(EmotionModel(cfg).eval(), str(tmp_path / "m.onnx"))
    assert not (tmp_path / "m.onnx").exists()

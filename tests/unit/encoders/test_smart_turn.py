"""The Smart Turn importer on the real ``pipecat-ai`` wheel: conversion equivalence, refusals, reuse."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from ser_models.encoders import EncoderConfig, build_encoder
from ser_models.encoders.smart_turn import (
    ONNX_SHA256,
    EncoderImportError,
    convert_graph,
    fetch_wheel,
    import_smart_turn,
    read_onnx,
)
from ser_models.encoders.smart_turn_check import compare_with_graph

pytest.importorskip("onnxruntime", reason="the conversion check runs the ONNX graph with onnxruntime")


@pytest.fixture(scope="module")
def wheel(smart_turn_dir):
    return fetch_wheel(smart_turn_dir.parents[1], quiet=True)  # cached by the import the fixture made


@pytest.fixture(scope="module")
def onnx_bytes(wheel):
    return read_onnx(wheel)[0]


def _espeak(tmp_path) -> np.ndarray:
    """Eight seconds or less of real phonetic speech from espeak-ng, at 16 kHz."""
    import soundfile as sf
    import soxr

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): real-speech check skipped")
    path = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-p", "60", "-s", "170", "-w", str(path),
                    "Nobody expected the results to arrive so quickly, but here they are."], check=True)
    wav, rate = sf.read(path, dtype="float32")
    return soxr.resample(wav, rate, 16_000).astype(np.float32)[: 8 * 16_000]


def test_imported_folder_is_a_whisper_tiny_encoder(smart_turn_dir):
    enc = build_encoder(EncoderConfig(source=str(smart_turn_dir)))
    assert (enc.family, enc.num_layers, enc.hidden_size, enc.window_samples) == ("whisper", 5, 384, 128_000)
    assert sum(p.numel() for p in enc.hf_model.parameters()) > 7_000_000
    meta = json.loads((smart_turn_dir / "import.json").read_text())
    assert meta["onnx_sha256"] == ONNX_SHA256 and "BSD-2-Clause" in meta["license"]
    # graph order is k, q, v: the walk must have named the bias-free MatMul k_proj, not by position
    assert meta["name_map"]["layers.0.self_attn.k_proj.weight"] != meta["name_map"][
        "layers.0.self_attn.q_proj.weight"]
    assert (smart_turn_dir / "LICENSE").read_text().startswith("BSD 2-Clause")


def test_conversion_matches_graph_on_real_speech(smart_turn_dir, onnx_bytes, tmp_path):
    report = compare_with_graph(smart_turn_dir, onnx_bytes, _espeak(tmp_path))
    print(f"\nespeak-ng speech: cosine {report['cosine_float_graph']:.5f} vs the graph without activation QDQ "
          f"(min per frame {report['min_frame_cosine_float_graph']:.4f}), {report['cosine_int8_graph']:.3f} "
          "vs the int8 graph as shipped")
    assert report["cosine_float_graph"] >= 0.999
    assert report["min_frame_cosine_float_graph"] >= 0.99
    # activation quantisation alone moves the shipped graph far away: the float model is the weights' model
    assert report["cosine_int8_graph"] < report["cosine_float_graph"] - 0.05


def test_conversion_matches_graph_on_synthetic_voice(smart_turn_dir, onnx_bytes):
    """Runs everywhere (no espeak-ng needed): a demo-corpus voice, 3 s."""
    from ser_models.data.synth import plan_corpus, synthesize_clip

    wav, _ = synthesize_clip(plan_corpus(12, seed=3)[5], seed=3, sample_rate=16_000)
    report = compare_with_graph(smart_turn_dir, onnx_bytes, wav)
    assert report["cosine_float_graph"] >= 0.999


def test_a_swapped_projection_would_be_caught(smart_turn_dir, onnx_bytes):
    """The check has teeth: exchanging q and k (the order the graph lists them in) breaks equivalence."""
    from safetensors.numpy import load_file, save_file

    broken = smart_turn_dir.parent / "swapped-qk"
    shutil.copytree(smart_turn_dir, broken, dirs_exist_ok=True)
    state = load_file(str(broken / "model.safetensors"))
    for i in range(4):
        q, k = f"encoder.layers.{i}.self_attn.q_proj.weight", f"encoder.layers.{i}.self_attn.k_proj.weight"
        state[q], state[k] = state[k].copy(), state[q].copy()
    save_file(state, str(broken / "model.safetensors"))
    wav = np.sin(np.linspace(0, 2000, 40_000)).astype(np.float32) * np.hanning(40_000).astype(np.float32)
    try:
        assert compare_with_graph(broken, onnx_bytes, wav)["cosine_float_graph"] < 0.99
    finally:
        shutil.rmtree(broken)


def test_wrong_checksums_are_refused(wheel, tmp_path):
    bad_wheel = tmp_path / wheel.name
    bad_wheel.write_bytes(wheel.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(EncoderImportError, match="sha256 .* refusing"):
        import_smart_turn(tmp_path / "out", bad_wheel)
    onnx_file = tmp_path / "smart-turn-v3.2-cpu.onnx"
    data = bytearray(read_onnx(wheel)[0])
    data[-1] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(EncoderImportError, match="graph's sha256"):
        import_smart_turn(tmp_path / "out", onnx_file)
    assert not (tmp_path / "out").exists()


def test_a_graph_that_does_not_map_is_refused(onnx_bytes):
    """Drop one layer's fc1 bias Add: its weight can no longer be named, and the import says so."""
    import onnx

    model = onnx.load_model_from_string(onnx_bytes)
    adds = [n for n in model.graph.node if n.op_type == "Add" and "inner.encoder.layers.2.fc1.bias" in n.input]
    assert len(adds) == 1
    model.graph.node.remove(adds[0])
    with pytest.raises(EncoderImportError, match="layers.2.fc1.weight"):
        convert_graph(model.SerializeToString())


def test_import_is_reused_and_loads_offline(smart_turn_dir, wheel, tmp_path, monkeypatch):
    before = (smart_turn_dir / "model.safetensors").stat().st_mtime_ns
    assert import_smart_turn(smart_turn_dir, quiet=True) == smart_turn_dir  # no fetch, no rewrite
    assert (smart_turn_dir / "model.safetensors").stat().st_mtime_ns == before
    out = import_smart_turn(tmp_path / "copy", wheel, quiet=True)
    a = build_encoder(EncoderConfig(source=str(out))).hf_model.state_dict()
    b = build_encoder(EncoderConfig(source=str(smart_turn_dir))).hf_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

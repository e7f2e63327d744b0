"""``ser_models.load(path, runtime="onnx")``: predicts as the torch checkpoint does, in a process without torch."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch

import ser_models
from jobs.export import main as export_main
from ser_models import io
from ser_models.exceptions import AudioError, CheckpointError, ConfigError
from ser_models.export.onnx_export import PARITY_TOLERANCE
from ser_models.export.onnx_runtime import MODEL_FILE
from ser_models.models.model import EmotionModel
from ser_models.testing import tiny_model_config

_BLOCK_TORCH = textwrap.dedent("""
    import json, sys

    class _NoTorch:  # any import of torch in this process fails
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is blocked here (import of {name})")
            return None

    sys.meta_path.insert(0, _NoTorch())
    import ser_models

    predictor = ser_models.load(sys.argv[1], runtime="onnx")
    out = [p.to_dict() for p in predictor.predict(json.loads(sys.argv[2]))]
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
    print(json.dumps(out))
""")


def _checkpoint(tmp_path, source: str) -> str:
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_model_config(source, dimensions=["arousal"]), feature_norm="pool")
    model = EmotionModel(cfg).eval()
    rng = np.random.default_rng(3)
    shape = tuple(model.standardizer.mean.shape)
    model.standardizer.set_statistics(rng.normal(0, 0.5, shape), rng.uniform(0.5, 2.0, shape), 100)
    folder = str(tmp_path / f"ck_{source}")
    model.save_checkpoint(folder)
    return folder


def _files(tmp_path) -> list[str]:
    """Tones in noise as files at 22.05 kHz (resampled on load) and 16 kHz stereo (averaged), of other lengths."""
    rng = np.random.default_rng(5)
    paths = []
    # 4.5 s: three windows of tiny-whisper's 2 s
    for i, (rate, seconds, channels) in enumerate([(22050, 1.3, 1), (16000, 0.7, 2), (44100, 4.5, 1)]):
        n = int(rate * seconds)
        t = np.arange(n) / rate
        wav = 0.3 * np.sin(2 * np.pi * (180 + 90 * i) * t) + 0.05 * rng.standard_normal(n)
        data = np.stack([wav, 0.5 * wav], 1) if channels == 2 else wav
        path = str(tmp_path / f"clip{i}.wav")
        sf.write(path, data.astype(np.float32), rate, subtype="PCM_16")
        paths.append(path)
    return paths


def _close(torch_preds, onnx_preds) -> float:
    worst = 0.0
    for a, b in zip(torch_preds, onnx_preds, strict=True):
        assert a["label"] == b["label"]
        assert a["seconds"] == b["seconds"]
        worst = max(worst, *(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]))
        assert abs(a["dimensions"]["arousal"] - b["dimensions"]["arousal"]) <= 1e-4
    return worst


@pytest.mark.parametrize("source", ["tiny-wav2vec2", "tiny-whisper"])
def test_onnx_runtime_predicts_like_torch_without_torch(tmp_path, source):
    checkpoint = _checkpoint(tmp_path, source)
    export_main([f"checkpoint={checkpoint}", f"output={tmp_path / 'served' / 'model.onnx'}"])
    files = _files(tmp_path)
    want = [p.to_dict() for p in ser_models.load(checkpoint).predict(files)]
    run = subprocess.run([sys.executable, "-c", _BLOCK_TORCH, str(tmp_path / "served"), json.dumps(files)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert _close(want, got) <= PARITY_TOLERANCE


def test_group_norm_graph_runs_clip_by_clip_like_torch(tmp_path):
    checkpoint = _checkpoint(tmp_path, "tiny-wav2vec2-group")
    export_main([f"checkpoint={checkpoint}", f"output={tmp_path / 'g.onnx'}"])
    files = _files(tmp_path)
    onnx_predictor = ser_models.load(tmp_path / "g.onnx", runtime="onnx")
    assert onnx_predictor._scorer.per_clip
    want = [p.to_dict() for p in ser_models.load(checkpoint).predict(files)]
    got = [p.to_dict() for p in onnx_predictor.predict(files)]
    assert _close(want, got) <= PARITY_TOLERANCE
    # Arrays take the same path as the torch predictor: integer PCM scaled, resampled, checked for length.
    pcm = (np.sin(np.arange(9000) / 5.0) * 12000).astype(np.int16)
    a = ser_models.load(checkpoint).predict(pcm, sample_rate=8000).to_dict()
    b = onnx_predictor.predict(pcm, sample_rate=8000).to_dict()
    assert _close([a], [b]) <= PARITY_TOLERANCE
    with pytest.raises(AudioError, match="receptive field"):
        onnx_predictor.predict(np.zeros(100, np.float32), sample_rate=16000)


def test_onnx_load_errors_name_the_input(tmp_path):
    with pytest.raises(CheckpointError, match="model.onnx"):
        ser_models.load(tmp_path, runtime="onnx")
    with pytest.raises(CheckpointError, match="no such file"):
        ser_models.load(tmp_path / "missing.onnx", runtime="onnx")
    with pytest.raises(ConfigError, match="runtime='tensorrt'"):
        ser_models.load(tmp_path, runtime="tensorrt")


def test_threads_set_the_runtimes_thread_count_and_change_nothing_else(tmp_path):
    import torch

    checkpoint = _checkpoint(tmp_path, "tiny-wav2vec2-group")
    export_main([f"checkpoint={checkpoint}", f"output={tmp_path / 'g.onnx'}"])
    files = _files(tmp_path)
    one = ser_models.load(tmp_path / "g.onnx", runtime="onnx", threads=1)
    assert one._scorer.session.get_session_options().intra_op_num_threads == 1
    before = torch.get_num_threads()
    try:
        torch_one = ser_models.load(checkpoint, threads=1)
        assert torch.get_num_threads() == 1
        assert _close([p.to_dict() for p in torch_one.predict(files)],
                      [p.to_dict() for p in one.predict(files)]) <= PARITY_TOLERANCE
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="threads=0"):
        ser_models.load(checkpoint, threads=0)


def test_a_graph_exported_to_a_bucket_loads_from_it_and_predicts_as_the_local_one(tmp_path, s3_bucket):
    checkpoint = _checkpoint(tmp_path, "tiny-wav2vec2")
    export_main([f"checkpoint={checkpoint}", f"output={s3_bucket}/models/{MODEL_FILE}"])
    export_main([f"checkpoint={checkpoint}", f"output={tmp_path / 'local.onnx'}"])
    files = _files(tmp_path)
    want = [p.to_dict() for p in ser_models.load(tmp_path / "local.onnx", runtime="onnx").predict(files)]
    for where in (f"{s3_bucket}/models", f"{s3_bucket}/models/{MODEL_FILE}"):  # the folder, or the file
        got = [p.to_dict() for p in ser_models.load(where, runtime="onnx").predict(files)]
        assert _close(want, got) == 0.0
    # the graph and its log, and no temporary object left behind
    assert sorted(io.list_dir(f"{s3_bucket}/models")) == [MODEL_FILE, f"{MODEL_FILE}.log"]
    with pytest.raises(CheckpointError, match="no ONNX graph"):
        ser_models.load(f"{s3_bucket}/elsewhere", runtime="onnx")


_BLOCK_ORT = textwrap.dedent("""
    import sys

    # As in an install without the onnx extra: `import onnxruntime` fails and importlib.util.find_spec finds
    # nothing (torch and transformers probe for it that way, and must carry on without it).
    sys.modules["onnxruntime"] = None
    import torch.onnx

    def _traced(*args, **kwargs):  # any tracing at all: the check came too late
        raise SystemExit("traced before the extra was checked")

    torch.onnx.export = _traced
    from ser_models.cli.command import main

    main(["export", f"checkpoint={sys.argv[1]}", f"output={sys.argv[2]}"])
""")


def test_export_without_the_onnx_extra_says_how_to_install_it_before_tracing(tmp_path):
    """Without ONNX Runtime, `ser-models export` prints one `error:` line naming the extra and exits 2, as every
    job does, before it reads or traces the checkpoint; nothing is written."""
    ck = _checkpoint(tmp_path, "tiny-wav2vec2")
    out = tmp_path / "model.onnx"
    done = subprocess.run([sys.executable, "-c", _BLOCK_ORT, ck, str(out)], capture_output=True, text=True,
                          timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "pip install 'ser-models[onnx]'" in lines[0]
    assert "onnxruntime" in lines[0] and not out.exists()


def test_export_keeps_library_warnings_off_the_console_and_in_its_log(tmp_path):
    """torch's TracerWarnings while tracing and ONNX Runtime's quantisation advice go to the log beside the graph
    (named in the report); the console holds the job's own report line alone."""
    import os

    ck = _checkpoint(tmp_path, "tiny-wav2vec2")
    out = tmp_path / "model.int8.onnx"
    done = subprocess.run([sys.executable, "-m", "ser_models", "export", f"checkpoint={ck}", f"output={out}",
                           "quantize=int8"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SER_MODELS_TESTING": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    report = json.loads(done.stdout)
    assert report["log"] == f"{out}.log"
    log = (tmp_path / "model.int8.onnx.log").read_text()
    assert "TracerWarning" in log and "pre-processing before quantization" in log

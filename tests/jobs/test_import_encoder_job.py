"""``python -m jobs.import_encoder`` on the cached pipecat-ai wheel: writes a loadable folder, verifies it
against the ONNX graph, refuses a file that is not the expected wheel with exit code 2."""

from __future__ import annotations

import runpy
import sys

import pytest

from ser_models.encoders import EncoderConfig, build_encoder
from ser_models.encoders.smart_turn import fetch_wheel


def _run(args, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["jobs.import_encoder", *args])
    runpy.run_module("jobs.import_encoder", run_name="__main__")


def test_import_from_local_wheel(smart_turn_dir, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    wheel = fetch_wheel(smart_turn_dir.parents[1], quiet=True)
    out = tmp_path / "enc"
    _run(["smart-turn", str(out), "--source", str(wheel)], monkeypatch)
    printed = capsys.readouterr().out
    assert "imported Smart Turn v3.2" in printed and f"model.encoder.source={out}" in printed
    cosine = float(printed.split("activation quantisation: cosine ")[1].split(";")[0])
    assert cosine >= 0.999
    assert build_encoder(EncoderConfig(source=str(out))).family == "whisper"
    _run(["smart-turn", str(out), "--source", str(wheel), "--no-verify"], monkeypatch)  # reused, not rewritten
    assert "imported" not in capsys.readouterr().out


def test_wrong_file_exits_2(tmp_path, monkeypatch, capsys):
    fake = tmp_path / "pipecat_ai-1.14.0-py3-none-any.whl"
    fake.write_bytes(b"not a wheel")
    with pytest.raises(SystemExit) as exc:
        _run(["smart-turn", str(tmp_path / "enc"), "--source", str(fake)], monkeypatch)
    assert exc.value.code == 2
    assert "refusing to import" in capsys.readouterr().err
    assert not (tmp_path / "enc").exists()

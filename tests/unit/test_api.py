"""``ser_models.load(...).predict``, checkpoints that travel with their encoder, and the test-encoder warning.

No Ray: the checkpoints are tiny models saved as built (seeded); ``tests/jobs/test_python_api.py`` trains one
with ``jobs.finetune`` and compares with ``jobs.predict``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import ser_models
from ser_models.encoders import EncoderConfig, build_encoder
from ser_models.encoders.encoder import FEATURE_CODE_VERSION
from ser_models.exceptions import AudioError, CheckpointError, ConfigError, EncoderMismatchError
from ser_models.models import encoder_reference
from ser_models.models.model import EmotionModel
from ser_models.testing import tiny_model_config

LABELS = ["frustrated", "satisfied", "neutral"]


def _clip(seconds: float = 1.2, sr: int = 8000, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    return (0.2 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
            + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _saved_model(root: Path, preset: str = "tiny-wav2vec2") -> Path:
    """``root/encoder`` (a HF folder) and ``root/run/checkpoint`` of a model over it; returns the run folder."""
    build_encoder(EncoderConfig(source=preset)).hf_model.save_pretrained(root / "encoder")
    torch.manual_seed(0)
    model = EmotionModel(tiny_model_config(str(root / "encoder"), "lora", labels=LABELS, dimensions=["arousal"]))
    model.save_checkpoint(str(root / "run" / "checkpoint"))
    return root / "run"


def _same(a, b) -> None:
    assert a.label == b.label and list(a.probabilities) == list(b.probabilities) == LABELS
    np.testing.assert_allclose(list(a.probabilities.values()), list(b.probabilities.values()), atol=1e-5)
    np.testing.assert_allclose(list(a.dimensions.values()), list(b.dimensions.values()), atol=1e-5)


@pytest.fixture(scope="module")
def wav_8k(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "clip_8k.wav"
    sf.write(path, _clip(), 8000, subtype="PCM_16")
    return path


def test_a_checkpoint_moved_with_its_encoder_predicts_as_before(tmp_path, wav_8k):
    run = _saved_model(tmp_path / "orig")
    before = ser_models.load(run).predict(str(wav_8k))
    meta = json.loads((run / "checkpoint" / "model.json").read_text())
    assert meta["encoder"]["relative_source"] == "../../encoder"
    # The reference names the weights (portable); the fingerprint names the features: weights + feature code.
    assert meta["encoder_fingerprint"] == hashlib.sha256(
        f"{meta['encoder']['fingerprint']};feature_code={FEATURE_CODE_VERSION}".encode()).hexdigest()
    shutil.copytree(tmp_path / "orig", tmp_path / "moved")
    shutil.rmtree(tmp_path / "orig")

    predictor = ser_models.load(tmp_path / "moved" / "run")  # found by the relative path
    assert predictor.model.cfg.encoder.source == str(tmp_path / "moved" / "encoder")
    after = predictor.predict(str(wav_8k))
    _same(before, after)
    assert after.seconds == pytest.approx(1.2) and after.input == str(wav_8k)
    # The same audio as an 8 kHz array, alone and in a list.
    wav, sr = sf.read(wav_8k, dtype="float32")
    _same(predictor.predict(wav, sample_rate=sr), before)
    many = predictor.predict([str(wav_8k), torch.from_numpy(wav)], sample_rate=sr)
    assert [p.input for p in many] == [str(wav_8k), "array[1]"]
    _same(many[1], before)
    # Re-saved, the checkpoint records where its encoder is now.
    predictor.model.save_checkpoint(str(tmp_path / "again"))
    again = json.loads((tmp_path / "again" / "model.json").read_text())["encoder"]
    assert again["source"] == str(tmp_path / "moved" / "encoder")


def test_encoder_source_finds_an_encoder_moved_elsewhere_and_a_wrong_one_is_named(tmp_path, wav_8k):
    run = _saved_model(tmp_path / "orig")
    before = ser_models.load(run).predict(str(wav_8k))
    expected = json.loads((run / "checkpoint" / "model.json").read_text())["encoder"]["fingerprint"]
    shutil.copytree(run / "checkpoint", tmp_path / "ckpt")
    shutil.copytree(tmp_path / "orig" / "encoder", tmp_path / "models" / "w2v")
    shutil.rmtree(tmp_path / "orig")

    with pytest.raises(EncoderMismatchError) as err:
        ser_models.load(tmp_path / "ckpt")
    message = str(err.value)
    assert expected[:12] in message and "encoder_source=" in message
    assert f"{tmp_path.parent / 'encoder'}: does not exist" in message  # ckpt/../../encoder
    assert f"{tmp_path / 'orig' / 'encoder'}: does not exist" in message  # the configured source

    _same(ser_models.load(tmp_path / "ckpt", encoder_source=str(tmp_path / "models" / "w2v")).predict(str(wav_8k)),
          before)
    model = EmotionModel.load_checkpoint(str(tmp_path / "ckpt"), encoder_source=str(tmp_path / "models" / "w2v"))
    assert model.cfg.encoder.source == str(tmp_path / "models" / "w2v")

    # Another encoder (same architecture, other weights) is refused, naming both fingerprints.
    build_encoder(EncoderConfig(source="tiny-hubert")).hf_model.save_pretrained(tmp_path / "models" / "other")
    with pytest.raises(EncoderMismatchError) as err:
        ser_models.load(tmp_path / "ckpt", encoder_source=str(tmp_path / "models" / "other"))
    other = build_encoder(EncoderConfig(source=str(tmp_path / "models" / "other"))).portable_fingerprint()
    assert expected[:12] in str(err.value) and f"{tmp_path / 'models' / 'other'}: fingerprint {other[:12]}" in str(err.value)
    assert isinstance(err.value, CheckpointError)


def test_a_checkpoint_written_before_the_encoder_reference_still_loads(tmp_path, wav_8k):
    run = _saved_model(tmp_path / "orig")
    meta_path = run / "checkpoint" / "model.json"
    meta = json.loads(meta_path.read_text())
    before = ser_models.load(run).predict(str(wav_8k))
    del meta["encoder"]  # the format before: the config's absolute source and the plain fingerprint
    meta_path.write_text(json.dumps(meta))
    _same(ser_models.load(run).predict(str(wav_8k)), before)
    shutil.move(str(tmp_path / "orig" / "encoder"), str(tmp_path / "enc"))
    with pytest.raises(EncoderMismatchError, match=meta["encoder_fingerprint"][:12]):
        ser_models.load(run)
    _same(ser_models.load(run, encoder_source=str(tmp_path / "enc")).predict(str(wav_8k)), before)


def test_predict_refuses_what_it_cannot_predict_naming_the_input(tmp_path, wav_8k):
    predictor = ser_models.load(_saved_model(tmp_path))
    with pytest.raises(ConfigError, match="sample_rate"):
        predictor.predict(_clip())
    with pytest.raises(ConfigError, match=r"mono waveform \[T\]"):
        predictor.predict(np.zeros((2, 8000), np.float32), sample_rate=8000)
    with pytest.raises(AudioError, match="array\\[0\\]: 10 samples") as err:
        predictor.predict(np.full(5, 0.1, np.float32), sample_rate=8000)
    assert err.value.reason == "too_short"
    with pytest.raises(AudioError, match="missing_file"):
        predictor.predict(str(tmp_path / "nope.wav"))
    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(8000 * 7, np.float32), 8000)
    predictor.max_minutes = 0.1
    with pytest.raises(AudioError, match=f"{long} is 0.1 min long.*jobs.predict recordings="):
        predictor.predict(str(long))
    # int16 PCM arrays are scaled like the file's samples
    pcm = np.round(_clip() * 32767).astype(np.int16)
    _same(predictor.predict(pcm, sample_rate=8000), predictor.predict(str(wav_8k)))


def test_import_ser_models_stays_cheap_and_exports_load():
    code = ("import sys, ser_models; heavy = [m for m in ('torch', 'transformers', 'ray') if m in sys.modules]; "
            "assert not heavy, heavy; from ser_models import load; assert load.__module__ == 'ser_models.api'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_a_random_test_encoder_is_warned_about_once_outside_tests(monkeypatch, caplog):
    monkeypatch.setattr(encoder_reference, "_warned_test_encoder", False)
    with caplog.at_level(logging.WARNING, logger="ser_models.models.encoder_reference"):
        EmotionModel(tiny_model_config())  # the suite sets SER_MODELS_TESTING: silent
        assert not caplog.records
        monkeypatch.delenv(encoder_reference.TESTING_ENV)
        EmotionModel(tiny_model_config())
        EmotionModel(tiny_model_config("tiny-hubert"))
    assert len(caplog.records) == 1, caplog.records
    text = caplog.records[0].getMessage()
    assert "tiny-wav2vec2 is a random-initialised test encoder" in text and "model.encoder.source" in text

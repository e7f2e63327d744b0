"""Each encoder is fed as it was trained: ``normalize_waveform=auto`` reads the model's files, then its family."""

from __future__ import annotations

import json

import pytest
import torch

from ser_models.encoders import EncoderConfig, build_encoder
from ser_models.encoders.preprocessing import FAMILY_NORMALIZE, resolve_normalize_waveform
from ser_models.encoders.presets import build_tiny
from ser_models.exceptions import EncoderError
from ser_models.testing import random_waveforms


@pytest.mark.parametrize("source, expected", [
    ("tiny-wav2vec2", True), ("tiny-hubert", True), ("tiny-wavlm", True), ("tiny-whisper", False)])
def test_auto_follows_the_family_without_a_preprocessor_file(source, expected):
    enc = build_encoder(EncoderConfig(source=source))
    assert enc.normalize_waveform is expected
    assert "convention" in enc.normalize_reason and f"normalize_waveform={expected}" in repr(enc)


def _saved_model(folder, preset: str, preprocessor: dict | None):
    _, _, model = build_tiny(preset)
    model.save_pretrained(folder)
    if preprocessor is not None:
        (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return folder


@pytest.mark.parametrize("do_normalize", [True, False])
def test_auto_reads_do_normalize_from_the_model_folder(tmp_path, do_normalize):
    # WavLM Base+ ships do_normalize=false although its family's extractor defaults to true.
    folder = _saved_model(tmp_path, "tiny-wavlm", {"feature_extractor_type": "Wav2Vec2FeatureExtractor",
                                                   "do_normalize": do_normalize, "sampling_rate": 16000})
    enc = build_encoder(EncoderConfig(source=str(folder)))
    assert enc.normalize_waveform is do_normalize
    assert "preprocessor_config.json" in enc.normalize_reason


def test_whisper_extractor_config_without_do_normalize_means_no_normalisation(tmp_path):
    # WhisperFeatureExtractor's saved config has no do_normalize key (the Smart Turn import writes one like it).
    folder = _saved_model(tmp_path, "tiny-whisper", {"feature_extractor_type": "WhisperFeatureExtractor",
                                                     "feature_size": 80, "sampling_rate": 16000})
    assert resolve_normalize_waveform("auto", "whisper", str(folder)) == (False, "the whisper family's convention")


def test_an_explicit_setting_wins(tmp_path):
    folder = _saved_model(tmp_path, "tiny-wav2vec2", {"do_normalize": False})
    assert build_encoder(EncoderConfig(source=str(folder), normalize_waveform=True)).normalize_waveform is True
    assert build_encoder(EncoderConfig(source="tiny-whisper", normalize_waveform=True)).normalize_waveform is True


def test_whisper_keeps_loudness_under_auto():
    enc = build_encoder(EncoderConfig(source="tiny-whisper"))
    wavs, lengths = random_waveforms(2, 0.5, seed=3)
    wavs = wavs * torch.tensor([[0.05], [0.8]])
    x, mask = enc.prepare_inputs(wavs, lengths)
    torch.testing.assert_close(x, wavs * mask)  # untouched: a loud and a quiet clip stay different


def test_fingerprint_and_so_the_feature_cache_key_include_the_resolved_setting():
    auto = build_encoder(EncoderConfig(source="tiny-whisper"))
    same = build_encoder(EncoderConfig(source="tiny-whisper", normalize_waveform=False))
    other = build_encoder(EncoderConfig(source="tiny-whisper", normalize_waveform=True))
    assert auto.fingerprint() == same.fingerprint() != other.fingerprint()


def test_unreadable_preprocessor_file_is_named(tmp_path):
    folder = _saved_model(tmp_path, "tiny-wav2vec2", None)
    (folder / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(EncoderError, match="preprocessor_config.json"):
        build_encoder(EncoderConfig(source=str(folder)))


def test_every_supported_family_has_a_convention():
    from ser_models.encoders.presets import TINY_PRESETS

    assert set(TINY_PRESETS.values()) <= set(FAMILY_NORMALIZE)

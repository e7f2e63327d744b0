"""Encoder contract over the tiny presets: shapes, padding, normalisation, checkpoints, fingerprints."""

from __future__ import annotations

import pytest
import torch

from ser_models.encoders import TINY_PRESETS, EncoderConfig, build_encoder, save_encoder_weights
from ser_models.exceptions import CheckpointError, ConfigError, EncoderError
from ser_models.testing import assert_padding_invariant, random_waveforms

PRESETS = sorted(TINY_PRESETS)


@pytest.fixture(scope="module", params=PRESETS)
def encoder(request):
    return build_encoder(EncoderConfig(source=request.param)).eval()


def test_shapes_and_frame_rate(encoder):
    wavs, lengths = random_waveforms(2, 1.0, seed=1)
    with torch.no_grad():
        out = encoder(wavs, lengths)
    assert encoder.family == TINY_PRESETS[encoder.cfg.source]
    assert len(out.hidden_states) == encoder.num_layers == encoder.hf_config.num_hidden_layers + 1
    assert all(h.shape == (2, out.hidden_states[0].shape[1], encoder.hidden_size) for h in out.hidden_states)
    # 1 s at 16 kHz -> 49 frames for wav2vec2-base's conv stack (total stride 320, i.e. 50 frames/s); Whisper
    # counts every started 20 ms (conv2's stride 2 over 10 ms mel frames), so 50.
    expected = 50 if encoder.family == "whisper" else 49
    assert out.frame_lengths[0] == expected == out.hidden_states[0].shape[1]
    assert encoder.frame_rate == 50.0
    assert out.frame_lengths[1] == encoder.frame_lengths(lengths[1:2])[0]


def test_padding_invariance(encoder):
    """A clip's features do not depend on what it is batched with (layer-norm CNN + attention mask)."""
    assert_padding_invariant(encoder)


def test_garbage_in_padding_is_ignored(encoder):
    wavs, lengths = random_waveforms(2, 0.5, seed=3)
    noisy = wavs.clone()
    noisy[1, int(lengths[1]):] = 5.0
    with torch.no_grad():
        a, b = encoder(wavs, lengths), encoder(noisy, lengths)
    n = int(a.frame_lengths[1])
    torch.testing.assert_close(a.hidden_states[-1][1, :n], b.hidden_states[-1][1, :n])


def test_prepare_inputs_normalises_valid_samples_only():
    enc = build_encoder(EncoderConfig(source="tiny-wav2vec2"))
    wavs, lengths = random_waveforms(3, 0.5, seed=4)
    wavs = wavs * 7 + 3 * (torch.arange(wavs.shape[1])[None] < lengths[:, None])
    x, mask = enc.prepare_inputs(wavs, lengths)
    for i, n in enumerate(lengths.tolist()):
        assert x[i, :n].mean().abs() < 1e-4
        assert abs(float(x[i, :n].std(unbiased=False)) - 1) < 1e-3
        assert bool((x[i, n:] == 0).all()) and int(mask[i].sum()) == n
    raw = build_encoder(EncoderConfig(source="tiny-wav2vec2", normalize_waveform=False))
    x_raw, _ = raw.prepare_inputs(wavs, lengths)
    torch.testing.assert_close(x_raw[0], wavs[0])


def test_bad_inputs_raise():
    enc = build_encoder(EncoderConfig(source="tiny-hubert"))
    with pytest.raises(EncoderError, match="receptive field"):
        enc(torch.zeros(1, 200), torch.tensor([200]))
    with pytest.raises(EncoderError, match="exceeds"):
        enc(torch.zeros(1, 800), torch.tensor([900]))
    with pytest.raises(EncoderError, match=r"\[B, T\]"):
        enc(torch.zeros(800), torch.tensor([800]))


def test_layerdrop_forced_to_zero_and_pretraining_compatible():
    from transformers import Wav2Vec2ForPreTraining

    enc = build_encoder(EncoderConfig(source="tiny-wav2vec2"))
    assert enc.hf_config.layerdrop == 0.0 == enc.hf_model.config.layerdrop
    # TAPT builds the pre-training model from our config and copies the encoder weights into it.
    pt = Wav2Vec2ForPreTraining(enc.hf_config)
    pt.wav2vec2.load_state_dict(enc.hf_model.state_dict(), strict=True)
    assert pt.quantizer.codevectors.shape[1] == 2 * 16


def test_fingerprint_is_deterministic_and_tracks_weights(tmp_path):
    torch.manual_seed(123)  # the preset's init must not depend on the caller's RNG
    a = build_encoder(EncoderConfig(source="tiny-wavlm"))
    torch.manual_seed(456)
    b = build_encoder(EncoderConfig(source="tiny-wavlm"))
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != build_encoder(EncoderConfig(source="tiny-hubert")).fingerprint()
    with torch.no_grad():
        b.hf_model.encoder.layers[0].feed_forward.output_dense.bias.add_(0.5)
    path = tmp_path / "tapt.safetensors"
    save_encoder_weights(b, str(path))
    c = build_encoder(EncoderConfig(source="tiny-wavlm", checkpoint=str(path)))
    assert c.fingerprint() != a.fingerprint()
    torch.testing.assert_close(c.hf_model.encoder.layers[0].feed_forward.output_dense.bias,
                               b.hf_model.encoder.layers[0].feed_forward.output_dense.bias)


def test_checkpoint_mismatch_names_file(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "bad.safetensors"
    save_file({"not.a.key": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="bad.safetensors") as err:
        build_encoder(EncoderConfig(source="tiny-wav2vec2", checkpoint=str(path)))
    assert "not.a.key" in str(err.value)
    with pytest.raises(CheckpointError, match="missing.safetensors"):
        build_encoder(EncoderConfig(source="tiny-wav2vec2", checkpoint=str(tmp_path / "missing.safetensors")))


def test_local_folder_source_matches_preset(tmp_path):
    enc = build_encoder(EncoderConfig(source="tiny-hubert"))
    enc.hf_model.save_pretrained(tmp_path / "hub")
    local = build_encoder(EncoderConfig(source=str(tmp_path / "hub")))
    assert local.family == "hubert"
    wavs, lengths = random_waveforms(2, 0.5, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(local(wavs, lengths).hidden_states[-1], enc(wavs, lengths).hidden_states[-1])


def test_missing_hub_model_explains_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache: nothing can be found offline
    with pytest.raises(EncoderError, match="allow_download"):
        build_encoder(EncoderConfig(source="some-org/not-a-cached-model"))
    with pytest.raises(EncoderError, match="does not exist"):
        build_encoder(EncoderConfig(source=str(tmp_path / "nope")))


@pytest.mark.parametrize("kwargs, key", [
    (dict(source=""), "model.encoder.source"),
    (dict(checkpoint=" "), "model.encoder.checkpoint"),
    (dict(normalize_waveform="yes"), "model.encoder.normalize_waveform"),
])
def test_config_errors_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        EncoderConfig(**kwargs)

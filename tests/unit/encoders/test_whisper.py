"""The Whisper family on its tiny preset: log-mel front end, windows, padding, folders, adapters, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor

from ser_models.adapters import AdapterConfig
from ser_models.encoders import EncoderConfig, build_encoder
from ser_models.encoders.presets import tiny_config
from ser_models.encoders.whisper import log_mel_spectrogram, whisper_mel_filters
from ser_models.exceptions import ConfigError, EncoderError
from ser_models.models.model import EmotionModel, ModelConfig
from ser_models.pretraining.tapt_config import TaptConfig
from ser_models.testing import random_waveforms


@pytest.fixture(scope="module")
def encoder():
    return build_encoder(EncoderConfig(source="tiny-whisper")).eval()


def test_log_mel_matches_whisper_feature_extractor():
    wavs, _ = random_waveforms(2, 2.0, seed=5, min_fraction=1.0)
    fe = WhisperFeatureExtractor(feature_size=80, chunk_length=2)
    ref = fe(list(wavs.numpy()), sampling_rate=16_000, return_tensors="np", padding="max_length").input_features
    ours = log_mel_spectrogram(wavs, whisper_mel_filters(80)).numpy()
    assert ours.shape == ref.shape == (2, 80, 200)
    np.testing.assert_allclose(ours, ref, atol=2e-4)


def test_windows_cover_short_and_long_clips(encoder):
    """The tiny preset's window is 2 s: 0.7 s is padded into one window, 5.3 s spans three."""
    assert encoder.window_samples == 32_000
    wavs, lengths = random_waveforms(2, 5.3, seed=6)
    lengths[1] = int(0.7 * 16_000)
    with torch.no_grad():
        out = encoder(wavs, lengths)
    assert out.frame_lengths.tolist() == [265, 35]  # every started 20 ms
    assert all(h.shape == (2, 265, 64) for h in out.hidden_states)
    assert len(out.hidden_states) == 5


def test_long_clip_is_encoded_window_by_window(encoder):
    """Frames of the second window equal that window encoded alone: chunking, not cropping."""
    wavs, lengths = random_waveforms(1, 3.0, seed=7, min_fraction=1.0)
    with torch.no_grad():
        x, _ = encoder.prepare_inputs(wavs, lengths)  # normalised over the whole clip, as forward does
        whole = encoder(wavs, lengths).hidden_states[-1][0]
        cfg = EncoderConfig(source="tiny-whisper", normalize_waveform=False)
        plain = build_encoder(cfg).eval()
        second = plain(x[:, 32_000:], torch.tensor([16_000])).hidden_states[-1][0]
    torch.testing.assert_close(whole[100:150], second[:50], atol=1e-5, rtol=1e-5)


def test_padding_and_batch_invariance(encoder):
    wavs, lengths = random_waveforms(3, 4.5, seed=8, min_fraction=0.1)
    noisy = wavs.clone()
    noisy[2, int(lengths[2]):] = 3.0
    with torch.no_grad():
        batched = encoder(noisy, lengths)
        alone = encoder(wavs[2:, : int(lengths[2])], lengths[2:])
    n = int(alone.frame_lengths[0])
    for hb, ha in zip(batched.hidden_states, alone.hidden_states):
        torch.testing.assert_close(hb[2, :n], ha[0, :n], atol=1e-5, rtol=1e-5)


def _whisper_folder(tmp_path, prefix: str):
    """A Whisper checkpoint folder as transformers writes one, encoder keys under ``prefix``."""
    from safetensors.torch import save_file

    ref = build_encoder(EncoderConfig(source="tiny-whisper"))
    cfg: WhisperConfig = tiny_config("tiny-whisper")
    cfg.save_pretrained(tmp_path)
    state = {f"{prefix}{k}": v.contiguous() for k, v in ref.hf_model.state_dict().items()}
    state["model.decoder.layer_norm.weight"] = torch.ones(64)  # a seq2seq checkpoint's other half is ignored
    save_file(state, str(tmp_path / "model.safetensors"))
    return ref


@pytest.mark.parametrize("prefix", ["model.encoder.", "encoder.", ""])
def test_loads_whisper_folders(tmp_path, prefix):
    ref = _whisper_folder(tmp_path, prefix)
    enc = build_encoder(EncoderConfig(source=str(tmp_path)))
    assert enc.family == "whisper" and enc.num_layers == 5
    for k, v in ref.hf_model.state_dict().items():
        torch.testing.assert_close(enc.hf_model.state_dict()[k], v)


def test_incomplete_folder_is_refused(tmp_path):
    from safetensors.torch import save_file

    tiny_config("tiny-whisper").save_pretrained(tmp_path)
    save_file({"model.encoder.conv1.weight": torch.zeros(64, 80, 3)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(EncoderError, match="lacks .* Whisper encoder tensors"):
        build_encoder(EncoderConfig(source=str(tmp_path)))


def test_tapt_of_whisper_is_the_adapter_pretraining():
    assert TaptConfig().resolve_objective("whisper") == "adapter"
    with pytest.raises(ConfigError, match="tapt.objective=adapter"):
        TaptConfig(objective="masked_prediction").resolve_objective("whisper")


@pytest.mark.parametrize("kind", ["lora", "ia3", "full"])
def test_emotion_model_checkpoint_round_trip(tmp_path, kind):
    cfg = ModelConfig(encoder=EncoderConfig(source="tiny-whisper"), adapter=AdapterConfig(kind=kind),
                      pooling="attentive_stats")
    model = EmotionModel(cfg)
    report = model.check_gradients(seconds=2.5)  # longer than one window: both windows on the gradient path
    assert report["checked"] == len(list(model.trainable_parameters()))
    with torch.no_grad():  # move every trainable weight so that a reload that drops one would show
        for p in model.trainable_parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save_checkpoint(str(tmp_path))
    loaded = EmotionModel.load_checkpoint(str(tmp_path)).eval()
    model.eval()
    wavs, lengths = random_waveforms(2, 2.5, seed=9)
    with torch.no_grad():
        torch.testing.assert_close(loaded(wavs, lengths).logits, model(wavs, lengths).logits)


def test_limit_depth_computes_the_first_states_exactly_as_the_whole_encoder():
    from ser_models.scoring.cache_keys import cache_states

    full = build_encoder(EncoderConfig(source="tiny-whisper")).eval()
    part = build_encoder(EncoderConfig(source="tiny-whisper")).eval()
    total = full.num_layers
    assert total >= 3
    assert part.limit_depth(2) and part.num_layers == 2
    wavs, lengths = random_waveforms(3, seed=4)
    with torch.no_grad():
        a, b = full(wavs, lengths), part(wavs, lengths)
    assert len(b.hidden_states) == 2
    for i in range(2):  # bit for bit: the dropped layers and closing norm never touch these states
        assert torch.equal(a.hidden_states[i], b.hidden_states[i])
    assert torch.equal(a.frame_lengths, b.frame_lengths)
    # Nothing to drop (the top) or nothing left (state 0 alone): the encoder stays whole.
    other = build_encoder(EncoderConfig(source="tiny-whisper"))
    assert not other.limit_depth(total) and not other.limit_depth(1) and other.num_layers == total
    wav2vec2 = build_encoder(EncoderConfig(source="tiny-wav2vec2"))
    assert not wav2vec2.limit_depth(2) and wav2vec2.num_layers > 2

    def model(layer, pooling="mean"):
        return ModelConfig(encoder=EncoderConfig(source="tiny-whisper"), featurizer_layer=layer, pooling=pooling,
                           adapter=AdapterConfig(kind="frozen"))

    assert cache_states(model(1), full) == 2
    assert cache_states(model(-total + 1), full) == 2  # a negative layer counts from the top
    assert cache_states(model(1), full, "all") is None
    assert cache_states(model(None), full) is None  # a learned layer mix reads every state
    assert cache_states(model(total - 1), full) is None  # the top layer: nothing to skip
    assert cache_states(model(1, "attentive_stats"), full) is None  # the frame cache keeps every state
    assert cache_states(dataclasses_replace_encoder(model(1), "tiny-wav2vec2"), wav2vec2) is None


def dataclasses_replace_encoder(cfg, source):
    import dataclasses

    return dataclasses.replace(cfg, encoder=EncoderConfig(source=source))

"""``model.encoder.whisper_windows=trim`` on the tiny Whisper preset (2 s windows, 50-frame = 1 s buckets)."""

from __future__ import annotations

import pytest
import torch

from ser_models.adapters import AdapterConfig
from ser_models.encoders import EncoderConfig, build_encoder
from ser_models.encoders import whisper_windows as ww
from ser_models.exceptions import ConfigError
from ser_models.models.model import EmotionModel, ModelConfig
from ser_models.testing import random_waveforms

WINDOW = 32_000  # the tiny preset's window: 100 frames, 2 s


def _encoder(windows: str, **kw):
    return build_encoder(EncoderConfig(source="tiny-whisper", whisper_windows=windows, **kw)).eval()


@pytest.fixture(scope="module")
def full():
    return _encoder("full")


@pytest.fixture(scope="module")
def trim():
    return _encoder("trim")


def _first_layer_inputs(encoder, wavs, lengths) -> list[tuple[int, ...]]:
    """Shapes of the hidden states the first transformer layer received during one forward."""
    seen = []
    hook = encoder.hf_model.layers[0].register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    try:
        with torch.no_grad():
            encoder(wavs, lengths)
    finally:
        hook.remove()
    return seen


def test_config_is_validated_and_named():
    with pytest.raises(ConfigError, match="model.encoder.whisper_windows"):
        EncoderConfig(whisper_windows="crop")
    for bad in (0.0, -1.0, True, "1", 0.01):
        with pytest.raises(ConfigError, match="model.encoder.whisper_trim_seconds"):
            EncoderConfig(whisper_windows="trim", whisper_trim_seconds=bad)
    assert EncoderConfig().whisper_windows == "full"


def test_window_frames_trim_only_the_last_window():
    assert ww.window_frames([16_000, 14_000, 32_000, 84_800, 1], window=100, bucket=50) == [
        [50], [50], [100], [100, 100, 100], [50]]
    assert ww.window_frames([14_000], window=100, bucket=1) == [[44]]  # every started 20 ms
    assert ww.window_frames([14_000], window=100, bucket=500) == [[100]]  # a bucket past the window: no trim


def test_a_clip_of_whole_windows_is_the_same_in_both_modes(full, trim):
    wavs, lengths = random_waveforms(2, 3 * WINDOW / 16_000, seed=11, min_fraction=1.0)
    lengths[1] = WINDOW  # exactly one window
    with torch.no_grad():
        a, b = full(wavs, lengths), trim(wavs, lengths)
    assert torch.equal(a.frame_lengths, b.frame_lengths) and a.frame_lengths.tolist() == [300, 100]
    for ha, hb in zip(a.hidden_states, b.hidden_states):
        assert ha.shape == hb.shape == (2, 300, 64)
        torch.testing.assert_close(hb, ha, atol=1e-6, rtol=1e-6)


def test_trimmed_windows_are_shorter(full, trim):
    """The first layer sees one window per clip: 100 frames in full mode, 50 (0.7 s rounded up to 1 s) in trim
    mode; a batch with a 1.3 s clip runs two groups, 50 and 100 frames."""
    wavs, lengths = random_waveforms(1, 0.7, seed=12, min_fraction=1.0)
    assert _first_layer_inputs(full, wavs, lengths) == [(1, 100, 64)]
    assert _first_layer_inputs(trim, wavs, lengths) == [(1, 50, 64)]
    wavs, lengths = random_waveforms(3, 1.3, seed=13, min_fraction=1.0)
    lengths[1], lengths[2] = int(0.4 * 16_000), int(1.1 * 16_000)
    assert _first_layer_inputs(trim, wavs, lengths) == [(1, 50, 64), (2, 100, 64)]
    with torch.no_grad():
        out = trim(wavs, lengths)
    assert all(h.shape == (3, 65, 64) for h in out.hidden_states)


def test_trimmed_features_do_not_depend_on_the_batch(trim):
    """A 0.7 s clip alone, then beside a 5.3 s (three windows) and a 0.3 s clip, with garbage in its padding."""
    wavs, lengths = random_waveforms(3, 5.3, seed=14, min_fraction=1.0)
    lengths[1], lengths[2] = int(0.7 * 16_000), int(0.3 * 16_000)
    noisy = wavs.clone()
    noisy[1, int(lengths[1]):] = 3.0
    with torch.no_grad():
        batched = trim(noisy, lengths)
        alone = trim(wavs[1:2, : int(lengths[1])], lengths[1:2])
    n = int(alone.frame_lengths[0])
    assert n == 35
    for hb, ha in zip(batched.hidden_states, alone.hidden_states):
        torch.testing.assert_close(hb[1, :n], ha[0, :n], atol=1e-5, rtol=1e-5)


def test_a_clip_longer_than_a_window_is_chunked_then_trimmed(full, trim):
    """2.5 s: frames 0-99 are a whole window (as in full mode); frames 100-124 are the last 0.5 s encoded in a
    50-frame window, as the same audio alone would be."""
    wavs, lengths = random_waveforms(1, 2.5, seed=15, min_fraction=1.0)
    with torch.no_grad():
        a, b = full(wavs, lengths), trim(wavs, lengths)
        tail = trim(wavs[:, WINDOW:], lengths - WINDOW)
    assert b.frame_lengths.tolist() == [125] and b.hidden_states[-1].shape == (1, 125, 64)
    for ha, hb, ht in zip(a.hidden_states, b.hidden_states, tail.hidden_states):
        torch.testing.assert_close(hb[:, :100], ha[:, :100], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(hb[:, 100:], ht[:, :25], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a.hidden_states[-1][:, 100:], b.hidden_states[-1][:, 100:], atol=1e-3)


def test_limit_depth_keeps_the_first_states_in_trim_mode(trim):
    part = _encoder("trim")
    assert part.limit_depth(2)
    wavs, lengths = random_waveforms(3, 3.1, seed=16)
    with torch.no_grad():
        a, b = trim(wavs, lengths), part(wavs, lengths)
    assert len(b.hidden_states) == 2
    for i in range(2):
        torch.testing.assert_close(b.hidden_states[i], a.hidden_states[i], atol=1e-6, rtol=1e-6)


def test_gradient_checkpointing_recomputes_the_layers():
    """HF's layers checkpoint when called directly: the first layer's fc1 runs again in backward."""
    wavs, lengths = random_waveforms(1, 1.3, seed=17, min_fraction=1.0)
    calls, grads = {}, {}
    for ckpt in (False, True):
        enc = _encoder("trim", gradient_checkpointing=ckpt).train()
        calls[ckpt] = 0

        def count(*_, ckpt=ckpt):
            calls[ckpt] += 1

        enc.hf_model.layers[0].fc1.register_forward_hook(count)
        enc(wavs, lengths).hidden_states[-1].pow(2).sum().backward()
        grads[ckpt] = enc.hf_model.layers[0].fc1.weight.grad.clone()
    assert calls == {False: 1, True: 2}
    torch.testing.assert_close(grads[True], grads[False])


def _lora_model(windows: str) -> EmotionModel:
    model = EmotionModel(ModelConfig(encoder=EncoderConfig(source="tiny-whisper", whisper_windows=windows),
                                     adapter=AdapterConfig(kind="lora", dropout=0.3)))
    with torch.no_grad():  # LoRA's B starts at zero, which would hide its dropout masks
        gen = torch.Generator().manual_seed(0)
        for p in model.trainable_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


@pytest.mark.parametrize("windows", ["full", "trim"])
def test_mc_dropout_row_seeds_follow_the_clip(windows):
    """A 2.5 s clip (two windows: two rows of the encoder's batch) gets the same MC sample alone as beside
    shorter clips: LoRA's dropout hooks inside the encoder see each window's own clip seed."""
    model = _lora_model(windows)
    wavs, lengths = random_waveforms(3, 2.5, seed=18, min_fraction=1.0)
    lengths[0], lengths[2] = int(0.7 * 16_000), int(1.3 * 16_000)
    with torch.no_grad():
        with model.mc_dropout(row_seeds=[5, 6, 7]):
            batched = model(wavs, lengths).logits
        with model.mc_dropout(row_seeds=[6]):
            alone = model(wavs[1:2], lengths[1:2]).logits
        with model.mc_dropout(row_seeds=[8]):
            other = model(wavs[1:2], lengths[1:2]).logits
    torch.testing.assert_close(batched[1:2], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(alone, other, atol=1e-4)  # the masks matter: another seed, another sample


def test_trim_mode_names_its_own_feature_cache(full, trim):
    """Trimmed windows give other features, so another fingerprint (what ``feature_cache_key`` hashes); full
    mode keeps the fingerprint it had, and the weights' portable name ignores the mode."""
    assert full.fingerprint() == build_encoder(EncoderConfig(source="tiny-whisper")).fingerprint()
    assert trim.fingerprint() != full.fingerprint()
    assert _encoder("trim", whisper_trim_seconds=0.5).fingerprint() != trim.fingerprint()
    assert _encoder("full", whisper_trim_seconds=0.5).fingerprint() == full.fingerprint()
    assert trim.portable_fingerprint() == full.portable_fingerprint()


def test_other_families_ignore_the_key():
    plain = build_encoder(EncoderConfig(source="tiny-wav2vec2")).eval()
    keyed = build_encoder(EncoderConfig(source="tiny-wav2vec2", whisper_windows="trim")).eval()
    assert keyed.fingerprint() == plain.fingerprint()
    wavs, lengths = random_waveforms(2, 1.0, seed=19)
    with torch.no_grad():
        assert torch.equal(keyed(wavs, lengths).hidden_states[-1], plain(wavs, lengths).hidden_states[-1])


def test_the_log_mel_stays_float32_under_bf16_autocast():
    from ser_models.encoders.whisper_windows import log_mel_spectrogram, whisper_mel_filters

    wavs = 0.1 * torch.randn(2, 3200)
    filters = whisper_mel_filters(80)
    plain = log_mel_spectrogram(wavs, filters)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = log_mel_spectrogram(wavs, filters)
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, plain)

"""Bottleneck adapters, layer gates and the embedding prompt (``model.adapter.add``), alone and combined with
LoRA / IA3 / full."""

from __future__ import annotations

import copy

import pytest
import torch

from ser_models.adapters import AdapterConfig, apply_adapter, check_gradients, parameter_report
from ser_models.adapters.bottleneck import BottleneckAdapter, LayerGate, transformer_layers
from ser_models.encoders import EncoderConfig, build_encoder
from ser_models.exceptions import AdapterError, ConfigError
from ser_models.models.model import EmotionModel
from ser_models.scoring.cache_keys import cache_supported
from ser_models.testing import assert_padding_invariant, random_waveforms, tiny_model_config

FAMILIES = ["tiny-wav2vec2", "tiny-hubert", "tiny-wavlm", "tiny-whisper"]
BOTH = ["bottleneck", "gating"]


def _adapted(source, **kw):
    return apply_adapter(build_encoder(EncoderConfig(source=source)), AdapterConfig(**kw))


def _perturb(module: torch.nn.Module, seed: int = 1) -> None:
    """Move every added weight away from its identity initialisation."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "ser_bottleneck_" in name or "ser_gate" in name or "ser_prompt" in name:
                p.add_(0.5 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("source", FAMILIES)
def test_added_adapters_start_as_the_identity_and_then_change_the_features(source):
    wavs, lengths = random_waveforms(2, 0.5, seed=0)
    plain = _adapted(source, kind="frozen").eval()
    added = _adapted(source, kind="frozen", add=BOTH, gate_per_channel=True).eval()
    assert added.fingerprint() == plain.fingerprint()  # same base weights
    with torch.no_grad():
        before = plain(wavs, lengths).hidden_states
        at_init = added(wavs, lengths).hidden_states
        for a, b in zip(before, at_init):
            torch.testing.assert_close(a, b)
        _perturb(added)
        after = added(wavs, lengths).hidden_states
    assert torch.equal(after[0], before[0])  # the CNN projection is upstream of every layer
    assert all(not torch.allclose(a, b) for a, b in zip(after[1:], before[1:]))


@pytest.mark.parametrize("source", FAMILIES)
@pytest.mark.parametrize("kind", ["lora", "ia3", "frozen", "full"])
def test_every_combination_trains_its_added_weights_and_passes_the_gradient_check(source, kind):
    enc = _adapted(source, kind=kind, add=BOTH, bottleneck_dim=4)
    layers = transformer_layers(enc)
    names = [n for n, p in enc.hf_model.named_parameters() if p.requires_grad]
    per_layer = {"norm.weight", "norm.bias", "down.weight", "down.bias", "up.weight", "up.bias"}
    for i in range(len(layers)):
        for block in ("attention", "feed_forward"):
            got = {n.split(f".ser_bottleneck_{block}.")[1] for n in names if f".{i}.ser_bottleneck_{block}." in n}
            assert got == per_layer, (i, block)
        assert any(n.endswith(f".{i}.ser_gate.logit") for n in names)
    if kind in ("lora", "ia3", "frozen"):  # the base weights stay frozen
        assert all(("ser_" in n) or ("lora_" in n) or ("ia3_l" in n) for n in names)
    wavs, lengths = random_waveforms(2, 0.5, seed=0)
    report = check_gradients(enc, lambda: enc(wavs, lengths).hidden_states[-1].pow(2).mean(), family=enc.family)
    assert report["checked"] == len(names)
    # up (and LoRA's B) start at zero, so only what sits behind them may see an exactly zero gradient
    behind_zero = (".ser_bottleneck_attention.norm.", ".ser_bottleneck_attention.down.",
                   ".ser_bottleneck_feed_forward.norm.", ".ser_bottleneck_feed_forward.down.", "lora_A")
    assert all(any(b in n for b in behind_zero) for n in report["zero_grad"]), report["zero_grad"]


def test_blocks_layers_and_sizes_follow_the_config():
    enc = _adapted("tiny-wav2vec2", kind="frozen", add=["bottleneck"], bottleneck_dim=3,
                   bottleneck_blocks=["feed_forward"], layers_to_transform=[1])
    layers = transformer_layers(enc)
    assert [i for i, layer in enumerate(layers) if hasattr(layer, "ser_bottleneck_feed_forward")] == [1]
    assert not any(hasattr(layer, "ser_bottleneck_attention") or hasattr(layer, "ser_gate") for layer in layers)
    adapter = layers[1].ser_bottleneck_feed_forward
    assert isinstance(adapter, BottleneckAdapter) and adapter.down.out_features == 3
    report = parameter_report(enc)
    d = enc.hidden_size
    assert report["trainable"] == report["by_group"]["adapter"]["trainable"] == 2 * d + (d * 3 + 3) + (3 * d + d)


def test_gate_values_stay_in_zero_two_and_start_at_one():
    gate = LayerGate(8, per_channel=True)
    assert torch.equal(gate.gate(), torch.ones(8))
    with torch.no_grad():
        gate.logit.copy_(torch.tensor([-50.0, 50.0] * 4))
    assert gate.gate().min() >= 0 and gate.gate().max() <= 2


def test_checkpoint_holds_the_added_weights_and_reloads_to_identical_outputs(tmp_path):
    model = EmotionModel(tiny_model_config(add=[*BOTH, "prompt"], bottleneck_dim=4, prompt_length=3,
                                           labels=["a", "b", "c"]))
    _perturb(model)
    model.save_checkpoint(str(tmp_path))
    saved = set(model.trainable_state_dict())
    assert any(".ser_bottleneck_attention." in n for n in saved) and any(".ser_gate." in n for n in saved)
    assert "encoder.hf_model.encoder.ser_prompt.vectors" in saved
    assert not any(n.endswith(".attention.q_proj.weight") for n in saved)  # trainable weights only
    again = EmotionModel.load_checkpoint(str(tmp_path))
    wavs, lengths = random_waveforms(2, 0.5, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(again(wavs, lengths).logits, model.eval()(wavs, lengths).logits, rtol=0, atol=0)


def test_a_deep_copy_hooks_its_own_adapters():
    # Ray and the training loop copy models: a copy's hooks must run the copy's adapters, not the original's.
    enc = _adapted("tiny-hubert", kind="frozen", add=[*BOTH, "prompt"]).eval()
    twin = copy.deepcopy(enc)
    wavs, lengths = random_waveforms(1, 0.5, seed=0)
    with torch.no_grad():
        before = enc(wavs, lengths).hidden_states[-1]
        _perturb(twin)
        torch.testing.assert_close(enc(wavs, lengths).hidden_states[-1], before, rtol=0, atol=0)
        assert not torch.allclose(twin(wavs, lengths).hidden_states[-1], before)


@pytest.mark.parametrize("kwargs, match", [
    ({"add": ["prefix"]}, "model.adapter.add must list distinct names"),
    ({"add": ["gating", "gating"]}, "model.adapter.add must list distinct names"),
    ({"bottleneck_dim": 0}, "model.adapter.bottleneck_dim"),
    ({"bottleneck_blocks": ["mlp"]}, "model.adapter.bottleneck_blocks"),
    ({"bottleneck_scale": -1.0}, "model.adapter.bottleneck_scale"),
    ({"gate_per_channel": "yes"}, "model.adapter.gate_per_channel"),
    ({"prompt_length": 0}, "model.adapter.prompt_length"),
])
def test_config_errors_name_the_key(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AdapterConfig(**kwargs)


def test_layers_out_of_range_are_refused_with_the_range():
    with pytest.raises(AdapterError, match=r"layers \[5\] do not exist .*0\.\.3"):
        _adapted("tiny-wav2vec2", kind="frozen", add=["gating"], layers_to_transform=[5])


def test_the_frozen_feature_cache_refuses_added_adapters():
    assert cache_supported(tiny_model_config(adapter="frozen")) is None
    assert "model.adapter.add=['gating']" in cache_supported(tiny_model_config(adapter="frozen", add=["gating"]))


PROMPT_FAMILIES = ["tiny-wav2vec2", "tiny-hubert", "tiny-wavlm"]


@pytest.mark.parametrize("source", PROMPT_FAMILIES)
def test_the_prompt_acts_through_attention_and_leaves_frames_and_lengths_alone(source):
    wavs, lengths = random_waveforms(2, 0.8, seed=2, min_fraction=0.4)
    plain = _adapted(source, kind="frozen").eval()
    prompted = _adapted(source, kind="frozen", add=["prompt"], prompt_length=5).eval()
    with torch.no_grad():
        a, b = plain(wavs, lengths), prompted(wavs, lengths)
    assert torch.equal(a.frame_lengths, b.frame_lengths)
    assert [h.shape for h in a.hidden_states] == [h.shape for h in b.hidden_states]
    assert not torch.allclose(a.hidden_states[-1], b.hidden_states[-1])
    names = [n for n, p in prompted.hf_model.named_parameters() if p.requires_grad]
    assert names == ["encoder.ser_prompt.vectors"]
    check_gradients(prompted, lambda: prompted(wavs, lengths).hidden_states[-1].pow(2).mean())


@pytest.mark.parametrize("source", PROMPT_FAMILIES)
def test_prompted_features_do_not_depend_on_batch_padding(source):
    # The prompt's frames are added to the attention mask as valid: a clip batched with a longer one must
    # still see the same prompt and none of the padding.
    enc = _adapted(source, kind="frozen", add=["prompt"], prompt_length=4).eval()
    _perturb(enc)
    assert_padding_invariant(enc)


def test_whisper_refuses_a_prompt_by_name():
    with pytest.raises(AdapterError, match=r"model.adapter.add=\[prompt\] needs a wav2vec2/hubert/wavlm encoder"):
        _adapted("tiny-whisper", kind="lora", add=["prompt"])

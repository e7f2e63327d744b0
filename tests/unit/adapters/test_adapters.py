"""Table-driven adapter tests over the tiny encoders: what trains, what gets a gradient, what fails loudly."""

from __future__ import annotations

import pytest
import torch

from ser_models.adapters import AdapterConfig, apply_adapter, check_gradients, parameter_report
from ser_models.encoders import EncoderConfig, build_encoder
from ser_models.exceptions import AdapterError, ConfigError, GradientCheckError
from ser_models.testing import random_waveforms

FAMILIES = ["tiny-wav2vec2", "tiny-hubert", "tiny-wavlm", "tiny-whisper"]
KINDS = ["lora", "ia3", "frozen", "full"]


def _adapted(source, **kw):
    return apply_adapter(build_encoder(EncoderConfig(source=source)), AdapterConfig(**kw))


def _loss_fn(enc):
    wavs, lengths = random_waveforms(2, 0.5, seed=0)
    return lambda: enc(wavs, lengths).hidden_states[-1].pow(2).mean()


@pytest.mark.parametrize("source", FAMILIES)
@pytest.mark.parametrize("kind", KINDS)
def test_trainable_set_and_gradients(source, kind):
    enc = _adapted(source, kind=kind)
    trainable = [n for n, p in enc.hf_model.named_parameters() if p.requires_grad]
    if kind in ("lora", "ia3"):
        marker = "lora_" if kind == "lora" else "ia3_l"
        assert trainable and all(marker in n for n in trainable)
        targets = {"tiny-wavlm": ("intermediate_dense", "output_dense"),
                   "tiny-whisper": ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2") if kind == "lora"
                   else ("k_proj", "v_proj", "fc2")}.get(
            source, ("q_proj", "k_proj", "v_proj", "out_proj") if kind == "lora" else ("k_proj", "v_proj", "output_dense"))
        assert {n.split(f".{marker}")[0].rsplit(".", 1)[-1] for n in trainable} == set(targets)
    elif kind == "frozen":
        assert trainable == []
        return
    elif source == "tiny-whisper":
        assert not any(n.startswith(("conv1.", "conv2.", "embed_positions.")) for n in trainable)
        assert any(n.startswith("layers.0.fc1.") for n in trainable)
    else:
        assert not any(n.startswith("feature_extractor.") for n in trainable)
        assert any(n.startswith("feature_projection.") for n in trainable)
    report = check_gradients(enc, _loss_fn(enc), family=enc.family)
    assert report["checked"] == len(trainable)
    assert all(p.grad is None for p in enc.parameters())  # the check leaves no gradients behind


def test_lora_zero_init_b_means_zero_grad_on_a_is_allowed():
    enc = _adapted("tiny-wav2vec2", kind="lora")
    report = check_gradients(enc, _loss_fn(enc))
    assert report["zero_grad"] and all("lora_A" in n for n in report["zero_grad"])


def test_full_can_train_the_cnn():
    enc = _adapted("tiny-hubert", kind="full", freeze_feature_encoder=False)
    assert all(p.requires_grad for n, p in enc.hf_model.named_parameters() if n.startswith("feature_extractor."))
    check_gradients(enc, _loss_fn(enc))


@pytest.mark.parametrize("kind, targets", [("lora", ["q_proj", "k_proj", "v_proj", "out_proj"]),
                                           ("ia3", ["k_proj", "v_proj", "output_dense"])])
def test_wavlm_attention_trap_is_caught(kind, targets):
    """transformers 5.x WavLM still feeds raw q/k/v/out weights to a fused kernel: adapters there get no grad."""
    enc = _adapted("tiny-wavlm", kind=kind, target_modules=targets)
    with pytest.raises(GradientCheckError, match="intermediate_dense") as err:
        check_gradients(enc, _loss_fn(enc), family="wavlm")
    assert "attention.k_proj" in str(err.value)


def test_same_targets_work_on_wav2vec2():
    enc = _adapted("tiny-wav2vec2", kind="lora", target_modules=["q_proj", "k_proj", "v_proj", "out_proj"])
    check_gradients(enc, _loss_fn(enc), family="wav2vec2")


def test_unknown_target_lists_available_modules():
    with pytest.raises(AdapterError, match="intermediate_dense") as err:
        _adapted("tiny-wav2vec2", kind="lora", target_modules=["query"])
    assert "query" in str(err.value) and "model.adapter.target_modules" in str(err.value)


def test_layers_to_transform():
    enc = _adapted("tiny-hubert", kind="lora", layers_to_transform=[1, 3])
    layers = {int(n.split(".")[2]) for n, p in enc.hf_model.named_parameters() if p.requires_grad}
    assert layers == {1, 3}
    with pytest.raises(AdapterError, match="layers_to_transform"):
        _adapted("tiny-hubert", kind="lora", layers_to_transform=[4])


def test_parameter_report_counts():
    enc = _adapted("tiny-wav2vec2", kind="lora", r=4)
    rep = parameter_report(enc)
    assert rep["total"] == sum(p.numel() for p in enc.parameters())
    # 4 layers x 4 projections x (A: 4x64 + B: 64x4)
    assert rep["trainable"] == rep["by_group"]["adapter"]["trainable"] == 4 * 4 * 2 * 4 * 64
    assert rep["by_group"]["encoder.cnn"]["trainable"] == 0 and 0 < rep["fraction"] < 0.2


@pytest.mark.parametrize("kwargs, key", [
    (dict(kind="prefix"), "model.adapter.kind"),
    (dict(r=0), "model.adapter.r"),
    (dict(alpha=-1), "model.adapter.alpha"),
    (dict(dropout=1.0), "model.adapter.dropout"),
    (dict(target_modules=[]), "model.adapter.target_modules"),
    (dict(layers_to_transform=[-1]), "model.adapter.layers_to_transform"),
    (dict(kind="ia3", target_modules=["k_proj"], feedforward_modules=["output_dense"]),
     "model.adapter.feedforward_modules"),
])
def test_config_errors_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        AdapterConfig(**kwargs)


def test_gradient_check_restores_existing_grads():
    enc = _adapted("tiny-wavlm", kind="ia3")
    p = next(p for p in enc.parameters() if p.requires_grad)
    p.grad = torch.full_like(p, 3.0)
    check_gradients(enc, _loss_fn(enc))
    assert bool((p.grad == 3.0).all())

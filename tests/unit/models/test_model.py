"""EmotionModel over tiny encoders: trainable set, gradients, checkpoints, pooled cache path, MC dropout."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from ser_models.config import from_dict, to_dict
from ser_models.data.inputs import AUDIO, ModelInputs
from ser_models.encoders.text import TINY_TEXT, TextConfig
from ser_models.exceptions import (
    CheckpointError,
    ConfigError,
    EncoderMismatchError,
    GradientCheckError,
    TrainingError,
)
from ser_models.models.model import EmotionModel, ModelConfig
from ser_models.testing import random_waveforms, tiny_model_config
from ser_models.training.trainer import _inputs_for

FAMILIES = ["tiny-wav2vec2", "tiny-hubert", "tiny-wavlm"]
KINDS = ["lora", "ia3", "frozen", "full"]


@pytest.fixture(scope="module")
def batch():
    return random_waveforms(2, 0.5, seed=7)


@pytest.mark.parametrize("source", FAMILIES)
@pytest.mark.parametrize("kind", KINDS)
def test_trainable_gradients_and_round_trip(source, kind, batch, tmp_path):
    torch.manual_seed(0)
    model = EmotionModel(tiny_model_config(source, kind))
    groups = model.parameter_report()["by_group"]
    trainable_groups = {g for g, v in groups.items() if v["trainable"]}
    expected = {"featurizer", "head"} | {"lora": {"adapter"}, "ia3": {"adapter"}, "frozen": set(),
                                         "full": {"encoder"}}[kind]
    assert trainable_groups == expected
    assert groups["encoder.cnn"]["trainable"] == 0
    if kind in ("lora", "ia3"):
        assert groups["encoder"]["trainable"] == 0
    model.check_gradients()

    with torch.no_grad():  # move the trainable weights away from their init so the round trip means something
        for p in model.trainable_parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.eval()
    with torch.no_grad():
        before = model(*batch).logits
    model.save_checkpoint(str(tmp_path / "ckpt"))
    loaded = EmotionModel.load_checkpoint(str(tmp_path / "ckpt"))
    assert not loaded.training and loaded.labels == model.labels
    with torch.no_grad():
        torch.testing.assert_close(loaded(*batch).logits, before, atol=0, rtol=0)


def test_checkpoint_contents_and_size(tmp_path):
    lora = EmotionModel(tiny_model_config("tiny-wav2vec2", "lora"))
    full = EmotionModel(tiny_model_config("tiny-wav2vec2", "full"))
    lora.save_checkpoint(str(tmp_path / "lora"))
    full.save_checkpoint(str(tmp_path / "full"))
    meta = json.loads((tmp_path / "lora" / "model.json").read_text())
    assert meta["labels"] == ["neutral", "happy", "angry", "sad"]
    assert meta["encoder_fingerprint"] == lora.encoder.fingerprint()
    assert from_dict(ModelConfig, meta["config"]) == lora.cfg
    assert meta["parameter_report"]["trainable"] == sum(p.numel() for p in lora.trainable_parameters())
    assert set(meta["weights"]) == set(lora.trainable_state_dict())
    lora_size = (tmp_path / "lora" / "model.safetensors").stat().st_size
    full_size = (tmp_path / "full" / "model.safetensors").stat().st_size
    assert lora_size * 5 < full_size


def test_load_rejects_mismatches(tmp_path):
    from safetensors.torch import load_file, save_file

    model = EmotionModel(tiny_model_config("tiny-hubert", "ia3"))
    ckpt = tmp_path / "ckpt"
    model.save_checkpoint(str(ckpt))
    tensors = load_file(str(ckpt / "model.safetensors"))
    tensors.pop("head.out.bias")
    save_file(tensors, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*head\.out\.bias"):
        EmotionModel.load_checkpoint(str(ckpt))

    model.save_checkpoint(str(ckpt))
    meta = json.loads((ckpt / "model.json").read_text())
    meta["encoder"]["fingerprint"] = "0" * 64
    (ckpt / "model.json").write_text(json.dumps(meta))
    with pytest.raises(EncoderMismatchError, match="fingerprint 000000000000"):
        EmotionModel.load_checkpoint(str(ckpt))
    del meta["encoder"]  # as written before the encoder reference: its plain fingerprint is checked
    meta["encoder_fingerprint"] = "0" * 64
    (ckpt / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="fingerprint"):
        EmotionModel.load_checkpoint(str(ckpt))
    with pytest.raises(CheckpointError, match="not found"):
        EmotionModel.load_checkpoint(str(tmp_path / "nowhere"))


@pytest.mark.parametrize("source", FAMILIES)
def test_pooled_cache_path_equals_forward(source, batch):
    model = EmotionModel(tiny_model_config(source, "frozen")).eval()
    with torch.no_grad():
        model.featurizer.layer_weights.copy_(torch.randn(model.encoder.num_layers))
        direct = model(*batch)
        pooled_layers = model.encode_pooled(*batch)
        cached = model.forward_from_pooled(pooled_layers)
    assert pooled_layers.shape == (2, model.encoder.num_layers, model.encoder.hidden_size)
    torch.testing.assert_close(cached.logits, direct.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached.pooled, direct.pooled, atol=1e-5, rtol=1e-5)


def test_pooled_cache_path_needs_mean_pooling():
    model = EmotionModel(tiny_model_config("tiny-wav2vec2", "frozen", pooling="attentive_stats"))
    assert model.head.in_dim == 2 * model.encoder.hidden_size
    with pytest.raises(ConfigError, match="model.pooling"):
        model.forward_from_pooled(torch.zeros(1, model.encoder.num_layers, model.encoder.hidden_size))


def test_padding_invariance_of_predictions(batch):
    model = EmotionModel(tiny_model_config("tiny-wavlm", "lora", pooling="attentive_stats")).eval()
    wavs, lengths = batch
    n = int(lengths[1])
    with torch.no_grad():
        torch.testing.assert_close(model(wavs, lengths).logits[1], model(wavs[1:, :n], lengths[1:]).logits[0],
                                   atol=1e-4, rtol=1e-4)


def test_mc_dropout_samples_head_only(batch):
    model = EmotionModel(tiny_model_config("tiny-wav2vec2", "lora", head_dropout=0.5))
    model.train()
    with torch.no_grad(), model.mc_dropout():
        assert not model.encoder.hf_model.encoder.layers[0].feed_forward.output_dropout.training
        assert model.head.dropout.training
        a, b = model(*batch).logits, model(*batch).logits
    assert not torch.allclose(a, b)
    assert model.training and model.encoder.hf_model.encoder.layers[0].feed_forward.output_dropout.training
    model.eval()
    with torch.no_grad(), model.mc_dropout(enabled=False):
        torch.testing.assert_close(model(*batch).logits, model(*batch).logits)


def test_wavlm_trap_in_model():
    model = EmotionModel(tiny_model_config("tiny-wavlm", "lora",
                                           target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]))
    with pytest.raises(GradientCheckError, match="target_modules"):
        model.check_gradients()


def test_fixed_layer_and_labels_override():
    cfg = tiny_model_config("tiny-hubert", "frozen", featurizer_layer=-2)
    model = EmotionModel(cfg, labels=["calm", "excited"])
    assert model.num_classes == 2 and model.cfg.labels == ["calm", "excited"]
    assert model.featurizer.layer == model.encoder.num_layers - 2
    assert "featurizer" not in {g for g, v in model.parameter_report()["by_group"].items() if v["trainable"]}
    with pytest.raises(ConfigError, match="model.featurizer_layer"):
        EmotionModel(tiny_model_config("tiny-hubert", "frozen", featurizer_layer=9))


@pytest.mark.parametrize("kwargs, key", [
    (dict(pooling="max"), "model.pooling"),
    (dict(head_hidden=-1), "model.head_hidden"),
    (dict(head_dropout=1.5), "model.head_dropout"),
    (dict(labels=["a", "a"]), "model.labels"),
    (dict(featurizer_layer=1.5), "model.featurizer_layer"),
])
def test_config_errors_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        ModelConfig(**kwargs)


def test_config_round_trips_through_dict():
    cfg = tiny_model_config("tiny-wavlm", "ia3", layers_to_transform=[0, 2])
    assert from_dict(ModelConfig, to_dict(cfg)) == cfg


def test_gradient_checkpointing_keeps_outputs_and_gradients(batch):
    import dataclasses

    from ser_models.encoders import EncoderConfig

    cfg = tiny_model_config("tiny-hubert", "lora")
    ckpt_cfg = dataclasses.replace(cfg, encoder=EncoderConfig(source="tiny-hubert", gradient_checkpointing=True))
    torch.manual_seed(0)
    plain = EmotionModel(cfg).eval()
    torch.manual_seed(0)
    recompute = EmotionModel(ckpt_cfg).eval()
    assert recompute.check_gradients()["checked"] == plain.check_gradients()["checked"]
    with torch.no_grad():
        torch.testing.assert_close(recompute(*batch).logits, plain(*batch).logits)


def test_the_config_builds_the_inputs_its_model_reads():
    """One builder: transcripts with a text branch (audio only), speakers with per-speaker standardisation, the
    cache's functionals with model.functionals; train_model refuses inputs built for another config."""
    plain = tiny_model_config()
    assert plain.inputs() == AUDIO and plain.inputs((2, 8)) == ModelInputs.cached((2, 8))
    text = dataclasses.replace(plain, text=TextConfig(source=TINY_TEXT))
    assert text.inputs() == ModelInputs(transcripts=True)
    speaker = dataclasses.replace(plain, feature_norm="speaker")
    assert speaker.inputs().speakers and speaker.inputs((-1, 2, 8)) == ModelInputs("frames", (-1, 2, 8), speakers=True)
    assert dataclasses.replace(plain, feature_norm="auto").inputs().speakers  # every fit compares pool and speaker
    functionals = dataclasses.replace(tiny_model_config(adapter="frozen"), functionals="egemaps")
    assert functionals.inputs() == AUDIO  # from audio the scorer computes them
    assert functionals.inputs((2, 8)) == ModelInputs("pooled", (2, 8), functionals=True)
    assert _inputs_for(speaker, None) == speaker.inputs()
    assert _inputs_for(speaker, speaker.inputs((2, 8))) == speaker.inputs((2, 8))
    with pytest.raises(TrainingError, match="were not built for this model config"):
        _inputs_for(speaker, ModelInputs.cached((2, 8)))

"""Models built inside ``reusing_frozen_encoders`` share one frozen encoder and are otherwise a fresh build's:
the same head weights, the same torch RNG state after, the same checkpoint."""

from __future__ import annotations

import pytest
import torch

from ser_models.encoders import EncoderConfig, build_encoder
from ser_models.encoders.presets import tiny_config
from ser_models.models.encoder_reuse import reusing_frozen_encoders
from ser_models.models.model import EmotionModel
from ser_models.testing import tiny_model_config


@pytest.fixture(scope="module")
def whisper_folder(tmp_path_factory):
    """A Whisper folder: its build draws a random initialisation from torch's RNG before loading the weights."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("whisper")
    tiny_config("tiny-whisper").save_pretrained(folder)
    ref = build_encoder(EncoderConfig(source="tiny-whisper"))
    save_file({k: v.contiguous() for k, v in ref.hf_model.state_dict().items()}, str(folder / "model.safetensors"))
    return str(folder)


def _head(model: EmotionModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("encoder.")}


def _built(cfg, seed: int) -> tuple[EmotionModel, torch.Tensor]:
    torch.manual_seed(seed)
    model = EmotionModel(cfg)
    return model, torch.get_rng_state()


def test_models_share_the_encoder_and_keep_a_fresh_builds_head_and_rng(whisper_folder):
    cfg = tiny_model_config(whisper_folder, "frozen", head_hidden=0)
    fresh, fresh_rng = _built(cfg, 3)
    torch.manual_seed(3)
    start = torch.get_rng_state()
    build_encoder(cfg.encoder)
    assert not torch.equal(start, torch.get_rng_state())  # the case that matters: a build draws from the RNG
    with reusing_frozen_encoders():
        first, first_rng = _built(cfg, 3)
        second, second_rng = _built(cfg, 3)  # the same start state: no build, the RNG set where one leaves it
        other, other_rng = _built(cfg, 4)  # a start state not seen: built (same weights), and remembered
    assert second.encoder is first.encoder
    for model, rng in ((first, first_rng), (second, second_rng)):
        assert torch.equal(rng, fresh_rng)
        for k, v in _head(fresh).items():
            assert torch.equal(_head(model)[k], v), k
    assert other.encoder is not first.encoder and not torch.equal(other_rng, fresh_rng)
    assert other.encoder.fingerprint() == first.encoder.fingerprint() == fresh.encoder.fingerprint()
    with reusing_frozen_encoders():
        again, again_rng = _built(cfg, 4)
    assert again.encoder is first.encoder and torch.equal(again_rng, other_rng)
    assert _built(cfg, 3)[0].encoder is not first.encoder  # outside the block every model builds its own


def test_a_shared_models_checkpoint_reads_back_as_a_fresh_ones(whisper_folder, tmp_path):
    cfg = tiny_model_config(whisper_folder, "frozen", head_hidden=0)
    fresh, _ = _built(cfg, 5)
    fresh.save_checkpoint(str(tmp_path / "fresh"))
    with reusing_frozen_encoders():
        _built(cfg, 5)
        shared, _ = _built(cfg, 5)
        shared.save_checkpoint(str(tmp_path / "shared"))
        loaded = EmotionModel.load_checkpoint(str(tmp_path / "shared"))
    assert (tmp_path / "shared" / "model.safetensors").read_bytes() == (tmp_path / "fresh" / "model.safetensors").read_bytes()
    for k, v in _head(fresh).items():
        assert torch.equal(_head(loaded)[k], v), k


def test_trained_or_cut_encoders_are_never_shared(whisper_folder):
    with reusing_frozen_encoders():
        lora = tiny_model_config(whisper_folder, "lora", head_hidden=0)
        assert _built(lora, 0)[0].encoder is not _built(lora, 0)[0].encoder
        cfg = tiny_model_config(whisper_folder, "frozen", head_hidden=0)
        _built(cfg, 0)
        cut, _ = _built(cfg, 0)
        assert cut.encoder.limit_depth(2) and cut.encoder.num_layers == 2  # as the feature-cache build does
        after, _ = _built(cfg, 0)
        assert after.encoder is not cut.encoder and after.encoder.num_layers == 5

"""Tiny random-weight encoders: the real architectures at toy size, built from configs (never downloaded).

Each preset keeps what the platform relies on from the real models: a convolutional feature encoder with a
total stride of 320 samples (16 kHz -> 50 frames/s), all hidden states, and the codevector settings that
``Wav2Vec2ForPreTraining`` needs for TAPT (``tiny-whisper``: a log-mel front end, 2 s windows).

The wav2vec2 family comes in the three layouts the real checkpoints use, one preset each per family:

- ``tiny-<family>``: a per-frame layer norm in every CNN layer, post-LN transformer (the platform's default
  test encoder since the start; its weights, and so its fingerprint, never change);
- ``tiny-<family>-group``: a group norm in the first CNN layer, post-LN transformer, as wav2vec2-base,
  HuBERT-base and WavLM base / base+ (``feat_extract_norm="group"``). That group norm normalises each channel
  over the whole time axis, which :class:`~ser_models.encoders.encoder.Encoder` makes padding-aware;
- ``tiny-<family>-stable``: layer-norm CNN, pre-LN transformer, as wav2vec2-large-lv60, HuBERT-large and
  WavLM-large (``feat_extract_norm="layer"``, ``do_stable_layer_norm=True``).

tests/unit/encoders/test_batch_independence.py checks on every preset that a clip's features do not depend
on its batch.
"""

from __future__ import annotations

import torch
from transformers import (
    HubertConfig,
    HubertModel,
    PretrainedConfig,
    PreTrainedModel,
    Wav2Vec2Config,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
    WhisperConfig,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

#: Seed of every preset's random init: the same preset has the same weights in every process, so a
#: checkpoint holding adapter and head weights only can be reloaded over it.
PRESET_SEED = 0

_TINY = dict(
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=128,
    conv_dim=(32, 32, 32, 32),
    conv_stride=(5, 4, 4, 4),  # product 320, as in the real models
    conv_kernel=(10, 8, 4, 4),  # receptive field 345 samples (real: 400)
    conv_bias=False,
    feat_extract_norm="layer",
    do_stable_layer_norm=False,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
    layerdrop=0.0,
    # Wav2Vec2ForPreTraining (TAPT) reads these; small so that the quantizer is tiny too.
    num_codevector_groups=2,
    num_codevectors_per_group=16,
    codevector_dim=32,
    proj_codevector_dim=32,
)

#: A Whisper encoder at toy size. Its window is 2 s (100 frames) rather than 30 s, so that tests exercise
#: clips both shorter and longer than one window.
_TINY_WHISPER = dict(
    d_model=64,
    encoder_layers=4,
    encoder_attention_heads=4,
    encoder_ffn_dim=128,
    num_mel_bins=80,
    max_source_positions=100,
    decoder_layers=1,
    decoder_attention_heads=4,
    decoder_ffn_dim=128,
    encoder_layerdrop=0.0,
)

_FAMILIES: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
    "hubert": (HubertConfig, HubertModel),
    "wavlm": (WavLMConfig, WavLMModel),
    "whisper": (WhisperConfig, WhisperEncoder),
}

#: Config changes of each layout of the wav2vec2 family (see the module docstring), by preset-name suffix.
_LAYOUTS: dict[str, dict] = {
    "": {},
    "-group": dict(feat_extract_norm="group"),  # *-base
    "-stable": dict(feat_extract_norm="layer", do_stable_layer_norm=True),  # *-large
}

#: preset name -> encoder family
TINY_PRESETS: dict[str, str] = {
    **{f"tiny-{family}{suffix}": family for family in ("wav2vec2", "hubert", "wavlm") for suffix in _LAYOUTS},
    "tiny-whisper": "whisper",
}


def family_classes(family: str) -> tuple[type[PretrainedConfig], type[PreTrainedModel]]:
    """The HF config and base-model classes of a family (``wav2vec2`` | ``hubert`` | ``wavlm`` | ``whisper``)."""
    return _FAMILIES[family]


def tiny_config(name: str) -> PretrainedConfig:
    """The HF config of a tiny preset (``KeyError`` for unknown names)."""
    family = TINY_PRESETS[name]
    config_cls, _ = _FAMILIES[family]
    if family == "whisper":
        return config_cls(**_TINY_WHISPER)
    return config_cls(**{**_TINY, **_LAYOUTS[name[len(f"tiny-{family}"):]]})


def build_tiny(name: str) -> tuple[str, PretrainedConfig, PreTrainedModel]:
    """Build a tiny preset deterministically, without touching the caller's global RNG.

    Returns:
        ``(family, hf_config, hf_model)``.
    """
    family = TINY_PRESETS[name]
    config = tiny_config(name)
    _, model_cls = _FAMILIES[family]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(PRESET_SEED)
        model = model_cls(config)
    return family, config, model


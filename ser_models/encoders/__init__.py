"""Speech encoders (all hidden states) and the layer featurizer."""

from ser_models.encoders.config import EncoderConfig
from ser_models.encoders.encoder import (
    FRAME_RATE,
    SAMPLE_RATE,
    Encoder,
    EncoderOutput,
    load_encoder_weights,
    save_encoder_weights,
)
from ser_models.encoders.factory import build_encoder
from ser_models.encoders.featurizer import LayerFeaturizer
from ser_models.encoders.presets import TINY_PRESETS

__all__ = [
    "FRAME_RATE",
    "SAMPLE_RATE",
    "TINY_PRESETS",
    "Encoder",
    "EncoderConfig",
    "EncoderOutput",
    "LayerFeaturizer",
    "build_encoder",
    "load_encoder_weights",
    "save_encoder_weights",
]

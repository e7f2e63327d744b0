"""Building an encoder from its config: the one module that knows every ``Encoder`` class.

``encoder.py`` holds the base class and the loading helpers and ``whisper.py`` subclasses it; keeping the
factory here means neither imports the other back.
"""

from __future__ import annotations

import dataclasses

from ser_models.encoders.config import EncoderConfig
from ser_models.encoders.encoder import Encoder, load_encoder_weights
from ser_models.encoders.loading import load_pretrained
from ser_models.encoders.presets import TINY_PRESETS, build_tiny
from ser_models.encoders.pretrained import is_pretrained_name, pretrained_folder
from ser_models.encoders.student import shrink_encoder
from ser_models.encoders.whisper import WhisperSpeechEncoder
from ser_models.failpoints import pausepoint


def build_encoder(cfg: EncoderConfig) -> Encoder:
    """Build the encoder named by ``cfg.source`` and load ``cfg.checkpoint`` over it.

    Raises:
        EncoderError: unknown family, or a hub id / folder that cannot be loaded (message says how to give a
            local path or set ``model.encoder.allow_download=true``).
        CheckpointError: ``cfg.checkpoint`` is missing or its keys do not match the model.
    """
    if is_pretrained_name(cfg.source):  # a name (model.encoder.source=smart-turn): its verified cached import
        cfg = dataclasses.replace(cfg, source=str(pretrained_folder(cfg.source)))
    weights = checkpoint_digest = None
    if cfg.source in TINY_PRESETS:
        family, hf_config, hf_model = build_tiny(cfg.source)
    else:  # built from its files read once, and keyed by what was read (encoders/loading.py)
        family, hf_config, hf_model, weights = load_pretrained(cfg)
    # LayerDrop skips layers at random in training, changing how many hidden states come back.
    hf_config.layerdrop = 0.0
    hf_model.config.layerdrop = 0.0
    if cfg.student_layers:  # a distilled student: the source's first layers, narrower (encoders/student.py)
        shrink_encoder(family, hf_config, hf_model, cfg.student_layers, float(cfg.student_ffn_ratio))
    if cfg.checkpoint:
        checkpoint_digest = load_encoder_weights(hf_model, cfg.checkpoint)
    pausepoint("encoder_loaded")  # tests: the files change on disk between the load and the key
    if cfg.gradient_checkpointing:
        # transformers 5.x renamed it (the old name warns and goes in v6).
        enable = getattr(hf_model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    hf_model.eval()
    cls = WhisperSpeechEncoder if family == "whisper" else Encoder
    return cls(cfg, family, hf_config, hf_model, weights=weights, checkpoint_digest=checkpoint_digest)

"""Schema of the speech encoder (``model.encoder`` in every job config)."""

from __future__ import annotations

from dataclasses import dataclass

from ser_models.config import PATH, PATH_OR_NAME, RESULT, SPEED, field
from ser_models.exceptions import ConfigError
from ser_models.io import is_local, local_path

#: ``model.encoder.whisper_windows``: pad to the whole window, or trim each clip's last window to its audio.
WHISPER_WINDOWS = ("full", "trim")


@dataclass
class EncoderConfig:
    """Which pretrained speech encoder to build and how to feed it.

    ``source`` is resolved in this order: a pretrained encoder's name (``smart-turn``:
    :mod:`ser_models.encoders.pretrained`), a tiny preset name (random weights, built from a config, for tests),
    a local folder holding a Hugging Face ``config.json`` (and weights), else a hub id. Hub ids
    are loaded with ``local_files_only=True`` unless ``allow_download`` is true, so a job never reaches the
    network by accident. The default is ``smart-turn``; the random tiny presets are used only where named.
    """

    source: str = field("smart-turn", effect=RESULT, path=PATH_OR_NAME, help="smart-turn (the default: the pretrained "
                        "Whisper-tiny encoder of Smart Turn v3.2, imported on first use from the pipecat-ai wheel into "
                        "the encoder cache, $SER_ENCODER_CACHE or ~/.cache/ser-models, and verified by hash), a local folder with a HF "
                        "config, a hub id (e.g. microsoft/wavlm-base-plus, openai/whisper-base), or a tiny preset "
                        "with random weights for tests (tiny-wav2vec2|tiny-hubert|tiny-wavlm|tiny-whisper; a -group "
                        "or -stable suffix on the first three gives the group-norm front end of the base checkpoints "
                        "or the stable layer norm of the large ones)")
    checkpoint: str | None = field(None, effect=RESULT, path=PATH, help="safetensors state dict (keys of Encoder.hf_model, e.g. "
                                   "written by TAPT) loaded over the built encoder; null = none")
    normalize_waveform: bool | str = field("auto", effect=RESULT, help="per-utterance zero-mean unit-variance over the valid "
                                           "samples: auto = as the model was trained (do_normalize in the "
                                           "source's preprocessor_config.json, else the family's convention: "
                                           "true for wav2vec2 / HuBERT / WavLM, false for Whisper), or true / "
                                           "false to force it")
    allow_download: bool = field(False, effect=SPEED, help="let a hub id be downloaded; false = local cache only")
    gradient_checkpointing: bool = field(False, effect=SPEED, help="recompute transformer activations in backward "
                                         "(less memory, ~30% slower); only matters when the encoder trains")
    student_layers: int = field(0, effect=RESULT, help="keep only the first N transformer layers of the source (a distilled "
                                "student's depth: jobs.distill writes the weights for model.encoder.checkpoint); "
                                "0 = all")
    student_ffn_ratio: float = field(1.0, effect=RESULT, help="fraction of feed-forward units the kept layers keep (a student's "
                                     "width; only with student_layers > 0); 1 = all")
    whisper_windows: str = field("full", effect=RESULT, help="Whisper encoders only (ignored by other families): full = pad "
                                 "every clip to the encoder's whole window (8 s for Smart Turn, 30 s for OpenAI's "
                                 "Whisper), as in pre-training; trim = cut each clip's last window to its audio, "
                                 "rounded up to whisper_trim_seconds (less compute on short clips)")
    whisper_trim_seconds: float = field(1.0, effect=RESULT, help="with whisper_windows=trim: a trimmed window's length is rounded "
                                        "up to a multiple of this many seconds (multiples of 20 ms; windows of "
                                        "one length are encoded together)")

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ConfigError(f"model.encoder.source must be a non-empty string, got {self.source!r}")
        if self.checkpoint is not None and not str(self.checkpoint).strip():
            raise ConfigError("model.encoder.checkpoint must be a path or null, got an empty string")
        # A relative local folder or file would resolve against each Ray worker's own working directory
        # (not the driver's): pin what exists here to an absolute path. Hub ids and URIs are left alone.
        for key in ("source", "checkpoint"):
            value = getattr(self, key)
            if isinstance(value, str) and is_local(value) and local_path(value).expanduser().exists():
                setattr(self, key, str(local_path(value).expanduser().absolute()))
        if isinstance(self.student_layers, bool) or not isinstance(self.student_layers, int) \
                or self.student_layers < 0:
            raise ConfigError(f"model.encoder.student_layers must be an int >= 0, got {self.student_layers!r}")
        if not 0 < float(self.student_ffn_ratio) <= 1:
            raise ConfigError(f"model.encoder.student_ffn_ratio must be in (0, 1], got {self.student_ffn_ratio!r}")
        if self.student_ffn_ratio != 1 and not self.student_layers:
            raise ConfigError("model.encoder.student_ffn_ratio needs model.encoder.student_layers > 0")
        if self.normalize_waveform != "auto" and not isinstance(self.normalize_waveform, bool):
            raise ConfigError(f"model.encoder.normalize_waveform must be auto, true or false, "
                              f"got {self.normalize_waveform!r}")
        if self.whisper_windows not in WHISPER_WINDOWS:
            raise ConfigError(f"model.encoder.whisper_windows must be one of {', '.join(WHISPER_WINDOWS)}, "
                              f"got {self.whisper_windows!r}")
        seconds = self.whisper_trim_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0.02:
            raise ConfigError(f"model.encoder.whisper_trim_seconds must be a number of seconds >= 0.02 (one "
                              f"Whisper frame), got {seconds!r}")
        for key in ("allow_download", "gradient_checkpointing"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"model.encoder.{key} must be true or false, got {getattr(self, key)!r}")

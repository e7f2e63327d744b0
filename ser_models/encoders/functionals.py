"""Prosodic functionals: the eGeMAPS v02 set of openSMILE, 88 values per clip (``model.functionals=egemaps``).

eGeMAPS (Eyben et al., 2016, IEEE Trans. Affective Computing) is the field's reference set of acoustic
parameters for affect: statistics over a clip of pitch, loudness, jitter, shimmer, formants, spectral slope and
rhythm. openSMILE computes it from the waveform; it needs no labels and no GPU (about 50x real time on one
core).

openSMILE is an optional extra (``pip install 'ser-models[opensmile]'``) under audEERING's research licence:
free for research and education, **no commercial use without a licence from audEERING**. The default install
and the demo never import it.

The functionals are cached like the encoder's per-layer means (``FeatureCache`` with one "layer" of 88
values, keyed by the pool's build and the extractor's version; ``ser_models.scoring.functionals_cache``), so a
pool pays for them once, a killed build resumes, and the cache may live on ``s3://``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ser_models.data.clips import collect_clips
from ser_models.exceptions import ConfigError

#: ``model.functionals`` choices: none, eGeMAPS, or by cross-validation (``auto``: on or off per fit).
FUNCTIONAL_SETS = ("none", "egemaps", "auto")
#: What ``model.functionals=auto`` chooses between (the simpler first: ties go to it).
AUTO_FUNCTIONALS = ("none", "egemaps")
#: The per-speaker statistics of the functionals a checkpoint carries beside its weights.
FUNCTIONALS_SPEAKER_STATS_FILE = "functionals_speaker_stats.safetensors"
#: Values per clip of eGeMAPS v02 functionals.
EGEMAPS_DIM = 88
#: What the error for a missing extra says, and the README repeats where the option is described.
OPENSMILE_EXTRA = ("model.functionals=egemaps needs the optional opensmile extra: pip install "
                   "'ser-models[opensmile]' (make test-opensmile installs it). openSMILE is under audEERING's "
                   "research licence: no commercial use without a licence from audEERING")


def reads_functionals(model_cfg) -> bool:
    """Whether a model of ``model_cfg`` reads each clip's functionals (``model.functionals`` egemaps or auto)."""
    return getattr(model_cfg, "functionals", "none") != "none"


def require_opensmile():
    """The ``opensmile`` module.

    Raises:
        ConfigError: it is not installed, naming the extra and its licence.
    """
    try:
        import opensmile
    except ImportError as exc:
        raise ConfigError(f"{OPENSMILE_EXTRA} ({exc})") from None
    return opensmile


def functionals_fingerprint() -> str:
    """What names the extractor's output: the feature set and the openSMILE version (a new version may compute
    other values, so its cache is another)."""
    opensmile = require_opensmile()
    return f"egemaps-v02-functionals:opensmile-{getattr(opensmile, '__version__', 'unknown')}"


class EgemapsExtractor:
    """Ray Data callable class: pool rows (``utt_id``, ``audio``, ``audio_format``) -> ``utt_id`` and
    ``features``, the float32 bytes of ``[1, 88]`` eGeMAPS v02 functionals per clip (the pooled cache's
    format with one "layer").

    A clip too short for a value (openSMILE returns NaN, e.g. no voiced frame for the pitch statistics) gets
    0 there, the pool mean after standardisation; :attr:`nan_values` counts them.
    """

    def __init__(self, threads: int = 1, **_):
        opensmile = require_opensmile()
        self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                     feature_level=opensmile.FeatureLevel.Functionals,
                                     num_workers=max(int(threads), 1))
        self.nan_values = 0

    def __call__(self, batch: dict) -> dict:
        clips = collect_clips([batch], [], require_labels=False)
        rows = [self.clip(audio) for audio in clips.audio]
        return {"utt_id": np.asarray(clips.ids, dtype=object),
                "features": np.asarray([r.tobytes() for r in rows], dtype=object)}

    def clip(self, audio: np.ndarray) -> np.ndarray:
        """``[1, 88]`` float32 functionals of one clip of int16 samples at 16 kHz."""
        signal = np.asarray(audio, np.float32) / 32768.0
        values = np.array(self.smile.process_signal(signal, 16_000).to_numpy(np.float32).reshape(1, -1))
        if values.shape[1] != EGEMAPS_DIM:
            raise ConfigError(f"openSMILE returned {values.shape[1]} eGeMAPS functionals, expected {EGEMAPS_DIM}: "
                              "an unsupported opensmile version?")
        bad = ~np.isfinite(values)
        self.nan_values += int(bad.sum())
        values[bad] = 0.0
        return np.ascontiguousarray(values)


class FunctionalsColumn(EgemapsExtractor):
    """Ray Data callable class: the pool rows it is given, plus a ``functionals`` column (the float32 bytes of
    each clip's ``[1, 88]`` eGeMAPS functionals, from the whole clip).

    It runs on CPU actors of its own ahead of a GPU encoding stage (``active.scorer.functionals_stage``), so
    the GPU actor never waits on openSMILE's single-threaded C code.
    """

    def __call__(self, batch: dict) -> dict:
        clips = collect_clips([batch], [], require_labels=False)
        by_id = {u: self.clip(a).tobytes() for u, a in zip(clips.ids, clips.audio)}
        return {**batch, "functionals": np.asarray([by_id[str(u)] for u in batch["utt_id"]], dtype=object)}


class FunctionalsNorm(nn.Module):
    """The functionals' own standardisation, ``[B, 88] -> [B, 88]``: with the pool's mean and std (buffers: a
    checkpoint carries them in its weights) or, under ``model.feature_norm=speaker``, with each clip's speaker's
    (shrunk toward the pool's; a file beside the weights). Each block of the head's input is standardised on
    its own: the encoder's hidden state by ``model.feature_norm``, the functionals here."""

    def __init__(self, dim: int = EGEMAPS_DIM):
        super().__init__()
        from ser_models.encoders.speaker_norm import SpeakerStandardizer
        from ser_models.encoders.standardizer import LayerStandardizer

        self.dim = dim
        self.pool = LayerStandardizer(1, dim)
        self.speaker = SpeakerStandardizer(1, dim)

    def forward(self, values: torch.Tensor, speakers: Sequence | None, by_speaker: bool) -> torch.Tensor:
        """Args: values ``[B, 88]`` raw functionals; speakers: B ids (None = the pool's statistics);
        by_speaker: standardise per speaker (else with the pool's statistics).

        Raises:
            ConfigError: the statistics it needs are not loaded, or ``values`` is not ``[B, 88]``.
        """
        if values.dim() != 2 or values.shape[1] != self.dim:
            raise ConfigError(f"eGeMAPS functionals must be [B, {self.dim}], got {tuple(values.shape)}")
        if by_speaker:
            if not self.speaker.fitted:
                raise ConfigError("model.functionals with model.feature_norm=speaker but no speaker statistics of "
                                  "the functionals are loaded: set model.functionals_speaker_stats (the AL loop, "
                                  "jobs.finetune and jobs.predict compute them)")
            return self.speaker.forward_pooled(values[:, None, :], speakers)[:, 0]
        if not self.pool.fitted:
            raise ConfigError("model.functionals but no pool statistics of the functionals are loaded: set "
                              "model.functionals_stats (the AL loop and jobs.finetune compute them)")
        return self.pool.forward_pooled(values[:, None, :])[:, 0]

"""What a model reads: audio or the frozen encoder's cached features (pooled or frames), plus the side inputs
its config asks for (transcripts, speakers, functionals); and what it predicts, which a pool's clips are checked
against (:class:`ModelTargets`).

One small value is built once from the model config and the run's feature cache
(:meth:`~ser_models.models.model_config.ModelConfig.inputs`, or
:func:`~ser_models.scoring.feature_cache.model_inputs` given the cache) and travels through training, the Ray
Train worker config, scoring, evaluation, prediction and pre-training. It alone says which columns a feed reads
(:meth:`ModelInputs.columns`, :meth:`ModelInputs.feed_columns`), so a new input kind touches this type and its
producer. The data layer is the lowest, so every layer may import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The sources a model reads its clips from.
KINDS = ("audio", "pooled", "frames")

#: The columns each source is read from (the clip id first).
SOURCE_COLUMNS = {"audio": ("utt_id", "audio", "audio_format", "num_samples"),
                  "pooled": ("utt_id", "features"), "frames": ("utt_id", "features")}


@dataclass(frozen=True)
class ModelTargets:
    """What a model predicts: the data layer checks a pool's clips against it (``Pool.check_targets``) without
    knowing the model's config (``ModelConfig.targets`` builds it).

    Attributes:
        labels: the class names (empty for a model with dimensions only).
        dimensions: the continuous targets (arousal, valence, dominance, ...), possibly empty.
        dimension_range: ``[low, high]`` every dimension's values lie in.
    """

    labels: list[str]
    dimensions: list[str]
    dimension_range: tuple[float, float]


@dataclass(frozen=True)
class ModelInputs:
    """Where a model's clips come from.

    Attributes:
        kind: ``"audio"`` (pool rows: PCM decoded per clip), ``"pooled"`` (cached float32 per-layer means
            ``[L, D]`` per clip) or ``"frames"`` (cached float16 frames ``[F, L, D]`` per clip).
        shape: the cached features' shape, ``(L, D)`` pooled or ``(-1, L, D)`` frames (frames vary per clip);
            None for audio.
        transcripts: the model has a text branch and reads each clip's ``transcript`` (audio only: the feature
            cache holds no transcripts).
        speakers: the model standardises per speaker (``model.feature_norm=speaker`` or ``auto``) and reads each
            clip's ``speaker``.
        functionals: the model reads the eGeMAPS functionals from the cache's ``functionals`` column (cached
            only: given audio, the scorer computes them itself).
    """

    kind: str = "audio"
    shape: tuple[int, ...] | None = None
    transcripts: bool = False
    speakers: bool = False
    functionals: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"ModelInputs.kind must be one of {KINDS}, got {self.kind!r}")
        if (self.shape is None) != (self.kind == "audio"):
            raise ValueError(f"ModelInputs({self.kind!r}) needs a shape exactly when it reads cached features, "
                             f"got {self.shape!r}")
        if self.transcripts and self.kind != "audio":
            raise ValueError("ModelInputs: transcripts are read with audio only (the feature cache holds none)")
        if self.functionals and self.kind == "audio":
            raise ValueError("ModelInputs: functionals are read from the feature cache; from audio the scorer "
                             "computes them")

    @classmethod
    def audio(cls) -> ModelInputs:
        """Audio pool rows (the same as :data:`AUDIO`)."""
        return cls()

    @classmethod
    def of(cls, shape: Sequence[int] | None) -> ModelInputs:
        """Audio for ``shape`` None, else :meth:`cached` features of ``shape`` (no side inputs)."""
        return cls.audio() if shape is None else cls.cached(shape)

    @classmethod
    def cached(cls, shape: Sequence[int]) -> ModelInputs:
        """Cached features of ``shape``: ``(L, D)`` pooled, ``(-1, L, D)`` frames (three axes mean frames)."""
        shape = tuple(int(s) for s in shape)
        return cls("frames" if len(shape) == 3 else "pooled", shape)

    def columns(self) -> list[str]:
        """The columns a scorer reads: the source's (``utt_id`` first), then the side inputs'. Labels never."""
        return [*SOURCE_COLUMNS[self.kind], *self._side(soft=False)]

    def feed_columns(self, dimensions: Sequence[str] = (), soft: bool = False) -> list[str]:
        """The columns a training or evaluation feed reads: the source's, ``label``, the model's ``dimensions``,
        then ``transcript``, ``soft_label`` (a training feed with several annotators' vote shares), ``speaker``
        and ``functionals`` as the model reads them."""
        return [*SOURCE_COLUMNS[self.kind], "label", *dimensions, *self._side(soft)]

    def _side(self, soft: bool) -> list[str]:
        return [*(["transcript"] if self.transcripts else []), *(["soft_label"] if soft else []),
                *(["speaker"] if self.speakers else []), *(["functionals"] if self.functionals else [])]

    @property
    def is_audio(self) -> bool:
        return self.kind == "audio"

    @property
    def is_cached(self) -> bool:
        """Reads the frozen encoder's cache (pooled or frames), not audio."""
        return self.kind != "audio"

    @property
    def is_frames(self) -> bool:
        return self.kind == "frames"

    def decode(self, raw: bytes) -> np.ndarray:
        """One clip's cached features from its stored bytes.

        Args:
            raw: the ``features`` cell of a cache row.

        Returns:
            ``[L, D]`` float32 (pooled) or ``[F, L, D]`` float16 (frames), a read-only view of ``raw``.
        """
        if self.is_frames:
            return np.frombuffer(raw, dtype=np.float16).reshape(-1, *self.shape[1:])
        return np.frombuffer(raw, dtype=np.float32).reshape(self.shape)

    def to_dict(self) -> dict:
        """JSON-able form for the Ray Train worker config: ``{"kind", "shape": list | None, "transcripts",
        "speakers", "functionals"}``."""
        return {"kind": self.kind, "shape": None if self.shape is None else list(self.shape),
                "transcripts": self.transcripts, "speakers": self.speakers, "functionals": self.functionals}

    @classmethod
    def from_dict(cls, d: dict | None) -> ModelInputs:
        """Inverse of :meth:`to_dict` (None reads as audio without side inputs)."""
        d = d or {}
        side = {k: bool(d.get(k, False)) for k in ("transcripts", "speakers", "functionals")}
        if not d.get("shape"):
            return cls(**side)
        return cls(d["kind"], tuple(int(s) for s in d["shape"]), **side)


#: Audio pool rows: the default wherever a caller names no cache.
AUDIO = ModelInputs()

__all__ = ["AUDIO", "KINDS", "SOURCE_COLUMNS", "ModelInputs", "ModelTargets"]

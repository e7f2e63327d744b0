"""What a model reads: audio, or the frozen encoder's cached features (pooled or frames); and what it predicts,
which a pool's clips are checked against (:class:`ModelTargets`).

One small value travels from where the source is decided (the feature cache, or none) through training, the
Ray Train worker config, scoring and pre-training, instead of a loose shape tuple whose ``None`` meant audio and
whose length meant frames. The data layer is the lowest, so every layer may import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The sources a model reads its clips from.
KINDS = ("audio", "pooled", "frames")


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
    """

    kind: str = "audio"
    shape: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"ModelInputs.kind must be one of {KINDS}, got {self.kind!r}")
        if (self.shape is None) != (self.kind == "audio"):
            raise ValueError(f"ModelInputs({self.kind!r}) needs a shape exactly when it reads cached features, "
                             f"got {self.shape!r}")

    @classmethod
    def audio(cls) -> ModelInputs:
        """Audio pool rows (the same as :data:`AUDIO`)."""
        return cls()

    @classmethod
    def cached(cls, shape: Sequence[int]) -> ModelInputs:
        """Cached features of ``shape``: ``(L, D)`` pooled, ``(-1, L, D)`` frames (three axes mean frames)."""
        shape = tuple(int(s) for s in shape)
        return cls("frames" if len(shape) == 3 else "pooled", shape)

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
        """JSON-able form for the Ray Train worker config: ``{"kind", "shape": list | None}``."""
        return {"kind": self.kind, "shape": None if self.shape is None else list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict | None) -> ModelInputs:
        """Inverse of :meth:`to_dict` (None reads as audio)."""
        if not d or not d.get("shape"):
            return cls.audio()
        return cls(d["kind"], tuple(int(s) for s in d["shape"]))


#: Audio pool rows: the default wherever a caller names no cache.
AUDIO = ModelInputs()

__all__ = ["AUDIO", "KINDS", "ModelInputs", "ModelTargets"]

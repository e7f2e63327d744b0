"""The emotion model: its config (:class:`~ser_models.models.model_config.ModelConfig`), the model itself
(encoder + adapters + head, :class:`~ser_models.models.model.EmotionModel`), and how a checkpoint's encoder
is recorded and found again (``encoder_reference``, ``encoder_reuse``)."""

from ser_models.lazy import lazy_exports

__all__ = ["EmotionModel", "ModelConfig"]

_LAZY = {"EmotionModel": "ser_models.models.model", "ModelConfig": "ser_models.models.model_config"}
__getattr__ = lazy_exports(__name__, _LAZY)

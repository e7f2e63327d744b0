"""Supervised fitting with Ray Train: configs, batching, the fit algorithm, the worker loop and the driver.
Encoder pre-training (TAPT, distillation, adapter pre-training) is in ``ser_models.pretraining``, above this."""

from ser_models.lazy import lazy_exports
from ser_models.training.anchoring import anchoring_loss, coral_loss
from ser_models.training.config import OptimConfig, ScalingConfig, TrainConfig
from ser_models.training.fitting import FitState, evaluate, fit, predict

__all__ = ["FitState", "OptimConfig", "ScalingConfig", "TrainConfig", "TrainResult", "anchoring_loss", "coral_loss", "evaluate", "fit",
           "predict", "train_model"]

# The drivers pull in Ray Train; keep them out of worker imports of this package.
_LAZY = {"train_model": "ser_models.training.trainer", "TrainResult": "ser_models.training.trainer"}
__getattr__ = lazy_exports(__name__, _LAZY)

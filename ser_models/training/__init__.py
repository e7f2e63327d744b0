"""Fine-tuning with Ray Train: configs, batching, the fit algorithm, the worker loop and the driver."""

from ser_models.training.config import ScalingSettings, TrainConfig
from ser_models.training.fitting import FitState, evaluate, fit, predict
from ser_models.training.tapt_config import TaptConfig, TaptJobConfig

__all__ = ["FitState", "ScalingSettings", "TaptConfig", "TaptJobConfig", "TaptResult", "TrainConfig",
           "TrainResult", "evaluate", "fit", "predict", "run_tapt", "train_model"]

_LAZY = {"train_model": "trainer", "TrainResult": "trainer", "run_tapt": "tapt", "TaptResult": "tapt"}


def __getattr__(name):  # the drivers pull in Ray Train; keep them out of worker imports of this package
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"ser_models.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ser_models.training' has no attribute {name!r}")

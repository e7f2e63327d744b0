"""Fine-tuning with Ray Train: configs, batching, the fit algorithm, the worker loop and the driver."""

from ser_models.training.config import ScalingSettings, TrainConfig
from ser_models.training.fitting import FitState, evaluate, fit, predict

__all__ = ["FitState", "ScalingSettings", "TrainConfig", "evaluate", "fit", "predict", "train_model", "TrainResult"]


def __getattr__(name):  # the driver pulls in Ray Train; keep it out of worker imports of this package
    if name in ("train_model", "TrainResult"):
        from ser_models.training import trainer

        return getattr(trainer, name)
    raise AttributeError(name)

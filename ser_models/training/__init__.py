"""Fine-tuning with Ray Train: configs, batching, the fit algorithm, the worker loop and the driver."""

from ser_models.lazy import lazy_exports
from ser_models.training.config import ScalingSettings, TrainConfig
from ser_models.training.fitting import FitState, evaluate, fit, predict
from ser_models.training.tapt_config import TaptConfig, TaptJobConfig

__all__ = ["FitState", "ScalingSettings", "TaptConfig", "TaptJobConfig", "TaptResult", "TrainConfig",
           "TrainResult", "evaluate", "fit", "predict", "run_tapt", "train_model"]

# The drivers pull in Ray Train; keep them out of worker imports of this package.
_LAZY = {"train_model": "ser_models.training.trainer", "TrainResult": "ser_models.training.trainer",
         "run_tapt": "ser_models.training.tapt", "TaptResult": "ser_models.training.tapt"}
__getattr__ = lazy_exports(__name__, _LAZY)

"""Encoder pre-training on the unlabelled pool: task-adaptive pre-training (TAPT) and its objectives (masked
prediction of k-means targets over MFCC or hidden-state frames, span masking), layer-wise distillation into a
student, and pre-training of the WAP-Transformer adapter on cached frames (the adapter stage of ``after`` and
``finetune``). Built on the trainer of ``ser_models.training``; every name loads on first use."""

from ser_models.lazy import lazy_exports

__all__ = ["AdapterPretrainConfig", "DistillConfig", "TaptConfig", "TaptJobConfig", "TaptResult", "run_distill",
           "run_tapt"]

_LAZY = {"AdapterPretrainConfig": "ser_models.pretraining.tapt_config",
         "TaptConfig": "ser_models.pretraining.tapt_config", "TaptJobConfig": "ser_models.pretraining.tapt_config",
         "TaptResult": "ser_models.pretraining.tapt", "run_tapt": "ser_models.pretraining.tapt",
         "DistillConfig": "ser_models.pretraining.distill", "run_distill": "ser_models.pretraining.distill"}
__getattr__ = lazy_exports(__name__, _LAZY)

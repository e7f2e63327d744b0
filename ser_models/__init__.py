"""ser_models: speech emotion recognition with active learning (AFTER), PEFT adapters and Ray."""

__version__ = "0.1.0"

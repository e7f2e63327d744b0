"""Parameter-efficient adapters (peft LoRA / IA3), frozen and full fine-tuning, and the gradient check."""

from ser_models.adapters.config import (
    ADAPTER_KINDS,
    IA3_DEFAULT_TARGETS,
    LORA_DEFAULT_TARGETS,
    AdapterConfig,
)
from ser_models.adapters.gradcheck import check_gradients
from ser_models.adapters.peft_adapters import (
    apply_adapter,
    format_parameter_report,
    is_adapter_parameter,
    linear_module_names,
    parameter_report,
)

__all__ = [
    "ADAPTER_KINDS",
    "IA3_DEFAULT_TARGETS",
    "LORA_DEFAULT_TARGETS",
    "AdapterConfig",
    "apply_adapter",
    "check_gradients",
    "format_parameter_report",
    "is_adapter_parameter",
    "linear_module_names",
    "parameter_report",
]

"""Adapters on an :class:`~ser_models.encoders.Encoder`, mapped onto ``peft``.

``peft.inject_adapter_in_model`` rewrites the HF base model in place, so the ``Encoder`` wrapper keeps its
type and forward; only the trainable set changes. Prefix/prompt tuning is not offered: it needs token ids or
embeddings, which waveform encoders do not take.
"""

from __future__ import annotations

from collections import OrderedDict

from peft import IA3Config, LoraConfig, inject_adapter_in_model
from torch import nn

from ser_models.adapters.bottleneck import BOTTLENECK_PREFIX, GATE_NAME, add_bottlenecks, add_gates
from ser_models.adapters.config import IA3_DEFAULT_TARGETS, LORA_DEFAULT_TARGETS, AdapterConfig
from ser_models.adapters.prompt import PROMPT_NAME, add_prompt
from ser_models.encoders.encoder import Encoder
from ser_models.exceptions import AdapterError

#: Parameter-name prefixes of each family's convolutional front end (what ``freeze_feature_encoder`` freezes).
CNN_PREFIXES = {"wav2vec2": ("feature_extractor.",), "hubert": ("feature_extractor.",),
                "wavlm": ("feature_extractor.",), "whisper": ("conv1.", "conv2.")}
#: Parameters that never train: wav2vec2's SpecAugment vector (see apply_adapter) and Whisper's positional
#: table (fixed sinusoids in pre-training; ``WhisperEncoder`` freezes it too).
NEVER_TRAINED_SUFFIXES = ("masked_spec_embed", "embed_positions.weight")

#: Substrings of parameter names that adapters add (peft's LoRA A/B and IA3 vectors; bottlenecks, gates).
ADAPTER_PARAM_MARKERS = ("lora_", "ia3_l", f".{BOTTLENECK_PREFIX}", f".{GATE_NAME}.", f".{PROMPT_NAME}.")


def is_adapter_parameter(name: str) -> bool:
    """True for parameters an adapter added (peft's, bottleneck adapters, layer gates)."""
    return any(m in name for m in ADAPTER_PARAM_MARKERS)


def apply_adapter(encoder: Encoder, cfg: AdapterConfig) -> Encoder:
    """Inject ``cfg``'s adapter into ``encoder.hf_model`` and set which encoder weights train.

    - ``lora`` / ``ia3``: only the injected adapter weights train.
    - ``frozen``: no encoder weight trains (the featurizer and head still do).
    - ``full``: every encoder weight trains, except the CNN feature encoder when ``freeze_feature_encoder``.
    - then ``add``: bottleneck adapters, layer gates (:mod:`ser_models.adapters.bottleneck`), then an
      embedding prompt (:mod:`ser_models.adapters.prompt`), whose weights always train.

    In every kind the SpecAugment mask vector (``masked_spec_embed``) stays frozen: it only receives a
    gradient in steps where a random time mask happened to be drawn, which would make the gradient check
    flaky, and it is a pre-training artefact rather than something fine-tuning should move.

    Args:
        encoder: the encoder to adapt (mutated and returned).
        cfg: the adapter config.

    Returns:
        ``encoder``.

    Raises:
        AdapterError: ``target_modules`` names no module of this encoder (the message lists some that exist),
            or ``layers_to_transform`` is out of range.
    """
    model = encoder.hf_model
    for p in model.parameters():
        p.requires_grad_(False)
    if cfg.kind in ("lora", "ia3") or cfg.add:  # every adapter that layers_to_transform applies to
        _check_layers(encoder, cfg)
    if cfg.kind in ("lora", "ia3"):
        peft_cfg = _peft_config(encoder.family, cfg)
        try:
            inject_adapter_in_model(peft_cfg, model)
        except ValueError as exc:
            raise AdapterError(f"model.adapter.target_modules={sorted(peft_cfg.target_modules)} do not fit the "
                               f"{encoder.family} encoder ({str(exc).splitlines()[0]}); adaptable modules "
                               f"include {linear_module_names(model)[:12]}") from exc
        for name, p in model.named_parameters():
            p.requires_grad_(is_adapter_parameter(name))
    elif cfg.kind == "full":
        cnn = CNN_PREFIXES[encoder.family]
        for name, p in model.named_parameters():
            p.requires_grad_(not (cfg.freeze_feature_encoder and name.startswith(cnn)))
    for name, p in model.named_parameters():
        if name.endswith(NEVER_TRAINED_SUFFIXES):
            p.requires_grad_(False)
    # Added after kind, in a fixed order (bottlenecks inside the layers, gates on their outputs, the prompt
    # before the first layer); their weights are new, so they train under every kind.
    if "bottleneck" in cfg.add:
        add_bottlenecks(encoder, cfg.bottleneck_dim, list(cfg.bottleneck_blocks), cfg.bottleneck_scale,
                        cfg.layers_to_transform)
    if "gating" in cfg.add:
        add_gates(encoder, cfg.gate_per_channel, cfg.layers_to_transform)
    if "prompt" in cfg.add:
        add_prompt(encoder, cfg.prompt_length)
    return encoder


def _check_layers(encoder: Encoder, cfg: AdapterConfig) -> None:
    n = int(encoder.hf_config.num_hidden_layers)
    bad = [i for i in cfg.layers_to_transform or [] if i >= n]
    if bad:
        raise AdapterError(f"model.adapter.layers_to_transform={cfg.layers_to_transform}: layers {bad} do not "
                           f"exist (the encoder has transformer layers 0..{n - 1})")


def _peft_config(family: str, cfg: AdapterConfig) -> LoraConfig | IA3Config:
    layers = dict(layers_to_transform=list(cfg.layers_to_transform), layers_pattern="layers") \
        if cfg.layers_to_transform else {}
    if cfg.kind == "lora":
        return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, bias="none",
                          target_modules=list(cfg.target_modules or LORA_DEFAULT_TARGETS[family]), **layers)
    targets, feedforward = IA3_DEFAULT_TARGETS[family]
    if cfg.target_modules is not None:
        targets = list(cfg.target_modules)
        feedforward = list(cfg.feedforward_modules) if cfg.feedforward_modules is not None else \
            [m for m in feedforward if m in targets]
    elif cfg.feedforward_modules is not None:
        feedforward = list(cfg.feedforward_modules)
        bad = set(feedforward) - set(targets)
        if bad:
            raise AdapterError(f"model.adapter.feedforward_modules {sorted(bad)} are not among the {family} IA3 "
                               f"default targets {targets}; set model.adapter.target_modules too")
    return IA3Config(target_modules=list(targets), feedforward_modules=list(feedforward), **layers)


def linear_module_names(model: nn.Module) -> list[str]:
    """Distinct last name parts of the ``nn.Linear`` modules in ``model`` (candidate adapter targets)."""
    names = OrderedDict()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name:
            names[name.rsplit(".", 1)[-1]] = None
    return list(names)


def _group_of(name: str) -> str:
    """Coarse parameter group for reports: adapter, encoder.cnn, encoder, or the top-level module."""
    if is_adapter_parameter(name):
        return "adapter"
    if name.startswith("encoder.") or name.startswith("hf_model."):
        cnn = (".feature_extractor.", ".conv1.", ".conv2.")
        return "encoder.cnn" if any(c in f".{name}" for c in cnn) else "encoder"
    return name.split(".", 1)[0]


def parameter_report(model: nn.Module) -> dict:
    """Trainable vs total parameter counts.

    Returns:
        ``{"trainable": int, "total": int, "fraction": float, "by_group": {group: {"trainable", "total"}}}``
        where groups are ``adapter``, ``encoder.cnn``, ``encoder`` (the rest of the base model) and the other
        top-level submodules (``featurizer``, ``pooling``, ``head``).
    """
    by_group: dict[str, dict[str, int]] = {}
    trainable = total = 0
    for name, p in model.named_parameters():
        g = by_group.setdefault(_group_of(name), {"trainable": 0, "total": 0})
        g["total"] += p.numel()
        total += p.numel()
        if p.requires_grad:
            g["trainable"] += p.numel()
            trainable += p.numel()
    return {"trainable": trainable, "total": total, "fraction": trainable / total if total else 0.0,
            "by_group": dict(sorted(by_group.items()))}


def format_parameter_report(report: dict) -> str:
    """One line a job prints, e.g. ``trainable 12,345 / 1,234,567 (1.00%) | adapter 8,192/8,192 ...``."""
    groups = " ".join(f"{g} {v['trainable']:,}/{v['total']:,}" for g, v in report["by_group"].items())
    return (f"trainable {report['trainable']:,} / {report['total']:,} ({100 * report['fraction']:.2f}%) | "
            f"{groups}")

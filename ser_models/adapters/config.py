"""Schema of the parameter-efficient adapter (``model.adapter``)."""

from __future__ import annotations

from dataclasses import dataclass

from ser_models.config import PATH, RESULT, field
from ser_models.exceptions import ConfigError

ADAPTER_KINDS = ("lora", "ia3", "frozen", "full")
#: Modules that ``model.adapter.add`` puts on top of ``kind``, in the (fixed) order they are applied.
ADDED_ADAPTERS = ("bottleneck", "gating", "prompt")
#: Blocks of a transformer layer a bottleneck adapter can follow.
BOTTLENECK_BLOCKS = ("attention", "feed_forward")

#: Family -> modules LoRA targets when ``target_modules`` is null. WavLM's attention calls torch's fused
#: ``multi_head_attention_forward`` with the raw q/k/v/out weights, bypassing any wrapper peft injects, so
#: LoRA there would get no gradient: WavLM adapts the feed-forward block instead.
LORA_DEFAULT_TARGETS: dict[str, list[str]] = {
    "wav2vec2": ["q_proj", "k_proj", "v_proj", "out_proj"],
    "hubert": ["q_proj", "k_proj", "v_proj", "out_proj"],
    "wavlm": ["intermediate_dense", "output_dense"],
    # Attention and feed-forward, as usc-sail/peft-ser and the layer-anchoring paper adapt Whisper.
    "whisper": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
}
#: Family -> (target_modules, feedforward_modules) for IA3 when both are null (IA3 paper: keys, values and
#: the feed-forward input; WavLM: feed-forward only, for the same fused-attention reason).
IA3_DEFAULT_TARGETS: dict[str, tuple[list[str], list[str]]] = {
    "wav2vec2": (["k_proj", "v_proj", "output_dense"], ["output_dense"]),
    "hubert": (["k_proj", "v_proj", "output_dense"], ["output_dense"]),
    "wavlm": (["intermediate_dense", "output_dense"], ["output_dense"]),
    "whisper": (["k_proj", "v_proj", "fc2"], ["fc2"]),
}


@dataclass
class AdapterConfig:
    """How the encoder is adapted: peft LoRA / IA3, frozen, or fully fine-tuned (``kind``), plus bottleneck
    adapters, layer gates and an embedding prompt on top (``add``).

    ``r``, ``alpha``, ``dropout``, ``target_modules``, ``feedforward_modules`` and ``layers_to_transform``
    are ignored by the kinds they do not apply to, so a sweep can switch ``kind`` without editing the rest.
    ``layers_to_transform`` applies to every adapter of the combination.
    """

    kind: str = field("lora", effect=RESULT, help="lora | ia3 | frozen (encoder untouched) | full (every encoder weight)")
    r: int = field(8, effect=RESULT, help="LoRA rank")
    alpha: int = field(16, effect=RESULT, help="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = field(0.05, effect=RESULT, help="LoRA dropout on the adapter input (also switched on for MC dropout)")
    target_modules: list[str] | None = field(None, effect=RESULT, help="module name suffixes to adapt; null = family default "
                                             "(wav2vec2/hubert: attention projections for lora; wavlm: "
                                             "intermediate_dense, output_dense; whisper: q/k/v/out_proj, "
                                             "fc1, fc2)")
    feedforward_modules: list[str] | None = field(None, effect=RESULT, help="IA3 only: targets scaled on their input "
                                                  "(subset of target_modules); null = family default")
    layers_to_transform: list[int] | None = field(None, effect=RESULT, help="transformer layer indexes to adapt; null = all")
    freeze_feature_encoder: bool = field(True, effect=RESULT, help="keep the CNN feature encoder (whisper: conv1, conv2) "
                                         "frozen (also under full)")
    add: list[str] = field(effect=RESULT, default_factory=list, help="adapters added on top of kind, any subset of "
                           f"{list(ADDED_ADAPTERS)}; applied after kind in that order whatever the list's order "
                           "(e.g. kind=lora, add=[bottleneck, gating])")
    bottleneck_dim: int = field(32, effect=RESULT, help="bottleneck adapters: width of the down-projection (D -> dim -> D)")
    bottleneck_blocks: list[str] = field(effect=RESULT, default_factory=lambda: ["attention", "feed_forward"],
                                         help="bottleneck adapters: after which blocks of each layer "
                                              "(attention, feed_forward)")
    bottleneck_scale: float = field(1.0, effect=RESULT, help="bottleneck adapters: scale of the adapter branch")
    gate_per_channel: bool = field(False, effect=RESULT, help="gating: one gate per channel of each layer's output instead "
                                   "of one per layer")
    prompt_length: int = field(8, effect=RESULT, help="prompt: learned vectors prepended to the CNN features "
                                "(wav2vec2 / hubert / wavlm)")

    def __post_init__(self) -> None:
        if self.kind not in ADAPTER_KINDS:
            raise ConfigError(f"model.adapter.kind must be one of {list(ADAPTER_KINDS)}, got {self.kind!r}")
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise ConfigError(f"model.adapter.r must be > 0, got {self.r!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise ConfigError(f"model.adapter.alpha must be > 0, got {self.alpha!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"model.adapter.dropout must be in [0, 1), got {self.dropout!r}")
        for key in ("target_modules", "feedforward_modules"):
            value = getattr(self, key)
            if value is not None and (len(value) == 0 or not all(isinstance(v, str) and v for v in value)):
                raise ConfigError(f"model.adapter.{key} must be null or a non-empty list of module names, "
                                  f"got {value!r}")
        if (self.kind == "ia3" and self.feedforward_modules is not None and self.target_modules is not None
                and not set(self.feedforward_modules) <= set(self.target_modules)):
            raise ConfigError("model.adapter.feedforward_modules must be a subset of model.adapter.target_modules"
                              f", got {self.feedforward_modules} vs {self.target_modules}")
        if self.layers_to_transform is not None:
            if not self.layers_to_transform or any(
                    isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in self.layers_to_transform):
                raise ConfigError("model.adapter.layers_to_transform must be null or a non-empty list of "
                                  f"layer indexes >= 0, got {self.layers_to_transform!r}")
        add = list(self.add)
        bad = [a for a in add if a not in ADDED_ADAPTERS]
        if bad or len(set(add)) != len(add):
            raise ConfigError(f"model.adapter.add must list distinct names from {list(ADDED_ADAPTERS)}, got "
                              f"{self.add!r}")
        if isinstance(self.bottleneck_dim, bool) or not isinstance(self.bottleneck_dim, int) or \
                self.bottleneck_dim <= 0:
            raise ConfigError(f"model.adapter.bottleneck_dim must be > 0, got {self.bottleneck_dim!r}")
        blocks = list(self.bottleneck_blocks or [])
        if not blocks or len(set(blocks)) != len(blocks) or any(b not in BOTTLENECK_BLOCKS for b in blocks):
            raise ConfigError(f"model.adapter.bottleneck_blocks must be a non-empty subset of "
                              f"{list(BOTTLENECK_BLOCKS)}, got {self.bottleneck_blocks!r}")
        if isinstance(self.bottleneck_scale, bool) or not isinstance(self.bottleneck_scale, (int, float)) or \
                self.bottleneck_scale <= 0:
            raise ConfigError(f"model.adapter.bottleneck_scale must be > 0, got {self.bottleneck_scale!r}")
        if isinstance(self.prompt_length, bool) or not isinstance(self.prompt_length, int) or self.prompt_length <= 0:
            raise ConfigError(f"model.adapter.prompt_length must be > 0, got {self.prompt_length!r}")
        if not isinstance(self.gate_per_channel, bool):
            raise ConfigError(f"model.adapter.gate_per_channel must be true or false, got {self.gate_per_channel!r}")
        if not isinstance(self.freeze_feature_encoder, bool):
            raise ConfigError("model.adapter.freeze_feature_encoder must be true or false, got "
                              f"{self.freeze_feature_encoder!r}")


@dataclass
class WapConfig:
    """The WAP-Transformer adapter (``model.wap``): a learned weighted average of the frozen encoder's hidden
    states feeding a small Transformer over frames, in front of the pooling. Pre-trained on the unlabelled
    pool by ``jobs.adapter_pretrain`` (or ``jobs.after`` with ``tapt.objective=adapter``), then fine-tuned
    with the pooling and head on the labelled clips."""

    enabled: bool = field(False, effect=RESULT, help="put the WAP-Transformer between the encoder's hidden states and the "
                          "pooling (replaces model.featurizer_layer's weighting)")
    depth: int = field(2, effect=RESULT, help="Transformer blocks")
    dim: int = field(256, effect=RESULT, help="width of the Transformer (narrower than the encoder)")
    heads: int = field(4, effect=RESULT, help="attention heads (must divide dim)")
    ff_dim: int = field(512, effect=RESULT, help="feed-forward width of each block")
    dropout: float = field(0.1, effect=RESULT, help="dropout inside the blocks")
    pos_kernel: int = field(15, effect=RESULT, help="depthwise convolutional positional embedding's kernel, in frames (odd; "
                            "0 = none)")
    checkpoint: str | None = field(None, effect=RESULT, path=PATH, help="pre-trained adapter weights (adapter/wap.safetensors of an "
                                   "adapter pre-training run); null = random initialisation")
    freeze: bool = field(False, effect=RESULT, help="keep the (pre-trained) adapter fixed while fine-tuning: only pooling and "
                         "head train")

    def __post_init__(self) -> None:
        for key in ("depth", "dim", "heads", "ff_dim"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.wap.{key} must be an integer >= 1, got {value!r}")
        if self.dim % self.heads:
            raise ConfigError(f"model.wap.heads={self.heads} must divide model.wap.dim={self.dim}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"model.wap.dropout must be in [0, 1), got {self.dropout!r}")
        if self.pos_kernel < 0 or (self.pos_kernel and self.pos_kernel % 2 == 0):
            raise ConfigError(f"model.wap.pos_kernel must be 0 or odd, got {self.pos_kernel}")
        if (self.checkpoint or self.freeze) and not self.enabled:
            raise ConfigError("model.wap.checkpoint / model.wap.freeze are set but model.wap.enabled is false")

    def architecture(self) -> dict:
        """The keys that shape the weights (a pre-trained checkpoint must match them)."""
        return {k: getattr(self, k) for k in ("depth", "dim", "heads", "ff_dim", "pos_kernel")}

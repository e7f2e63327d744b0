"""Cross-lingual layer anchoring: align source- and target-language features at chosen encoder layers.

While the emotion loss trains on labelled source-language clips, each step also encodes a batch of
*unlabelled* target-language clips; at every anchor (one layer, or a group of consecutive layers whose
utterance means are averaged: LAM-GL) a CORAL loss pulls the two batches' feature covariances together. The
gradient reaches the encoder only through trainable encoder weights (LoRA, bottleneck adapters, full), so
anchoring needs ``model.adapter.kind`` other than ``frozen``.

References:
    Upadhyay, Busso, Lee, 2024. A Layer-Anchoring Strategy for Enhancing Cross-Lingual Speech Emotion
    Recognition. arXiv:2407.04966.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ser_models.analysis.similarity import ANCHOR_MODES
from ser_models.config import RESULT, field
from ser_models.data.clips import collect_clips
from ser_models.exceptions import ConfigError
from ser_models.io import exists, read_json, write_json_atomic

#: ``anchoring.auto`` values.
AUTO_MODES = ("off", *ANCHOR_MODES)


@dataclass
class AnchoringConfig:
    """Where and how strongly source and target features are aligned (``anchoring`` in ``jobs.anchor``)."""

    weight: float = field(1.0e4, effect=RESULT, help="weight of the CORAL loss next to the emotion loss (0 = train on the "
                          "source language alone, the no-anchoring baseline). CORAL is divided by 4 D^2, so it is "
                          "tiny on wide layers (~1e-6 on Whisper-tiny's D = 384; each epoch's log line prints it). "
                          "Too large a weight lets the model squash the anchor layer (CORAL -> 0, one class "
                          "predicted: 1e5 did on the demo); sweep it")
    layers: list[int] = field(effect=RESULT, default_factory=lambda: [2],
                              help="anchor layers (hidden-state index: 0 = the encoder's input embedding, "
                                   "negative from the end); one = single-layer anchoring, several = several "
                                   "anchors; ignored when anchoring.auto chooses them")
    group_size: int = field(1, effect=RESULT, help="each anchor aligns the mean of this many consecutive layers starting at it "
                            "(group-layer anchoring, LAM-GL); 1 = single layers")
    auto: str = field("off", effect=RESULT, help="off | most_similar | least_similar: choose anchoring.top_k anchors from the "
                      "per-layer CKA of source and target clips of the same classes, measured before training")
    top_k: int = field(1, effect=RESULT, help="anchors chosen by anchoring.auto")
    similarity_clips_per_class: int = field(48, effect=RESULT, help="anchoring.auto: clips per class and language encoded for "
                                            "the CKA measurement")
    max_target_clips: int = field(1024, effect=RESULT, help="unlabelled target-language training clips held for anchoring "
                                  "(a random sample when the target language has more)")
    target_batch_size: int = field(0, effect=RESULT, help="target clips encoded per step (0 = train.optim.batch_size)")

    def __post_init__(self):
        if not self.weight >= 0:
            raise ConfigError(f"anchoring.weight must be >= 0, got {self.weight!r}")
        if self.auto not in AUTO_MODES:
            raise ConfigError(f"anchoring.auto must be one of {list(AUTO_MODES)}, got {self.auto!r}")
        if self.auto == "off" and not self.layers:
            raise ConfigError("anchoring.layers is empty and anchoring.auto=off: name the anchor layers")
        for key in ("group_size", "top_k", "similarity_clips_per_class", "max_target_clips"):
            if getattr(self, key) < 1:
                raise ConfigError(f"anchoring.{key} must be >= 1, got {getattr(self, key)}")
        if self.target_batch_size < 0:
            raise ConfigError(f"anchoring.target_batch_size must be >= 0, got {self.target_batch_size}")
        if self.target_batch_size == 1:
            raise ConfigError("anchoring.target_batch_size must be >= 2 (a covariance needs two clips) or 0")


def anchor_groups(layers: list[int], group_size: int, num_layers: int) -> list[list[int]]:
    """The layer groups aligned by CORAL: ``[[l, l+1, ..., l+g-1] for each anchor l]``.

    Args:
        layers: anchor layers (negative = from the end).
        group_size: g, consecutive layers per group.
        num_layers: L, the encoder's hidden-state count.

    Raises:
        ConfigError: an anchor or its group falls outside ``0..L-1`` (naming the key and the range).
    """
    groups = []
    for raw in layers:
        if not -num_layers <= int(raw) < num_layers:
            raise ConfigError(f"anchoring.layers holds {raw}, outside the encoder's {num_layers} hidden states "
                              f"({-num_layers}..{num_layers - 1})")
        start = int(raw) % num_layers
        if start + group_size > num_layers:
            raise ConfigError(f"anchor layer {raw} with anchoring.group_size={group_size} runs past the last hidden "
                              f"state ({num_layers - 1}): lower one of them")
        groups.append(list(range(start, start + group_size)))
    return groups


def sample_target_ids(ids, max_clips: int, seed: int) -> list[str]:
    """The unlabelled target clips held for anchoring: all of ``ids``, or a seeded random sample of
    ``max_clips`` when there are more (the first ids in sort order would favour a few speakers). Sorted."""
    if isinstance(ids, pa.Array):  # Arrow ids (sorted, as TrainingClips holds them): only the sample becomes Python
        if len(ids) <= max_clips:
            return sorted(ids.to_pylist())
        return sorted(ids.take(np.random.default_rng(seed).choice(len(ids), size=max_clips, replace=False)).to_pylist())
    ids = sorted(str(i) for i in ids)
    if len(ids) <= max_clips:
        return ids

    pick = np.random.default_rng(seed).choice(len(ids), size=max_clips, replace=False)
    return sorted(ids[i] for i in pick)


def encode_sample(pool, split: str, where: dict, model, per_class: int, seed: int = 0):
    """Per-layer utterance means of a class-balanced sample of a split's clips, encoded in this process.

    Reads at most ``per_class`` clips of each of ``model.labels`` (a bounded sample, never the pool).

    Args:
        model: an ``EmotionModel`` whose encoder is the one compared (:func:`choose_anchors` builds it frozen:
            the pretrained layers that anchoring chooses from).

    Returns:
        ``(features [N, L, D] float32, labels [N] class names)``.
    """

    from ser_models.training.batching import pooled_layer_features

    model_cfg = model.cfg

    meta = pool.metadata(columns=["utt_id", "label"], split=split, where=where)
    meta = meta[meta["label"].isin(list(model_cfg.labels))]
    picked = meta.sample(frac=1.0, random_state=seed).groupby("label").head(per_class)
    if picked.empty:
        return np.zeros((0, 0, 0), np.float32), np.zeros(0, dtype=object)
    rows = pool.metadata(columns=["utt_id", "label", "audio", "audio_format"], split=split,
                         where={**where, "utt_id": picked["utt_id"].tolist()})
    clips = collect_clips([{c: rows[c].to_numpy() for c in rows.columns}], model_cfg.labels).sorted_by_id()
    out = pooled_layer_features(model, clips, micro_batch=8)
    names = np.asarray([model_cfg.labels[i] for i in clips.labels], dtype=object)
    return out, names


def choose_anchors(pool, cfg: AnchoringConfig, model_cfg, split: str, column: str, source: str,
                   target: str, seed: int = 0, log=print) -> dict:
    """Anchor layers from the per-layer CKA of source and target clips of the same classes (``anchoring.auto``).

    Returns:
        ``{"layers": anchors, "mode", "diagonal": [L] per-layer CKA, "cka": [L, L], "pairs"}``.
    """

    from ser_models.analysis.similarity import layer_similarity, suggest_anchors
    from ser_models.models.model import EmotionModel

    # Built once for both groups, adapters off.
    model = EmotionModel(dataclasses.replace(model_cfg, adapter=dataclasses.replace(model_cfg.adapter, kind="frozen",
                                                                                     add=[]))).eval()
    fa, la = encode_sample(pool, split, {column: source}, model, cfg.similarity_clips_per_class, seed)
    fb, lb = encode_sample(pool, split, {column: target}, model, cfg.similarity_clips_per_class, seed)
    sim = layer_similarity(fa, la, fb, lb, repeats=5, seed=seed)
    diag = [float(x) for x in sim["cka"].diagonal()]
    layers = suggest_anchors(diag, cfg.top_k, cfg.auto)
    log(f"  layer CKA {source} vs {target} ({sim['pairs']} class-matched pairs): "
        + " ".join(f"L{i}={x:.2f}" for i, x in enumerate(diag)) + f" -> anchors ({cfg.auto}) {layers}")
    return {"layers": layers, "mode": cfg.auto, "diagonal": diag, "cka": sim["cka"].tolist(), "pairs": sim["pairs"]}


def resolve_anchors(pool, cfg: AnchoringConfig, model_cfg, split: str, column: str, source: str, target: str,
                    record_path, num_layers: int, seed: int = 0, log=print) -> dict:
    """The anchor groups of a run: from ``anchoring.layers`` or measured (``anchoring.auto``), recorded once.

    The choice is written to ``record_path`` (``anchors.json``) and read back by a resumed run, so a rerun
    trains with the same anchors without encoding the sample again.

    Args:
        num_layers: L, the encoder's hidden states.

    Returns:
        ``{"groups": [[layer, ...], ...], "layers": anchors, "mode": off | most_similar | least_similar, ...}``
        (measured choices add the per-layer CKA).
    """

    if exists(record_path):
        return read_json(record_path)
    if cfg.auto == "off":
        record = {"groups": anchor_groups(cfg.layers, cfg.group_size, num_layers), "mode": "off"}
        record["layers"] = [group[0] for group in record["groups"]]
    else:
        record = choose_anchors(pool, cfg, model_cfg, split, column, source, target, seed=seed, log=log)
        # A group that would run past the last layer starts lower instead (the top layer's group ends there).
        record["layers"] = sorted({min(x, num_layers - cfg.group_size) for x in record["layers"]})
        record["groups"] = anchor_groups(record["layers"], cfg.group_size, num_layers)
    write_json_atomic(record_path, record)
    return record

"""Per-layer probes: how much of each emotion task one frozen encoder layer carries.

A probe is the platform's own emotion head over one layer's utterance means (the frozen-encoder feature
cache), trained by the same :func:`~ser_models.training.fitting.fit` as every model, one task at a time:
the categorical classes (unweighted accuracy) or one of arousal / valence / dominance (CCC). The same head
over a learned softmax-weighted sum of all layers shows which layers a trained model leans on per task.

References:
    de Oliveira, Prabhu, Gerkmann, 2023. Leveraging Semantic Information for Efficient Self-Supervised
    Emotion Recognition with Audio-Textual Distilled Models. arXiv:2305.19184 (per-layer relevance of an SSL
    encoder for arousal, valence and dominance).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ser_models.data.clips import ClipSet
from ser_models.exceptions import ConfigError

#: The name of the categorical task (the dimensional tasks are named after their dimension).
CATEGORICAL = "categorical"
#: ``layer`` of a probe over the learned weighted sum of all layers.
WEIGHTED = -1


@dataclass
class SplitFeatures:
    """The cached features of one labelled split, held by a probe task (a few thousand clips at most).

    Attributes:
        ids: [N] clip ids.
        features: ``[N, L, D]`` float32 per-layer utterance means.
        labels: [N] class index in ``model.labels`` (-1 = none).
        targets: ``[N, K]`` float32 values of ``model.dimensions`` (NaN = none).
    """

    ids: list[str]
    features: np.ndarray
    labels: np.ndarray
    targets: np.ndarray


def probe_tasks(model_cfg, names: list[str] | None = None) -> list[str]:
    """The tasks to probe: ``categorical`` (when ``model.labels``) and each of ``model.dimensions``.

    Args:
        model_cfg: the ModelConfig.
        names: a subset to keep (None or [] = all).

    Raises:
        ConfigError: a name the model has no output for.
    """
    available = ([CATEGORICAL] if model_cfg.labels else []) + list(model_cfg.dimensions)
    if not names:
        return available
    bad = [n for n in names if n not in available]
    if bad:
        raise ConfigError(f"tasks {bad} are not outputs of the model (model.labels / model.dimensions give "
                          f"{available})")
    return list(names)


def task_model_config(model_cfg, task: str):
    """``model_cfg`` narrowed to one task: the classes alone, or one dimension alone."""
    if task == CATEGORICAL:
        return dataclasses.replace(model_cfg, dimensions=[])
    return dataclasses.replace(model_cfg, labels=[], dimensions=[task])


def task_clips(split: SplitFeatures, model_cfg, task: str):
    """The split's clips that have the task's target, as a feature-mode ``ClipSet``."""

    if task == CATEGORICAL:
        keep = np.flatnonzero(split.labels >= 0)
        targets = np.zeros((len(keep), 0), np.float32)
    else:
        k = list(model_cfg.dimensions).index(task)
        keep = np.flatnonzero(np.isfinite(split.targets[:, k]))
        targets = split.targets[keep, k:k + 1]
    labels = split.labels[keep] if task == CATEGORICAL else np.full(len(keep), -1, np.int64)
    return ClipSet(ids=[split.ids[i] for i in keep], labels=labels, features=split.features[keep], targets=targets)


class ProbeModel(nn.Module):
    """The emotion head over one layer (or a learned weighted sum) of cached per-layer features.

    It has the parts of an ``EmotionModel`` that train from the cache (``featurizer``, ``head``) and its
    ``forward_from_pooled``, so :func:`~ser_models.training.fitting.fit` trains it unchanged, without
    building the encoder.

    Args:
        cfg: a ModelConfig narrowed to one task (:func:`task_model_config`).
        num_layers: L.
        hidden_size: D.
        layer: the layer probed, or ``None`` (a learned softmax-weighted sum).
    """

    def __init__(self, cfg, num_layers: int, hidden_size: int, layer: int | None):
        from ser_models.encoders import LayerFeaturizer
        from ser_models.heads import EmotionHead

        super().__init__()
        self.cfg = cfg
        self.featurizer = LayerFeaturizer(num_layers, layer)
        self.head = EmotionHead(hidden_size, len(cfg.labels), cfg.head_hidden, cfg.head_dropout,
                                input_norm=cfg.head_input_norm, num_dimensions=len(cfg.dimensions),
                                value_range=tuple(cfg.dimension_range))

    def forward_from_pooled(self, pooled_layers: torch.Tensor, transcripts=None, speakers=None):
        """``[B, L, D]`` -> ``EmotionOutput`` (``EmotionModel.forward_from_pooled`` without a text branch or
        speaker statistics)."""
        from ser_models.models.model import EmotionOutput

        pooled = self.featurizer.forward_pooled(pooled_layers)
        logits, dims, embedding = self.head(pooled)
        return EmotionOutput(logits=logits, embedding=embedding, pooled=pooled, dimensions=dims)

    def forward_features(self, features: torch.Tensor, lengths=None, transcripts=None, speakers=None,
                         functionals=None):
        """What ``fit`` calls: pooled features only (``EmotionModel.forward_features``)."""
        return self.forward_from_pooled(features, transcripts, speakers)

    def forward_batch(self, batch):
        """``EmotionModel.forward_batch``: a batch of pooled features."""
        return self.forward_from_pooled(batch.features)


def run_probe(splits: dict[str, SplitFeatures], model_cfg, train_cfg, task: str, layer: int, seed: int,
              threads: int = 1) -> dict:
    """Train one probe and evaluate it on ``dev`` and ``test``.

    Args:
        splits: ``train``, ``dev`` and ``test`` :class:`SplitFeatures` (``test`` may be absent).
        model_cfg: the ModelConfig (head size, dropout, labels, dimensions).
        train_cfg: the TrainConfig of the probe (its ``seed`` is replaced by ``seed``).
        task: ``categorical`` or a dimension name.
        layer: the layer probed (0..L-1) or :data:`WEIGHTED`.
        seed: head initialisation, shuffling and dropout.
        threads: torch threads.

    Returns:
        ``{"task", "layer", "seed", "metric" (ua | ccc), "dev", "test", "best_epoch", "seconds",
        "weights" ([L] softmax weights, weighted-sum probes only)}``.
    """
    from ser_models.training.fitting import evaluate, fit

    torch.set_num_threads(max(int(threads), 1))
    t0 = time.perf_counter()
    cfg = task_model_config(model_cfg, task)
    tcfg = dataclasses.replace(train_cfg, optim=dataclasses.replace(train_cfg.optim, seed=int(seed)), select_metric="auto")
    clips = {name: task_clips(s, model_cfg, task) for name, s in splits.items()}
    num_layers, hidden = splits["train"].features.shape[1:]
    torch.manual_seed(int(seed))
    model = ProbeModel(cfg, num_layers, hidden, None if layer == WEIGHTED else int(layer))
    counts = ([int((clips["train"].labels == i).sum()) for i in range(len(cfg.labels))]
              if task == CATEGORICAL else None)
    state = fit(model, clips["train"], clips.get("dev"), tcfg, class_counts=counts, log=lambda _: None)
    metric = "ua" if task == CATEGORICAL else "ccc"
    row = {"task": task, "layer": int(layer), "seed": int(seed), "metric": metric, "best_epoch": state.best_epoch}
    for name in ("dev", "test"):
        c = clips.get(name)
        row[name] = float(evaluate(model, c, tcfg, torch.device("cpu"))[metric]) if c is not None and len(c) else None
    if layer == WEIGHTED:
        row["weights"] = model.featurizer.weights().detach().cpu().numpy().astype(float).tolist()
    row["seconds"] = time.perf_counter() - t0
    return row


def run_probes_on_ray(splits: dict[str, SplitFeatures], model_cfg, train_cfg, jobs: list[tuple[str, int, int]],
                      cpus_per_probe: float = 1.0, log=print) -> list[dict]:
    """Run every ``(task, layer, seed)`` probe as its own Ray task (the features shipped once).

    Args:
        splits: see :func:`run_probe`.
        jobs: ``(task, layer, seed)`` triples.
        cpus_per_probe: CPUs Ray reserves per probe (also its torch thread count).
        log: progress lines, one per tenth of the probes.

    Returns:
        The rows of :func:`run_probe`, in ``jobs`` order.
    """
    import ray

    remote = ray.remote(num_cpus=cpus_per_probe)(run_probe)
    data = ray.put(splits)
    threads = max(int(cpus_per_probe), 1)
    refs = [remote.remote(data, model_cfg, train_cfg, task, layer, seed, threads) for task, layer, seed in jobs]
    where = {ref: i for i, ref in enumerate(refs)}
    rows: list[dict | None] = [None] * len(refs)
    pending, done, step, t0 = list(refs), 0, max(len(refs) // 10, 1), time.perf_counter()
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for ref in ready:
            rows[where[ref]] = ray.get(ref)
            done += 1
            if done % step == 0 or done == len(refs):
                log(f"  probes: {done}/{len(refs)} done ({time.perf_counter() - t0:.0f}s)")
    return rows  # type: ignore[return-value]

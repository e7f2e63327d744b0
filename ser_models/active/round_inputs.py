"""What a round reads from the ledger besides its training feed: the class counts that weight the loss, whether
it trains on soft labels, and the labels and values the strategies read for the clips they score."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd


def known_targets(ids: np.ndarray, ledger, dimensions: list[str]) -> np.ndarray | None:
    """``[N, K]`` the ledger's dimensional values of ``ids`` (NaN for unlabelled clips); None without dimensions."""
    if not dimensions:
        return None
    known = ledger.targets().to_pandas().set_index("utt_id")[dimensions]
    return known.reindex(pd.Index(ids.astype(str))).to_numpy(np.float32)


def known_labels(ids: np.ndarray, ledger, labels: list[str], strategy) -> np.ndarray | None:
    """``[N]`` the ledger's class index of ``ids`` (-1 for unlabelled or unlabelable clips); None without classes
    or when ``strategy`` (a ``StrategyConfig``) reads no labels (only ``auto`` and ``class_balanced`` do: a pass
    over every id)."""
    if not labels or not (strategy.name == "auto" or strategy.class_balanced):
        return None
    index = {name: i for i, name in enumerate(labels)}
    known = ledger.labels()
    return np.asarray([index.get(known.get(u), -1) for u in ids.astype(str)], dtype=np.int64)


def class_counts(ledger, labels: list[str], source_labels: list[str] | None = None) -> list[float] | None:
    """Training clips per class for the class-weighted loss (``labels``' order); a soft-labelled clip counts by
    its vote shares, so a class that only ever gets minority votes still has a weight.

    Args:
        ledger: the round's training targets (a ledger view, or ledger + pseudo-labels).
        labels: the model's classes.
        source_labels: a cross-lingual run's source-group labels, which train too (hard labels; soft labels are
            then counted by their plurality label, as they train).
    """
    targets = ledger.targets()
    names = targets.column("label").to_pylist()
    soft = (targets.column("soft_label").to_pylist() if "soft_label" in targets.column_names
            else [None] * len(names))
    cross = source_labels is not None
    if cross:
        names += source_labels
        soft += [None] * (len(names) - len(soft))
    counts = dict.fromkeys(labels, 0.0)
    for label, shares in zip(names, soft):
        for name, share in (json.loads(shares).items() if shares and not cross else [(label, 1.0)]):
            if name in counts:
                counts[name] += share
    return [counts[name] for name in labels] or None


def trains_on_soft_labels(training, cross_lingual: bool, log) -> bool:
    """Train on soft labels: the round's targets hold some (several annotators, ``aggregate=soft`` or
    ``on_disagreement=soft``).

    Args:
        training: the round's training targets (a ledger view, or ledger + pseudo-labels).
        cross_lingual: a cross-lingual round, which trains on the plurality label (the source group has none).
        log: progress output; says how many clips carry vote shares.
    """
    import pyarrow.compute as pc

    targets = training.targets()
    if "soft_label" not in targets.column_names or not targets.num_rows:
        return False
    has = bool(pc.any(pc.is_valid(targets["soft_label"])).as_py())
    if has and cross_lingual:
        log("  cross_lingual: training on the plurality label of soft-labelled clips")
        return False
    if has:
        n = int(pc.sum(pc.is_valid(targets["soft_label"])).as_py())
        log(f"  training on soft labels: {n} of {targets.num_rows} clips carry their annotators' vote shares")
    return has

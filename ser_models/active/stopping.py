"""When to stop labelling: stabilizing predictions, overall uncertainty, and a round cap.

Every round the loop predicts a fixed **stop set** (a seeded sample of the training pool, labelled or not: the
same clips every round) and compares the round's predictions with the previous round's:

* **Stabilizing predictions** (Bloodgood and Vijay-Shanker, 2009): Cohen's kappa between the two rounds'
  predicted classes. When the model stops changing its mind on clips it was never shown, more labels of the
  same kind are unlikely to move it. The criterion fires after ``kappa_rounds`` consecutive rounds with
  kappa >= ``kappa_threshold``.
* **Overall uncertainty** (Zhu, Wang and Hovy, 2008): the stop set's mean least-confidence ``1 - max_c p_c``.
  It fires once the mean falls to ``uncertainty_threshold`` or below (off by default: its scale depends on the
  task), and every round reports it and its drop from the previous round.
* **A round cap** (``max_rounds``) ends the loop after that many training rounds whatever the budget says.

The signals are always computed and written to each round's ``metrics.json`` / ``metrics.jsonl`` (and drawn on
the learning curve); with ``end_loop: true`` a fired criterion also ends the loop before the next batch is
selected, so no label is bought after the signal. Only class models have a kappa; a dimensional-only model
reports none and never stops on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from ser_models.config import RESULT, field
from ser_models.exceptions import ConfigError
from ser_models.io import exists, read_json, read_parquet, write_parquet_atomic

__all__ = ["StopDecision", "StoppingConfig", "cohen_kappa", "decide", "stop_set_ids"]

_KEY = "active.stopping"


@dataclass
class StoppingConfig:
    """Stopping criteria of the AFTER loop (``active.stopping.*``)."""

    stop_set_size: int = field(1000, effect=RESULT, help="training clips (labelled or not) predicted every round to measure how "
                               "much predictions still change; capped at the training pool; 0 = no stop set")
    kappa_threshold: float = field(0.99, effect=RESULT, help="stabilizing predictions: kappa between consecutive rounds' stop-set "
                                   "predictions at or above this counts as stable")
    kappa_rounds: int = field(2, effect=RESULT, help="consecutive stable rounds before the kappa criterion fires")
    uncertainty_threshold: float | None = field(
        None, effect=RESULT, help="fire once the stop set's mean least-confidence (1 - max prob) is at or below this; null = "
                                  "report only")
    max_rounds: int | None = field(None, effect=RESULT, help="train at most this many rounds, whatever the budget (null = no cap)")
    end_loop: bool = field(False, effect=RESULT, help="end the loop when a criterion fires (no further labels are bought); "
                           "false = only report the signal")

    def __post_init__(self) -> None:
        if self.stop_set_size < 0:
            raise ConfigError(f"{_KEY}.stop_set_size must be >= 0, got {self.stop_set_size}")
        if not -1.0 <= self.kappa_threshold <= 1.0:
            raise ConfigError(f"{_KEY}.kappa_threshold must be within [-1, 1], got {self.kappa_threshold}")
        if self.kappa_rounds < 1:
            raise ConfigError(f"{_KEY}.kappa_rounds must be >= 1, got {self.kappa_rounds}")
        if self.uncertainty_threshold is not None and not 0.0 <= self.uncertainty_threshold <= 1.0:
            raise ConfigError(f"{_KEY}.uncertainty_threshold must be within [0, 1] or null, got "
                              f"{self.uncertainty_threshold}")
        if self.max_rounds is not None and self.max_rounds < 1:
            raise ConfigError(f"{_KEY}.max_rounds must be >= 1 or null, got {self.max_rounds}")


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa between two labelings of the same items.

    ``kappa = (p_o - p_e) / (1 - p_e)`` with ``p_o`` the observed agreement and ``p_e = sum_k pa_k * pb_k``
    the agreement expected from each labeling's class frequencies. When ``p_e = 1`` (both labelings put every
    item in the same single class) kappa is 1.0 if they agree everywhere (they then do).

    Args:
        a, b: [N] class ids or names, N >= 1.

    Returns:
        kappa in [-1, 1].
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"cohen_kappa needs two [N >= 1] labelings of the same items, got {a.shape} and {b.shape}")
    classes, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    ca, cb = codes[: len(a)], codes[len(a):]
    p_o = float(np.mean(ca == cb))
    pa = np.bincount(ca, minlength=len(classes)) / len(a)
    pb = np.bincount(cb, minlength=len(classes)) / len(b)
    p_e = float(pa @ pb)
    if p_e >= 1.0:
        return 1.0
    return (p_o - p_e) / (1.0 - p_e)


def stop_set_ids(train_ids, size: int, seed: int) -> list[str]:
    """The fixed stop set: ``min(size, len(train_ids))`` training clip ids (a list or Arrow strings), sorted,
    drawn with ``seed`` by position (no Python string per clip for Arrow ids)."""
    size = min(int(size), len(train_ids))
    if size <= 0:
        return []
    rng = np.random.default_rng([int(seed), 7919])  # its own stream: independent of the initial set's draw
    pick = rng.choice(len(train_ids), size=size, replace=False)
    if isinstance(train_ids, pa.Array):
        return sorted(train_ids.take(pa.array(pick)).to_pylist())
    return sorted(str(train_ids[int(i)]) for i in pick)


@dataclass
class StopDecision:
    """The stopping signals of one round (``stopping`` in its ``metrics.json``).

    Attributes:
        kappa: Cohen's kappa between this round's and the previous round's stop-set predictions (None in round 0
            or without classes).
        stable_rounds: consecutive rounds up to this one with kappa >= the threshold.
        uncertainty: the stop set's mean least-confidence ``1 - max p`` (None without classes).
        uncertainty_drop: previous round's uncertainty minus this one's (None in round 0).
        fired: criteria that fired this round (``"kappa"``, ``"uncertainty"``, ``"max_rounds"``).
        stop: the loop ends after this round (a criterion fired and ``end_loop`` is on, or the round cap).
        message: one line for people, e.g. ``"labelling more is unlikely to help: kappa >= 0.99 for 2 rounds"``.
    """

    kappa: float | None = None
    stable_rounds: int = 0
    uncertainty: float | None = None
    uncertainty_drop: float | None = None
    fired: list[str] | None = None
    stop: bool = False
    message: str = ""

    def to_json(self) -> dict:
        return {"kappa": self.kappa, "stable_rounds": self.stable_rounds, "uncertainty": self.uncertainty,
                "uncertainty_drop": self.uncertainty_drop, "fired": list(self.fired or []), "stop": self.stop,
                "message": self.message}


def decide(cfg: StoppingConfig, round_index: int, predictions: np.ndarray | None, probs: np.ndarray | None,
           previous_predictions: np.ndarray | None, previous: dict | None, last_round: bool) -> StopDecision:
    """This round's stopping signals, from its stop-set predictions and the previous round's.

    Args:
        cfg: the criteria.
        round_index: this training round (0-based).
        predictions: [S] this round's predicted class per stop-set clip (None: no classes or no stop set).
        probs: [S, C] this round's class probabilities on the stop set (None likewise).
        previous_predictions: [S] the previous round's predictions on the same clips in the same order (None in
            round 0).
        previous: the previous round's :meth:`StopDecision.to_json` (None in round 0).
        last_round: this is the budget's last round (the loop ends anyway; the signal is still reported).

    Returns:
        The round's :class:`StopDecision`.
    """
    d = StopDecision(fired=[])
    if predictions is not None and previous_predictions is not None and len(predictions):
        d.kappa = round(cohen_kappa(previous_predictions, predictions), 6)
        stable = d.kappa >= cfg.kappa_threshold
        d.stable_rounds = (int((previous or {}).get("stable_rounds", 0)) + 1) if stable else 0
        if d.stable_rounds >= cfg.kappa_rounds:
            d.fired.append("kappa")
    if probs is not None and len(probs):
        d.uncertainty = round(float(np.mean(1.0 - np.asarray(probs, np.float64).max(axis=1))), 6)
        prev_u = (previous or {}).get("uncertainty")
        if prev_u is not None:
            d.uncertainty_drop = round(float(prev_u) - d.uncertainty, 6)
        if cfg.uncertainty_threshold is not None and d.uncertainty <= cfg.uncertainty_threshold:
            d.fired.append("uncertainty")
    capped = cfg.max_rounds is not None and round_index + 1 >= cfg.max_rounds
    if capped:
        d.fired.append("max_rounds")
    reasons = []
    if "kappa" in d.fired:
        reasons.append(f"predictions are stable: kappa {d.kappa:.3f} >= {cfg.kappa_threshold:g} for "
                       f"{d.stable_rounds} round{'s' if d.stable_rounds > 1 else ''}")
    if "uncertainty" in d.fired:
        reasons.append(f"mean uncertainty {d.uncertainty:.3f} <= {cfg.uncertainty_threshold:g}")
    if reasons:
        d.message = "labelling more is unlikely to help: " + "; ".join(reasons)
    if capped:
        d.message = "; ".join(filter(None, [d.message, f"active.stopping.max_rounds={cfg.max_rounds} reached"]))
    d.stop = not last_round and (capped or (cfg.end_loop and bool(reasons)))
    return d


def stop_set_verdict(cfg: StoppingConfig, r: int, stop_ids: list[str], labels: list[str], round_dir,
                     scores, last_round: bool) -> dict:
    """Round ``r``'s stopping signals (:func:`decide`) from its predictions on the stop set and round ``r - 1``'s,
    each round's kept in its folder as ``stop_set.parquet`` (``utt_id``, ``prediction``, ``probs``; a resumed
    round reads it back).

    Args:
        cfg: the criteria.
        r: the training round.
        stop_ids: the stop set's clip ids (fixed when the run started; empty without classes).
        labels: the model's classes (logit order).
        round_dir: ``r -> folder`` of a round.
        scores: ``() -> Scores`` holding every stop-set clip, called only when round ``r``'s predictions are
            not stored yet.
        last_round: this is the budget's last round.

    Returns:
        :meth:`StopDecision.to_json` of the round's decision.

    Raises:
        ConfigError: stop-set clips are missing from the scores.
    """
    if not stop_ids:
        return decide(cfg, r, None, None, None, None, last_round).to_json()
    path = round_dir(r) / "stop_set.parquet"
    if exists(path):
        table = read_parquet(path)
        probs = np.asarray(table.column("probs").to_pylist(), np.float32)
    else:
        scored = scores()
        pos = pd.Index(scored.ids.astype(str)).get_indexer(stop_ids)
        if (pos < 0).any():
            raise ConfigError(f"round {r}: {int((pos < 0).sum())} stop-set clips were not scored")
        probs = scored.probs[pos]
        preds = [labels[int(k)] for k in probs.argmax(axis=1)]
        table = pa.table({"utt_id": pa.array(stop_ids, pa.string()), "prediction": pa.array(preds),
                          "probs": pa.array(probs.tolist(), pa.list_(pa.float32()))})
        write_parquet_atomic(path, table)
    previous, prev_stop = None, None
    prev_path = round_dir(r - 1) / "stop_set.parquet"
    if r > 0 and exists(prev_path):
        prev_table = read_parquet(prev_path)
        if prev_table.column("utt_id").to_pylist() == list(stop_ids):
            previous = np.asarray(prev_table.column("prediction").to_pylist(), dtype=object)
            prev_stop = (read_json(round_dir(r - 1) / "metrics.json").get("stopping")
                         if exists(round_dir(r - 1) / "metrics.json") else None)
    predictions = np.asarray(table.column("prediction").to_pylist(), dtype=object)
    return decide(cfg, r, predictions, probs, previous, prev_stop, last_round).to_json()

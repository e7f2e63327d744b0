"""Budget accounting for the loop: how much each round may label (clips, or seconds of audio with
``active.budget_hours``), how many clips to ask a strategy for, which picks fit, and whether a resumed run's
ledger still matches its budget.

What the budget covers: the *training* labels, those the rounds buy (``active.budget_*`` steps, counted over
the training pool, which excludes drawn evaluation sets). The evaluation sets a run draws for itself
(``active.evaluation``, :mod:`~ser_models.planning.evaluation_sets`) are a fixed cost paid once before round 0,
sized by their own keys; they are reported beside the budget, never taken from it. Why: a learning curve's
x-axis must mean the same thing in every run (labels the model trained on), whatever test set measured it,
and a strategy comparison must not change with the evaluation sizes. The total a team pays is the budget's
last step plus :meth:`LabelBudget.spent`'s ``test`` and ``dev``: the run log says it at the start, and
``report/labels.json`` after every round.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ser_models.active.loop_config import ActiveConfig
from ser_models.active.training_clips import TrainingClips
from ser_models.exceptions import ConfigError, OracleError, PoolError, PoolExhaustedError
from ser_models.io import exists, read_json, read_parquet, write_json_atomic


def fixed_at_start(path, values: Callable[[], dict]) -> dict:
    """What a run fixes at its first start (``values()``, written atomically to ``path``), read back on every
    restart, so that a pool that grew or changed since cannot change it."""
    if exists(path):
        return read_json(path)
    fixed = values()
    write_json_atomic(path, fixed)
    return fixed


class LabelBudget:
    """The labelled total each round reaches, in clips or seconds of audio.

    Args:
        active: the loop's config (``budget_*`` keys and ``stopping.max_rounds``).
        clips: the training clips and their seconds of audio (what labelling each clip costs).
    """

    def __init__(self, active: ActiveConfig, clips: TrainingClips):
        self.clips = clips
        self.unit = "seconds" if active.budget_hours else "clips"
        self.targets = (active.seconds_targets(clips.total_seconds) if self.unit == "seconds"
                        else active.targets(len(clips)))
        cap = active.stopping.max_rounds
        if cap is not None and cap < len(self.targets):
            self.targets = self.targets[:cap]  # the round cap: later rounds are never run or labelled for

    def __len__(self) -> int:
        return len(self.targets)

    def __repr__(self) -> str:
        return f"LabelBudget(unit={self.unit!r}, targets={self.targets})"

    def describe_evaluation(self, evaluation: dict[str, str], split: TrainingClips) -> str:
        """One line on the drawn evaluation sets' cost next to the budget (``evaluation``: ``{utt_id: purpose}``, {}
        = the pool's own dev / test splits; ``split``: every clip of the training split, with its seconds)."""
        if not evaluation:
            return "dev / test from the pool's splits"
        parts = []
        for purpose in ("test", "dev"):
            ids = [u for u, p in evaluation.items() if p == purpose]
            if ids:
                parts.append(f"{purpose} {len(ids)} clips ({np.nansum(split.seconds_of(ids)) / 3600:.2f} h)")
        last = self.targets[-1]
        budget = f"{last / 3600:.2f} h" if self.unit == "seconds" else f"{int(last)} clips"
        return f"drawn {', '.join(parts)}, labelled on top of the training budget ({budget})"

    def spent(self, ledger) -> dict:
        """Labels paid for so far, by purpose: ``{"train" | "test" | "dev" | "total": {"clips", "seconds"}}`` plus
        ``budget`` (the last step's target, in :attr:`unit`) and ``unit``. ``ledger`` is the whole
        :class:`~ser_models.data.ledger.LabelLedger` (every purpose)."""
        counts = ledger.counts()
        out = {p: {"clips": counts[p], "seconds": round(ledger.seconds(p), 3)} for p in ("train", "test", "dev")}
        out["total"] = {"clips": sum(counts.values()), "seconds": round(ledger.seconds(None), 3)}
        return {**out, "budget": self.targets[-1], "unit": self.unit}

    def clips_wanted(self, target, labelled: set[str], unlabelable: set[str]) -> int:
        """How many clips to ask the strategy for to reach ``target`` (clips, or seconds of audio).

        With an hour budget it asks for a quarter more than the mean unlabelled duration suggests (at least one),
        and :meth:`within` then keeps the picks, in pick order, that fit.
        """
        if self.unit == "clips":
            return int(target) - len(labelled)
        remaining = float(target) - float(np.nansum(self.clips.seconds_of(labelled)))
        free = self.clips.mask_without(labelled | unlabelable)
        count = int(free.sum())
        if not count:
            raise PoolExhaustedError("no unlabelled training clip is left to label")
        known = self.clips.seconds[free]
        known = known[~np.isnan(known)]  # the mean of the free clips that have a duration, as pandas takes it
        mean = float(known.mean()) if len(known) else float("nan")
        return int(min(count, max(1, np.ceil(1.25 * remaining / mean) + 1)))

    def within(self, ids: list[str], target, what: str, labelled: set[str] | None = None) -> list[str]:
        """The picks that fit an hour budget, in pick order (a clip too long for what is left is skipped, later
        shorter ones may still fit); ``ids`` unchanged with a clip budget."""
        if self.unit == "clips":
            return list(ids)
        left = float(target) - float(np.nansum(self.clips.seconds_of(labelled or ())))
        pos = self.clips.positions(ids)
        stray = [i for i, p in zip(ids, pos) if p < 0]
        if stray:
            raise PoolError(f"{len(stray)} picks are not training clips of this run, e.g. {stray[0]!r}: a strategy "
                            "may pick only the clips it was given")
        keep = []
        for i, d in zip(ids, self.clips.seconds[pos]):
            if d <= left + 1e-9:
                keep.append(i)
                left -= d
        if not keep:
            raise ConfigError(f"active.budget_hours leaves {max(left, 0.0):.1f} s for {what}, shorter than every "
                              "clip the strategy picked: widen the steps between active.budget_hours")
        return keep

    def check(self, r: int, ledger, dropped: pd.DataFrame, dropped_path, picked: int | None = None) -> None:
        """Round ``r`` sees exactly the labels its rounds bought (a changed budget would mix two runs).

        A round's batch may be shorter than its budget step asked for (``active.max_per_recording`` leaves too few
        recordings open, or an hour budget's last clips do not fit): the labels then fall short of the target, and
        the next round asks for the rest. So the ledger must hold what the stored selections picked, never more
        than the target.

        Args:
            r: the round.
            ledger: the ledger as of round ``r``.
            dropped: clips the oracle dropped (``utt_id, round, reason``); they spent the budget too.
            dropped_path: where those are kept, for the error message.
            picked: distinct clips in the stored selections of the initial set and rounds ``0..r-1``
                (:func:`picked_so_far`); None (a selection is missing) holds a clip budget to its exact target.

        Raises:
            OracleError: the round has no labelled clip at all.
            ConfigError: the ledger holds more labels than the target, or not the clips the selections picked
                (the budget changed).
        """
        if not len(ledger):
            raise OracleError(f"round {r} has no labelled clip: the oracle dropped every clip of the initial set "
                              f"(see {dropped_path})")
        # Picked for rounds 0..r but dropped by the annotators (a clip is never both: see LabelHandover).
        lost = len(set(dropped.loc[dropped["round"] <= r, "utt_id"]) - ledger.ids())
        has = f"the ledger has {len(ledger)} in rounds 0..{r}" + (f" (+ {lost} dropped)" if lost else "")
        changed = ": was the budget changed between runs of this output_dir?"
        n = len(ledger) + lost
        if self.unit == "clips" and (n > self.targets[r] or (picked is None and n != self.targets[r])):
            raise ConfigError(f"round {r} expects {'' if picked is None else 'at most '}{self.targets[r]} labelled "
                              f"clips, {has}{changed}")
        if self.unit == "seconds" and ledger.seconds() > self.targets[r] + 1e-6:
            raise ConfigError(f"round {r} may use {self.targets[r]:.1f} s of labelled audio, the ledger has "
                              f"{ledger.seconds():.1f} s in rounds 0..{r}: was active.budget_hours changed between "
                              "runs of this output_dir?")
        if picked is not None and n != picked:
            raise ConfigError(f"round {r} expects the {picked} clips that the initial set and rounds 0..{r - 1} "
                              f"picked (their selection.parquet), {has}{changed}")


def picked_so_far(paths: list) -> int | None:
    """Distinct clips in the stored selections at ``paths`` (``selection.parquet`` files with a ``utt_id``
    column: the initial set's and each earlier round's), or None when one is missing (a run folder written before
    selections were kept)."""
    chunks = []
    for path in paths:
        if not exists(path):
            return None
        chunks += read_parquet(path, columns=["utt_id"]).column("utt_id").chunks
    return int(pc.count_distinct(pa.chunked_array(chunks, pa.string())).as_py())  # Arrow: no str per clip

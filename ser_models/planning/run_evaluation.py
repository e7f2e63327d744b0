"""A run's dev and test sets as the loop uses them (:class:`RunEvaluation`): where they come from, the clips drawn
(:mod:`ser_models.planning.evaluation_sets` draws them), their labelling through the run's oracle, and the
datasets that measure each round; and :func:`without_ids`, which keeps them out of what trains or is scored."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ser_models.io import StoragePath, exists, read_parquet
from ser_models.planning.evaluation_sets import (
    EVALUATION_PURPOSES,
    check_evaluation_pool,
    describe_source,
    draw_config,
    evaluation_sets,
    evaluation_source,
)


def without_ids(table: pa.Table, ids: pa.Array) -> pa.Table:
    """``map_batches`` body: the rows of ``table`` whose ``utt_id`` is not in ``ids`` (keeps a run's evaluation
    clips out of what trains or is scored)."""
    return table.filter(pc.invert(pc.is_in(table.column("utt_id"), value_set=ids)))


class RunEvaluation:
    """A run's dev and test sets as the loop uses them: where they come from, which clips were drawn, their
    labelling through the run's oracle, and the datasets that measure each round.

    Args:
        pool: the opened pool.
        out: the run folder (the draw lives in ``rounds/evaluation/``).
        active: ``ActiveConfig`` (``evaluation``, ``seed``).
        model_cfg: ``ModelConfig`` (its targets decide whether the pool's splits are labelled).
        handover: the run's :class:`~ser_models.active.handover.LabelHandover` (its oracle labels the drawn
            sets; the clips it cannot label are never drawn).
        where: the pool filter of the loop (cross-lingual: the target group).
        pool_checked: the caller already ran :func:`check_evaluation_pool`.
        cross_lingual: cross-lingual runs evaluate on the pool's splits only.
        log: progress output.

    Attributes:
        source: ``"pool"`` (the pool's splits), ``"test"`` (its test split, a drawn dev set) or ``"loop"``.
        purposes: ``{utt_id: "test" | "dev"}`` of the drawn sets ({} with the pool's splits).
        ids: the drawn clips (what training, scoring and selection leave out).
    """

    def __init__(self, pool, out: StoragePath, active, model_cfg, handover, where: dict | None = None,
                 pool_checked: bool = False, cross_lingual: bool = False, log: Callable[[str], None] = print):
        self.pool, self.handover, self.log = pool, handover, log
        self.source = evaluation_source(active.evaluation, pool, model_cfg)
        record = out / "rounds" / "evaluation" / "selection.parquet"
        if self.source != "loop" and exists(record) and (
                self.source == "pool" or "test" in set(read_parquet(record, columns=["purpose"]).column(0).to_pylist())):
            # The run drew its own sets: they stay its sets, even if the pool has labelled splits by now (the
            # ledger labelled them for evaluation, and the learning curve keeps one test set).
            log("evaluation: this run drew its own sets; it keeps them (the pool's dev / test splits are not used)")
            self.source = "loop"
        elif self.source != "loop":  # the pool's splits in use, and the keys that then do nothing
            log(describe_source(self.source, pool, active.evaluation))
        if not pool_checked:
            check_evaluation_pool(pool, model_cfg, self.source, cross_lingual=cross_lingual)
        self.purposes: dict[str, str] = {}
        if self.source != "pool":
            drawn = evaluation_sets(pool, out / "rounds" / "evaluation", draw_config(active.evaluation, self.source),
                                    active.seed,
                                    where=where, exclude=handover.unlabelable, log=log,
                                    labels=model_cfg.labels, budget=active)
            self.purposes = dict(zip(drawn["utt_id"].astype(str), drawn["purpose"]))
            self.units = set(drawn["unit"].astype(str))
        self.ids = set(self.purposes)
        self.where = where or {}

    def held_out(self) -> set[str]:
        """The drawn clips and every training-split clip that shares a unit with them (a clip a grown pool
        added to a test speaker or recording): none of them trains, is scored or is selected.

        Returns:
            Utt ids (empty with the pool's splits).
        """
        ids = set(self.ids)
        units = getattr(self, "units", set())
        for col in sorted({u.split("=", 1)[0] for u in units} - {"clip"}):
            values = {u.split("=", 1)[1] for u in units if u.startswith(col + "=")}
            # Arrow, not a frame of Python objects: this reads every training clip's unit
            t = self.pool.table(["utt_id", col], split="train", where=self.where)
            values_of = t.column(col)
            if not pa.types.is_string(values_of.type):  # the units spell values as pandas does
                values_of = pa.array(values_of.to_pandas().astype(str), pa.string())
            shared = pc.and_(pc.is_valid(t.column(col)),
                             pc.fill_null(pc.is_in(values_of, value_set=pa.array(sorted(values), pa.string())), False))
            ids |= set(t.column("utt_id").filter(shared).to_pylist())
        return ids

    def training_dropped(self) -> pd.DataFrame:
        """Clips the oracle dropped among the training picks (``utt_id, round, reason``): a dropped evaluation
        clip leaves its set and spends no training budget."""
        dropped = self.handover.dropped()
        return dropped[~dropped["utt_id"].isin(self.ids)] if self.ids else dropped

    def label(self, ledger) -> None:
        """Have the drawn sets labelled unless the ledger holds (or the oracle dropped) every clip: the simulated
        oracle answers at once, people through ``rounds/evaluation/to_label.csv`` or the run's Label Studio
        evaluation project (``LabellingPending`` until they are done).

        Args:
            ledger: the run's ledger (every purpose).
        """
        decided = ledger.ids(None) | set(self.handover.dropped()["utt_id"])
        ids = [u for p in EVALUATION_PURPOSES for u in sorted(self.purposes) if self.purposes[u] == p]
        if not set(ids) - decided:
            return
        self.handover.label(ids, 0, -1, purposes=self.purposes,
                            reason=[f"evaluation set ({self.purposes[u]})" for u in ids])
        counts = ledger.counts()
        self.log(f"evaluation sets labelled: test {counts['test']}, dev {counts['dev']} clips "
                 f"({ledger.seconds(None) - ledger.seconds():.0f} s of audio); they never train and are never "
                 "selected")

    def feeds(self, ledger, cache, dimensions: list[str]) -> dict:
        """``{"dev": ds, "test": ds}`` materialized, from the feature cache when ``cache`` is given: the pool's
        splits, or the drawn clips the ledger labelled for evaluation, with its labels (a set with no label,
        e.g. ``dev_size=0``, is left out)."""
        splits = {"pool": ("dev", "test"), "test": ("test",)}.get(self.source, ())
        feeds = {}
        if self.source != "pool":
            views = {p: ledger.view(p) for p in ("dev", "test") if p not in splits}
            views = {p: v for p, v in views.items() if len(v)}
            if cache is None:
                feeds = {p: self.pool.labelled(v).materialize() for p, v in views.items()}
            else:
                feeds = {p: cache.dataset(targets=v.targets()).materialize() for p, v in views.items()}
        if cache is None:
            return {**feeds, **{s: self.pool.dataset(s, where=self.where).materialize() for s in splits}}
        cols = ["utt_id", "label", *dimensions]
        meta = {s: self.pool.metadata(columns=cols, split=s) for s in splits}
        # Filtered on the workers from the cache.
        return {**feeds, **{s: cache.dataset(targets=pa.Table.from_pandas(m[cols], preserve_index=False)).materialize()
                            for s, m in meta.items()}}


__all__ = ["RunEvaluation", "without_ids"]

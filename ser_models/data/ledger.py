"""``LabelLedger``: the append-only record of which clip got which label, in which round, from whom.

The ledger is the truth of an active-learning run (DESIGN.md §3). It is one Parquet file rewritten
atomically on every append (temporary file + fsync + rename through :mod:`ser_models.io`), so a crash
leaves the previous complete file; a leftover temporary file is never read. Appends are idempotent: a
resumed round that re-appends exactly the labels it already wrote changes nothing.

One writer at a time: the ledger assumes the active-learning driver is its only writer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa

from ser_models import io
from ser_models.exceptions import LedgerError

__all__ = ["LEDGER_SCHEMA", "LabelLedger"]

LEDGER_SCHEMA = pa.schema([
    ("utt_id", pa.string()),
    ("label", pa.string()),
    ("round", pa.int32()),
    ("oracle", pa.string()),
    ("time", pa.timestamp("us", tz="UTC")),
])


def _show(ids: Sequence[str], limit: int = 10) -> str:
    ids = list(ids)
    return ", ".join(map(repr, ids[:limit])) + (f" ... ({len(ids)} in all)" if len(ids) > limit else "")


class LabelLedger:
    """Append-only label ledger at ``path`` (a local path or a ``pyarrow.fs`` URI, e.g. ``s3://b/labels/ledger.parquet``).

    The file is created by the first :meth:`append`; until then the ledger is empty.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self._table = self._load()

    def _load(self) -> pa.Table:
        if not io.exists(self.path):
            return LEDGER_SCHEMA.empty_table()
        try:
            table = io.read_parquet(self.path)
        except Exception as exc:
            raise LedgerError(f"cannot read label ledger {self.path}: {exc}") from exc
        missing = [n for n in LEDGER_SCHEMA.names if n not in table.column_names]
        if missing:
            raise LedgerError(f"label ledger {self.path} lacks columns {missing}; expected {LEDGER_SCHEMA.names}")
        try:
            return table.select(LEDGER_SCHEMA.names).cast(LEDGER_SCHEMA)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise LedgerError(f"label ledger {self.path} has unexpected column types: {exc}") from exc

    def append(self, round: int, ids: Sequence[str], labels: Sequence[str], oracle: str) -> int:  # noqa: A002
        """Record ``labels`` for ``ids`` in ``round``; rewrites the file atomically.

        Rows identical in (utt_id, label, round) to rows already in the ledger are skipped, so a resumed
        round may re-append its labels safely.

        Args:
            round: the active-learning round (>= 0).
            ids: clip ids.
            labels: one label per id.
            oracle: who labelled (``SimulatedOracle``, ``file:<path>``, ...).

        Returns:
            The number of new rows written (0 for a pure re-append).

        Raises:
            LedgerError: lengths differ, an id repeats within ``ids``, an id is already labelled with a
                different label or in a different round, or a label is empty.
        """
        ids = [str(i) for i in ids]
        labels = [str(x) if x is not None else "" for x in labels]
        if int(round) != round or round < 0:
            raise LedgerError(f"ledger {self.path}: round must be an integer >= 0, got {round!r}")
        if len(ids) != len(labels):
            raise LedgerError(f"ledger {self.path}: {len(ids)} ids but {len(labels)} labels")
        counts = pd.Series(ids).value_counts()
        dup = counts[counts > 1].index.tolist()
        if dup:
            raise LedgerError(f"ledger {self.path}: ids repeated within one append: {_show(dup)}")
        empty = [i for i, lab in zip(ids, labels) if not lab.strip()]
        if empty:
            raise LedgerError(f"ledger {self.path}: empty labels for {_show(empty)}")
        known = self.labelled().set_index("utt_id")
        new_ids, new_labels, conflicts = [], [], []
        for i, lab in zip(ids, labels):
            if i in known.index:
                row = known.loc[i]
                if row["label"] != lab or int(row["round"]) != int(round):
                    conflicts.append(f"{i!r} (ledger: {row['label']!r} in round {int(row['round'])}; "
                                     f"new: {lab!r} in round {int(round)})")
            else:
                new_ids.append(i)
                new_labels.append(lab)
        if conflicts:
            raise LedgerError(f"ledger {self.path}: {len(conflicts)} ids are already labelled differently: "
                              + "; ".join(conflicts[:10]) + (" ..." if len(conflicts) > 10 else ""))
        if not new_ids:
            return 0
        now = datetime.now(timezone.utc)
        new = pa.table({
            "utt_id": pa.array(new_ids, pa.string()),
            "label": pa.array(new_labels, pa.string()),
            "round": pa.array(np.full(len(new_ids), round, np.int32)),
            "oracle": pa.array([str(oracle)] * len(new_ids), pa.string()),
            "time": pa.array([now] * len(new_ids), pa.timestamp("us", tz="UTC")),
        }, schema=LEDGER_SCHEMA)
        table = pa.concat_tables([self._table, new])
        io.write_parquet_atomic(self.path, table)
        self._table = table
        return len(new_ids)

    def labelled(self) -> pd.DataFrame:
        """All rows: utt_id, label, round, oracle, time (in append order)."""
        return self._table.to_pandas()

    def ids(self) -> set[str]:
        return set(self._table.column("utt_id").to_pylist())

    def labels(self) -> dict[str, str]:
        """utt_id -> label."""
        return dict(zip(self._table.column("utt_id").to_pylist(), self._table.column("label").to_pylist()))

    def rounds(self) -> list[int]:
        """Sorted distinct rounds present."""
        return sorted({int(r) for r in self._table.column("round").to_pylist()})

    def round(self, r: int) -> pd.DataFrame:
        """The rows labelled in round ``r`` (possibly empty)."""
        df = self.labelled()
        return df[df["round"] == r].reset_index(drop=True)

    def labelled_map(self, ids: Sequence[str]) -> np.ndarray:
        """Round stamp of each id, baal style: 0 = unlabelled, ``k = round + 1`` = labelled in round ``round``.

        The ``+1`` keeps round 0 (the cold-start set) distinct from "unlabelled".

        Args:
            ids: [N] clip ids.

        Returns:
            [N] int64.
        """
        stamp = dict(zip(self._table.column("utt_id").to_pylist(), self._table.column("round").to_pylist()))
        return np.fromiter((stamp.get(str(i), -1) + 1 for i in ids), dtype=np.int64, count=len(ids))

    def __len__(self) -> int:
        return self._table.num_rows

    def as_of(self, round: int) -> LedgerView:  # noqa: A002
        """A read-only snapshot of the rows labelled in rounds ``<= round``.

        Training round ``r`` must see exactly these, even when a previous run died after appending round
        ``r + 1``'s labels but before round ``r`` was marked finished: resuming then redoes round ``r`` on
        the same labels instead of refusing the run.
        """
        import pyarrow.compute as pc

        return LedgerView(self._table.filter(pc.less_equal(self._table["round"], round)), round)

    def __repr__(self) -> str:
        return f"LabelLedger(path={self.path!r}, labelled={len(self)}, rounds={self.rounds()})"


class LedgerView:
    """Rows of a :class:`LabelLedger` up to a round: ``labels()``, ``ids()``, ``len()`` (what training and
    selection read), nothing that writes."""

    def __init__(self, table: pa.Table, round: int):  # noqa: A002
        self._table = table
        self.round = round

    def labels(self) -> dict[str, str]:
        """utt_id -> label."""
        return dict(zip(self._table.column("utt_id").to_pylist(), self._table.column("label").to_pylist()))

    def ids(self) -> set[str]:
        return set(self._table.column("utt_id").to_pylist())

    def __len__(self) -> int:
        return self._table.num_rows

    def __repr__(self) -> str:
        return f"LedgerView(round<={self.round}, labelled={len(self)})"

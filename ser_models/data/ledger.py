"""``LabelLedger``: the append-only record of which clip got which label, in which round, from whom.

The ledger is the truth of an active-learning run (docs/concepts.md, "Ledger"). It is one Parquet file rewritten
atomically on every append (temporary file + fsync + rename through :mod:`ser_models.io`), so a crash
leaves the previous complete file; a leftover temporary file is never read. Appends are idempotent: a
resumed round that re-appends exactly the labels it already wrote changes nothing.

Every label has a *purpose*: ``train`` (picked by the loop's rounds: it trains the model), or ``dev`` / ``test``
(an evaluation set the loop drew from the pool and had labelled before round 0, see
:mod:`ser_models.planning.evaluation_sets`). Evaluation labels never train: every read that feeds training or
selection (:meth:`LabelLedger.labels`, :meth:`~LabelLedger.targets`, :meth:`~LabelLedger.as_of`, ``len``)
sees the ``train`` rows only unless it asks for another purpose. A ledger written before purposes existed
reads as all ``train``.

Appends never lose a row another process committed: each append takes the ledger's own short lock (a
``.<file>.lock`` lock file beside it, :class:`~ser_models.locks.FolderLock`; a second appender waits up to
:data:`APPEND_WAIT_S`), *re-reads the file* under it, checks the new rows against what is there now, and
writes the union. The write is fenced (:func:`~ser_models.locks.fenced_for`): it happens only while the append
lock, and the run folder's lock when this process holds it, still name this writer, so a writer whose lock was
taken over (while it was paused, say) stops without committing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ser_models import io
from ser_models.exceptions import LedgerError
from ser_models.locks import FolderLock, fenced_for

__all__ = ["DIMENSION_COLUMNS", "LEDGER_SCHEMA", "PURPOSES", "TARGETS_SCHEMA", "LabelLedger", "LedgerView"]

#: Seconds an append waits for another process's append to the same ledger (each holds it for one rewrite).
APPEND_WAIT_S = 30.0
#: Dimensional columns (``model.dimensions`` names); null where the oracle gave no value.
DIMENSION_COLUMNS = ("arousal", "valence", "dominance")
LEDGER_SCHEMA = pa.schema([
    ("utt_id", pa.string()),
    ("label", pa.string()),
    ("round", pa.int32()),
    ("oracle", pa.string()),
    ("time", pa.timestamp("us", tz="UTC")),
    *((name, pa.float64()) for name in DIMENSION_COLUMNS),
    ("seconds", pa.float64()),  # the clip's duration: what its label cost (null when the caller did not say)
    ("annotator", pa.string()),  # who labelled it (comma-separated when several people did); null = unknown
    # JSON {class: share of the annotators' votes} when several annotators' soft label is kept; null = hard
    ("soft_label", pa.string()),
    # what the label is for: "train" (the rounds), "dev" or "test" (evaluation sets; never trained on)
    ("purpose", pa.string()),
])
#: The purposes a label may have; ``train`` is the only one training and selection read.
PURPOSES = ("train", "dev", "test")
#: What training reads from a ledger: :meth:`LabelLedger.targets`.
TARGETS_SCHEMA = pa.schema([LEDGER_SCHEMA.field(n) for n in ("utt_id", "label", *DIMENSION_COLUMNS, "soft_label")])


def _same_value(a, b) -> bool:
    """Equal floats, or both missing (None / NaN)."""
    a_missing, b_missing = a is None or pd.isna(a), b is None or pd.isna(b)
    return (a_missing and b_missing) or (not a_missing and not b_missing and float(a) == float(b))


def _missing(value) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _describe(label, values) -> str:
    dims = ", ".join(f"{n}={float(values[n]):g}" for n in DIMENSION_COLUMNS
                     if values[n] is not None and not pd.isna(values[n]))
    return repr(label or None) + (f" ({dims})" if dims else "")


def _total_seconds(table: pa.Table) -> float:
    import pyarrow.compute as pc

    total = pc.sum(table["seconds"]).as_py()
    return float(total or 0.0)


def _for(purpose: str) -> str:
    return "" if purpose == "train" else f" for the {purpose} set"


def _of(table: pa.Table, purpose: str | None) -> pa.Table:
    """The rows of ``table`` with ``purpose`` (None = every row)."""
    import pyarrow.compute as pc

    return table if purpose is None else table.filter(pc.equal(table["purpose"], purpose))


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
            # One read of the whole file: a reader that opened it twice (footer, then pages) while an append
            # renamed a new version over it mixed the two ("Page was smaller than expected").
            table = pq.read_table(pa.BufferReader(io.read_bytes(self.path)))
        except Exception as exc:
            raise LedgerError(f"cannot read label ledger {self.path}: {exc}") from exc
        for name in (*DIMENSION_COLUMNS, "seconds", "annotator", "soft_label"):  # ledgers written before them
            if name not in table.column_names:
                table = table.append_column(name, pa.nulls(table.num_rows, LEDGER_SCHEMA.field(name).type))
        if "purpose" not in table.column_names:  # written before purposes: every label was a training label
            table = table.append_column("purpose", pa.array(["train"] * table.num_rows, pa.string()))
        missing = [n for n in LEDGER_SCHEMA.names if n not in table.column_names]
        if missing:
            raise LedgerError(f"label ledger {self.path} lacks columns {missing}; expected {LEDGER_SCHEMA.names}")
        try:
            return table.select(LEDGER_SCHEMA.names).cast(LEDGER_SCHEMA)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise LedgerError(f"label ledger {self.path} has unexpected column types: {exc}") from exc

    def append(self, round: int, ids: Sequence[str], labels: Sequence[str | None], oracle: str,  # noqa: A002
               dimensions: Mapping[str, Sequence[float]] | None = None,
               seconds: Sequence[float] | None = None, annotators: Sequence[str | None] | None = None,
               times: Sequence | None = None, soft_labels: Sequence[str | None] | None = None,
               purpose: str = "train") -> int:
        """Record ``labels`` (and dimensional values) for ``ids`` in ``round``; rewrites the file atomically.

        Rows identical in (utt_id, label, dimensional values, round) to rows already in the ledger are
        skipped, so a resumed round may re-append its labels safely.

        Args:
            round: the active-learning round (>= 0).
            ids: clip ids.
            labels: one label per id; None or "" where the clip gets dimensional values only.
            oracle: who labelled (``SimulatedOracle``, ``file:<path>``, ...).
            dimensions: ``{name: [value per id]}`` for names in :data:`DIMENSION_COLUMNS` (NaN/None = none).
            seconds: [len(ids)] each clip's duration in seconds (what labelling it cost); None = unknown.
                Not part of a row's identity: a re-append with other durations is still a no-op.
            annotators: [len(ids)] who labelled each clip (None = unknown). Not part of a row's identity.
            times: [len(ids)] when each clip was labelled (tz-aware or UTC datetimes; None = now). Not part of a
                row's identity.
            soft_labels: [len(ids)] JSON ``{class: vote share}`` per clip, None for a hard label. Not part of a
                row's identity.
            purpose: one of :data:`PURPOSES` for every row: ``train`` for the rounds' labels, ``dev`` / ``test``
                for an evaluation set's. Part of a row's identity: a clip labelled for evaluation can never be
                appended again as a training label (or the other way round).

        Returns:
            The number of new rows written (0 for a pure re-append).

        Raises:
            LedgerError: lengths differ, an id repeats within ``ids``, an id is already labelled differently
                or in a different round or for a different purpose, a row carries neither a label nor a
                dimensional value, a dimension name is unknown, a value is not finite, or ``purpose`` is unknown.
        """
        ids = [str(i) for i in ids]
        labels = [str(x).strip() if x is not None and not (isinstance(x, float) and np.isnan(x)) else ""
                  for x in labels]
        if purpose not in PURPOSES:
            raise LedgerError(f"ledger {self.path}: purpose must be one of {list(PURPOSES)}, got {purpose!r}")
        if int(round) != round or round < 0:
            raise LedgerError(f"ledger {self.path}: round must be an integer >= 0, got {round!r}")
        if len(ids) != len(labels):
            raise LedgerError(f"ledger {self.path}: {len(ids)} ids but {len(labels)} labels")
        dims = self._dimension_arrays(ids, dimensions or {})
        secs = np.full(len(ids), np.nan) if seconds is None else np.asarray(
            [np.nan if v is None else v for v in seconds], dtype=np.float64)
        if len(secs) != len(ids):
            raise LedgerError(f"ledger {self.path}: {len(ids)} ids but {len(secs)} seconds values")
        bad = np.isinf(secs) | (np.nan_to_num(secs, nan=0.0) < 0)
        if bad.any():
            raise LedgerError(f"ledger {self.path}: seconds must be finite and >= 0; bad for "
                              f"{_show([ids[k] for k in np.flatnonzero(bad)])}")
        counts = pd.Series(ids).value_counts()
        dup = counts[counts > 1].index.tolist()
        if dup:
            raise LedgerError(f"ledger {self.path}: ids repeated within one append: {_show(dup)}")
        has_dims = np.isfinite(np.stack(list(dims.values()), 1)).any(1) if dims else np.zeros(len(ids), bool)
        empty = [i for i, lab, d in zip(ids, labels, has_dims) if not lab and not d]
        if empty:
            raise LedgerError(f"ledger {self.path}: empty labels for {_show(empty)} (and no dimensional values)")
        extra = {"annotator": annotators, "time": times, "soft_label": soft_labels}
        for key, values in extra.items():
            if values is not None and len(values) != len(ids):
                raise LedgerError(f"ledger {self.path}: {len(ids)} ids but {len(values)} {key} values")
        with self._append_lock():
            # Under the lock, against the file as it is now: rows another process appended since this ledger
            # was loaded are kept (and checked against), never overwritten by a stale copy.
            self._table = self._load()
            return self._append_rows(round, ids, labels, oracle, dims, secs, extra, purpose)

    def _append_lock(self) -> FolderLock:
        name = self.path.rstrip("/").rsplit("/", 1)[-1]
        return FolderLock(io.storage_path(self.path).parent, f"label ledger {self.path}", name=f".{name}.lock",
                          wait_s=APPEND_WAIT_S)

    def _append_rows(self, round: int, ids: list[str], labels: list[str], oracle: str,  # noqa: A002
                     dims: dict[str, np.ndarray], secs: np.ndarray, extra: dict, purpose: str) -> int:
        """:meth:`append`'s check and write against the freshly loaded table (under the append lock)."""
        known = self._table.to_pandas().set_index("utt_id")
        new_rows, conflicts = [], []
        for j, (i, lab) in enumerate(zip(ids, labels)):
            values = {name: dims[name][j] if name in dims else np.nan for name in DIMENSION_COLUMNS}
            if i in known.index:
                row = known.loc[i]
                # a row read back through pandas holds a missing label as NaN or None: both are "no label"
                same = (("" if _missing(row["label"]) else row["label"]) == lab and int(row["round"]) == int(round)
                        and all(_same_value(row[n], values[n]) for n in DIMENSION_COLUMNS)
                        and row["purpose"] == purpose)
                if not same:
                    conflicts.append(f"{i!r} (ledger: {_describe(row['label'], row)} in round {int(row['round'])}"
                                     f"{_for(row['purpose'])}; new: {_describe(lab, values)} in round {int(round)}"
                                     f"{_for(purpose)})")
            else:
                new_rows.append((i, lab, values, secs[j], j))
        if conflicts:
            raise LedgerError(f"ledger {self.path}: {len(conflicts)} ids are already labelled differently: "
                              + "; ".join(conflicts[:10]) + (" ..." if len(conflicts) > 10 else ""))
        if not new_rows:
            return 0
        now = datetime.now(timezone.utc)
        n = len(new_rows)

        def column(key, default=None):
            values = extra[key]
            return [default if values is None or _missing(values[r[4]]) else values[r[4]] for r in new_rows]

        new = pa.table({
            "utt_id": pa.array([r[0] for r in new_rows], pa.string()),
            "label": pa.array([r[1] or None for r in new_rows], pa.string()),
            "round": pa.array(np.full(n, round, np.int32)),
            "oracle": pa.array([str(oracle)] * n, pa.string()),
            "time": pa.array([pd.Timestamp(t).tz_convert("UTC") if pd.Timestamp(t).tzinfo else
                              pd.Timestamp(t).tz_localize("UTC") for t in column("time", now)],
                             pa.timestamp("us", tz="UTC")),
            **{name: pa.array([r[2][name] for r in new_rows], pa.float64(), from_pandas=True)
               for name in DIMENSION_COLUMNS},
            "seconds": pa.array([r[3] for r in new_rows], pa.float64(), from_pandas=True),
            "annotator": pa.array([None if v is None else str(v) for v in column("annotator")], pa.string()),
            "soft_label": pa.array([None if v is None else str(v) for v in column("soft_label")], pa.string()),
            "purpose": pa.array([purpose] * n, pa.string()),
        }, schema=LEDGER_SCHEMA)
        table = pa.concat_tables([self._table, new])
        # The commit: only while the append lock (and the run's lock, when this process holds it) still names this
        # writer, with no take-over in between.
        with fenced_for(self.path):
            io.write_parquet_atomic(self.path, table)
        self._table = table
        return n

    def _dimension_arrays(self, ids: list[str], dimensions: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
        out = {}
        for name, values in dimensions.items():
            if name not in DIMENSION_COLUMNS:
                raise LedgerError(f"ledger {self.path}: unknown dimension {name!r}; known: {list(DIMENSION_COLUMNS)}")
            arr = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
            if len(arr) != len(ids):
                raise LedgerError(f"ledger {self.path}: {len(ids)} ids but {len(arr)} {name} values")
            if np.isinf(arr).any():
                raise LedgerError(f"ledger {self.path}: infinite {name} for {_show([ids[k] for k in np.flatnonzero(np.isinf(arr))])}")
            out[name] = arr
        return out

    def labelled(self) -> pd.DataFrame:
        """All rows, every purpose: utt_id, label, round, oracle, time, arousal, valence, dominance, seconds,
        annotator, soft_label, purpose (append order). The record; training reads :meth:`targets`."""
        return self._table.to_pandas()

    def seconds(self, purpose: str | None = "train") -> float:
        """Seconds of audio labelled so far for ``purpose`` (None = every purpose; clips of unknown duration
        count 0)."""
        return _total_seconds(_of(self._table, purpose))

    def ids(self, purpose: str | None = "train") -> set[str]:
        """Ids labelled for ``purpose``; ``ids(None)``: every labelled clip, whatever its purpose (none of them
        may be asked for again)."""
        return set(_of(self._table, purpose).column("utt_id").to_pylist())

    def labels(self, purpose: str | None = "train") -> dict[str, str | None]:
        """utt_id -> label of the ``purpose`` rows (None for a clip labelled with dimensional values only)."""
        table = _of(self._table, purpose)
        return dict(zip(table.column("utt_id").to_pylist(), table.column("label").to_pylist()))

    def targets(self, purpose: str = "train") -> pa.Table:
        """:data:`TARGETS_SCHEMA` rows (utt_id, label, arousal, valence, dominance, soft_label) of ``purpose``:
        what training reads (``train``), or an evaluation set (``dev`` / ``test``)."""
        return _of(self._table, purpose).select(TARGETS_SCHEMA.names)

    def counts(self) -> dict[str, int]:
        """``{purpose: labelled clips}`` for every purpose (0 where none)."""
        values = self._table.column("purpose").to_pylist()
        return {p: values.count(p) for p in PURPOSES}

    def rounds(self) -> list[int]:
        """Sorted distinct rounds of the training labels."""
        return sorted({int(r) for r in _of(self._table, "train").column("round").to_pylist()})

    def round(self, r: int) -> pd.DataFrame:
        """The training rows labelled in round ``r`` (possibly empty)."""
        df = _of(self._table, "train").to_pandas()
        return df[df["round"] == r].reset_index(drop=True)

    def labelled_map(self, ids: Sequence[str]) -> np.ndarray:
        """Round stamp of each id, baal style: 0 = unlabelled, ``k = round + 1`` = labelled in round ``round``
        (training labels only: an evaluation clip reads 0, it is never in the labelled set).

        The ``+1`` keeps round 0 (the cold-start set) distinct from "unlabelled".

        Args:
            ids: [N] clip ids.

        Returns:
            [N] int64.
        """
        table = _of(self._table, "train")
        stamp = dict(zip(table.column("utt_id").to_pylist(), table.column("round").to_pylist()))
        return np.fromiter((stamp.get(str(i), -1) + 1 for i in ids), dtype=np.int64, count=len(ids))

    def __len__(self) -> int:
        """Training labels (evaluation labels: :meth:`counts`)."""
        return _of(self._table, "train").num_rows

    def as_of(self, round: int) -> LedgerView:  # noqa: A002
        """A read-only snapshot of the training rows labelled in rounds ``<= round``.

        Training round ``r`` must see exactly these, even when a previous run died after appending round
        ``r + 1``'s labels but before round ``r`` was marked finished: resuming then redoes round ``r`` on
        the same labels instead of refusing the run.
        """
        import pyarrow.compute as pc

        table = _of(self._table, "train")
        return LedgerView(table.filter(pc.less_equal(table["round"], round)), round)

    def view(self, purpose: str) -> LedgerView:
        """A read-only snapshot of every row of ``purpose`` (``dev`` / ``test``: an evaluation set's labels, which
        ``Pool.labelled`` and the feature cache join like training targets)."""
        if purpose not in PURPOSES:
            raise LedgerError(f"ledger {self.path}: purpose must be one of {list(PURPOSES)}, got {purpose!r}")
        table = _of(self._table, purpose)
        last = max((int(r) for r in table.column("round").to_pylist()), default=0)
        return LedgerView(table, last)

    def __repr__(self) -> str:
        evaluation = {p: n for p, n in self.counts().items() if p != "train" and n}
        return (f"LabelLedger(path={self.path!r}, labelled={len(self)}, rounds={self.rounds()}"
                + (f", evaluation={evaluation}" if evaluation else "") + ")")


class LedgerView:
    """Rows of a :class:`LabelLedger` up to a round: ``labels()``, ``ids()``, ``len()`` (what training and
    selection read), nothing that writes."""

    def __init__(self, table: pa.Table, round: int):  # noqa: A002
        self._table = table
        self.round = round

    def labels(self) -> dict[str, str | None]:
        """utt_id -> label (None for a clip labelled with dimensional values only)."""
        return dict(zip(self._table.column("utt_id").to_pylist(), self._table.column("label").to_pylist()))

    def targets(self) -> pa.Table:
        """:data:`TARGETS_SCHEMA` rows (utt_id, label, arousal, valence, dominance, soft_label): what training
        reads."""
        return self._table.select(TARGETS_SCHEMA.names)

    def ids(self) -> set[str]:
        return set(self._table.column("utt_id").to_pylist())

    def seconds(self) -> float:
        """Seconds of audio labelled in these rounds (clips of unknown duration count 0)."""
        return _total_seconds(self._table)

    def __len__(self) -> int:
        return self._table.num_rows

    def __repr__(self) -> str:
        return f"LedgerView(round<={self.round}, labelled={len(self)})"

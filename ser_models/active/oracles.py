"""Oracles: where labels come from. ``SimulatedOracle`` for benchmarks, ``FileOracle`` for humans."""

from __future__ import annotations

import csv
import io as _io
import os
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import pandas as pd

from ser_models import io
from ser_models.exceptions import LabelImportError, LabellingPending, OracleError

__all__ = ["FileOracle", "Oracle", "SimulatedOracle"]


@runtime_checkable
class Oracle(Protocol):
    """Anything that turns clip ids into labels."""

    name: str

    def label(self, ids: list[str], round: int) -> dict[str, str]:  # noqa: A002
        """Labels for ``ids`` (every id, no other) requested in ``round``."""
        ...


class SimulatedOracle:
    """Reveals held-out labels: the benchmark stand-in for a human annotator.

    The loop builds it from the pool manifest's train labels; it is the only component that reads them,
    so scoring and selection can never peek.

    Args:
        truth: utt_id -> label.
        labels: the model's class names (``model.labels``); a true label outside them (e.g. IEMOCAP's ``oth``)
            is never handed out, so it can never reach the append-only ledger. None = any label.
    """

    name = "simulated"

    def __init__(self, truth: Mapping[str, str], labels: list[str] | None = None):
        self._truth = {str(k): str(v) for k, v in truth.items() if v is not None and not pd.isna(v)}
        self.labels = None if labels is None else list(labels)

    def unlabelable(self, ids) -> set[str]:
        """The ``ids`` this oracle cannot label (no true label, or one outside ``labels``): the loop keeps
        them out of every selection."""
        allowed = None if self.labels is None else set(self.labels)
        return {str(i) for i in ids if str(i) not in self._truth
                or (allowed is not None and self._truth[str(i)] not in allowed)}

    def label(self, ids: list[str], round: int) -> dict[str, str]:  # noqa: A002
        """True labels of ``ids``.

        Raises:
            OracleError: naming the clips with no true label, or with one outside ``labels``; nothing is
                returned, so nothing is appended.
        """
        missing = [i for i in ids if i not in self._truth]
        if missing:
            shown = ", ".join(map(repr, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise OracleError(f"SimulatedOracle has no true label for {len(missing)} of {len(ids)} requested clips "
                              f"in round {round}: {shown} (their manifest rows have an empty label column)")
        if self.labels is not None:
            bad = [f"{i!r} ({self._truth[i]!r})" for i in ids if self._truth[i] not in self.labels]
            if bad:
                raise OracleError(f"SimulatedOracle: {len(bad)} requested clips in round {round} have true labels "
                                  f"outside model.labels={self.labels}: {', '.join(bad[:10])}"
                                  f"{' ...' if len(bad) > 10 else ''}; map them (label_map) or drop them")
        return {i: self._truth[i] for i in ids}

    def __repr__(self) -> str:
        return f"SimulatedOracle(known={len(self._truth)})"


_COLUMNS = ["utt_id", "path", "duration", "label"]


class FileOracle:
    """Human labelling through a CSV file per round.

    First call: writes ``round_dir/to_label.csv`` (utt_id, path, duration, label empty) and raises
    :class:`LabellingPending`. A human fills the ``label`` column (any spreadsheet); rerunning the same
    command imports it, after checking every row.

    Args:
        round_dir: folder of the round (local path or ``pyarrow.fs`` URI).
        labels: the allowed label names.
        clip_info: DataFrame with at least utt_id, path, duration (seconds) for the clips that may be asked.
    """

    name = "file"

    def __init__(self, round_dir: str | os.PathLike, labels: Sequence[str], clip_info: pd.DataFrame):
        missing = [c for c in ("utt_id", "path", "duration") if c not in clip_info.columns]
        if missing:
            raise OracleError(f"FileOracle clip_info lacks columns {missing}")
        if not labels:
            raise OracleError("FileOracle needs at least one allowed label")
        self.round_dir = str(round_dir).rstrip("/")
        self.labels = [str(x) for x in labels]
        self._info = clip_info.set_index(clip_info["utt_id"].astype(str))

    @property
    def file(self) -> str:
        return f"{self.round_dir}/to_label.csv"

    def label(self, ids: list[str], round: int) -> dict[str, str]:  # noqa: A002
        ids = [str(i) for i in ids]
        if not io.exists(self.file):
            self._write_request(ids)
            raise LabellingPending(
                f"round {round}: {len(ids)} clips need labels. Fill in the 'label' column of {self.file} "
                f"(allowed labels: {', '.join(self.labels)}), save it as CSV, then rerun the same command: "
                "it imports the file and continues.")
        return self._import(ids)

    def _write_request(self, ids: list[str]) -> None:
        unknown = [i for i in ids if i not in self._info.index]
        if unknown:
            raise OracleError(f"FileOracle has no path/duration for ids {unknown[:10]}")
        df = self._info.loc[ids, ["path", "duration"]].reset_index(names="utt_id")
        df["label"] = ""
        buf = _io.StringIO()
        df[_COLUMNS].to_csv(buf, index=False)
        io.write_bytes_atomic(self.file, buf.getvalue().encode())

    def _import(self, ids: list[str]) -> dict[str, str]:
        fs, p = io.filesystem(self.file)
        with fs.open_input_stream(p) as fh:
            text = fh.read().decode("utf-8-sig")  # spreadsheets often save a BOM
        rows = list(csv.reader(_io.StringIO(text)))
        where = self.file
        if not rows or "utt_id" not in rows[0] or "label" not in rows[0]:
            raise LabelImportError(f"{where}: line 1 must be a header with columns utt_id and label")
        head = rows[0]
        ci, cl = head.index("utt_id"), head.index("label")
        wanted = set(ids)
        errors: list[str] = []
        seen: dict[str, int] = {}
        out: dict[str, str] = {}
        for line, row in enumerate(rows[1:], start=2):
            if not any(cell.strip() for cell in row):
                continue
            uid = row[ci].strip() if ci < len(row) else ""
            lab = row[cl].strip() if cl < len(row) else ""
            if uid not in wanted:
                errors.append(f"line {line}: unknown utt_id {uid!r} (not requested in this round)")
                continue
            if uid in seen:
                errors.append(f"line {line}: utt_id {uid!r} repeats line {seen[uid]}")
                continue
            seen[uid] = line
            if not lab:
                errors.append(f"line {line}: empty label for {uid!r}")
            elif lab not in self.labels:
                errors.append(f"line {line}: unknown label {lab!r} for {uid!r} (allowed: {', '.join(self.labels)})")
            else:
                out[uid] = lab
        missing = [i for i in ids if i not in seen]
        if missing:
            errors.append(f"missing rows for {len(missing)} requested ids: {missing[:10]}")
        if errors:
            raise LabelImportError(f"{where}: {len(errors)} problems:\n  " + "\n  ".join(errors[:50]))
        return out

    def __repr__(self) -> str:
        return f"FileOracle(file={self.file!r}, labels={self.labels})"



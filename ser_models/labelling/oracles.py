"""Oracles: where labels come from. ``SimulatedOracle`` for benchmarks, ``FileOracle`` for humans.

An oracle answers with an **annotation frame**: a ``pandas.DataFrame`` indexed by ``utt_id`` (in the order
asked) with a ``label`` column (the class name, or None when the model has no categorical output) and one
float column per dimension the model predicts (``arousal``, ``valence``, ``dominance``).
"""

from __future__ import annotations

import csv
import io as _io
import math
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa

from ser_models import io
from ser_models.exceptions import LabelImportError, LabellingPending, OracleError
from ser_models.formats.spreadsheet import match_ids, neutralise_frame, restore_cell
from ser_models.labelling.clips import CLIP_COLUMNS

__all__ = ["DETAIL_COLUMNS", "SKIP", "FileAnswer", "FileOracle", "Oracle", "SimulatedOracle", "as_annotations", "check_annotations"]

#: What a request file shows after the columns people fill in: the model's guess and its probability, the
#: strategy's score and why the clip was asked (e.g. ``margin: top-2 gap 0.031``, ``initial set (random)``,
#: ``evaluation set (test)``). Read back never: importing a filled file ignores them.
DETAIL_COLUMNS = ("model_guess", "model_confidence", "score", "reason")


@runtime_checkable
class Oracle(Protocol):
    """Anything that turns clip ids into labels."""

    name: str

    def label(self, ids: list[str], round: int) -> pd.DataFrame:  # noqa: A002
        """The annotation frame of ``ids`` (every id, no other) requested in ``round``."""
        ...


def as_annotations(answer, ids: Sequence[str], dimensions: Sequence[str] = ()) -> pd.DataFrame:
    """An oracle's answer as an annotation frame over exactly ``ids``.

    Args:
        answer: an annotation frame, or a plain ``{utt_id: label}`` dict (a classes-only oracle).
        ids: the ids asked for.
        dimensions: the dimensions the model needs; each must be a column of the answer.

    Raises:
        OracleError: ids missing from the answer, or a needed dimension column missing.
    """
    ids = [str(i) for i in ids]
    if isinstance(answer, Mapping):
        answer = pd.DataFrame({"label": pd.Series({str(k): v for k, v in answer.items()}, dtype=object)})
    if not isinstance(answer, pd.DataFrame):
        raise OracleError(f"an oracle must return an annotation DataFrame or a {{utt_id: label}} dict, got "
                          f"{type(answer).__name__}")
    frame = answer.copy()
    frame.index = frame.index.astype(str)
    missing = [i for i in ids if i not in frame.index]
    lacking = [d for d in dimensions if d not in frame.columns]
    if missing or lacking:
        raise OracleError(f"the oracle's answer lacks ids {missing[:10]} and/or dimension columns {lacking} "
                          f"(asked for {len(ids)} clips, dimensions {list(dimensions)})")
    if "label" not in frame.columns:
        frame["label"] = None
    return frame.loc[ids, ["label", *dimensions]]


def check_annotations(frame: pd.DataFrame, labels: Sequence[str], dimensions: Sequence[str],
                      value_range: tuple[float, float], who: str) -> None:
    """Refuse an annotation frame the model cannot train on, before anything reaches the ledger.

    Args:
        frame: from :func:`as_annotations`.
        labels: ``model.labels`` ([] = no classes: labels are not checked).
        dimensions: ``model.dimensions``.
        value_range: ``model.dimension_range``.
        who: names the oracle and round in the message.

    Raises:
        OracleError: naming up to 10 clips whose label is missing or outside ``labels`` (a multi-task model
            trains on both targets), or whose dimensional value is missing or outside ``value_range``.
    """
    problems = []
    if labels:
        bad = frame.index[~frame["label"].isin(list(labels))]
        if len(bad):
            problems.append(f"{len(bad)} labels missing or outside model.labels={list(labels)}: "
                            + ", ".join(f"{i!r} ({frame.at[i, 'label']!r})" for i in bad[:10]))
    low, high = value_range
    for dim in dimensions:
        bad = frame.index[~pd.to_numeric(frame[dim], errors="coerce").between(low, high)]
        if len(bad):
            problems.append(f"{len(bad)} {dim} values missing or outside model.dimension_range=[{low:g}, {high:g}]: "
                            + ", ".join(f"{i!r} ({frame.at[i, dim]})" for i in bad[:10]))
    if problems:
        raise OracleError(f"{who}: " + "; ".join(problems) + " -- nothing was added to the ledger")


class SimulatedOracle:
    """Reveals held-out labels: the benchmark stand-in for a human annotator.

    The loop builds it from the pool's train split; it is the only component that reads the truth, so
    scoring and selection can never peek.

    Args:
        truth: ``utt_id -> label``, or a DataFrame with ``utt_id``, ``label`` and the dimension columns.
        labels: the model's class names (``model.labels``); a true label outside them (e.g. IEMOCAP's ``oth``)
            is never handed out, so it can never reach the append-only ledger. None = any label; [] = the
            model has no classes (no label is asked for).
        dimensions: dimensions the model predicts (``model.dimensions``); a clip without a value of each
            is never handed out.
    """

    name = "simulated"

    def __init__(self, truth: Mapping[str, str] | pd.DataFrame, labels: list[str] | None = None,
                 dimensions: Sequence[str] = ()):
        if isinstance(truth, Mapping):
            truth = pd.DataFrame({"utt_id": list(truth), "label": list(truth.values())})
        self.labels = None if labels is None else list(labels)
        self.dimensions = list(dimensions)
        lacking = [d for d in self.dimensions if d not in truth.columns]
        if lacking:
            raise OracleError(f"SimulatedOracle: the truth has no {lacking} column(s)")
        frame = truth.set_index(truth["utt_id"].astype(str))
        self._truth = frame[["label", *self.dimensions]]

    def _problems(self, ids) -> dict[str, str]:
        """``{utt_id: why it cannot be labelled}`` for the ids among ``ids`` this oracle cannot label
        (vectorised: the loop asks about every training clip once)."""
        # Arrow ids (the run's every training clip) become an Arrow-backed index: no Python string per clip
        index = pd.Index(ids.to_pandas()) if isinstance(ids, pa.Array) else pd.Index([str(i) for i in ids])
        sub = self._truth.reindex(index)
        why = pd.Series("", index=index, dtype=object)
        unknown = ~index.isin(self._truth.index)
        if self.labels is None or self.labels:
            lab = sub["label"]
            why[lab.isna().to_numpy()] = "no true label"
            if self.labels:
                outside = (lab.notna() & ~lab.isin(self.labels)).to_numpy()
                why[outside] = [f"label {v!r} outside model.labels" for v in lab[outside]]
        for dim in self.dimensions:
            gap = (sub[dim].isna() & (why == "")).to_numpy()
            why[gap] = f"no {dim} value"
        why[unknown] = "not in the truth"
        bad = why[why != ""]
        return dict(zip(bad.index, bad.to_numpy()))

    def unlabelable(self, ids) -> set[str]:
        """The ``ids`` this oracle cannot label (no true label, one outside ``labels``, or a missing dimension
        value): the loop keeps them out of every selection."""
        return set(self._problems(ids))

    def accuracy(self, ids: Sequence[str], labels: Sequence[str]) -> float | None:
        """Share of ``labels`` equal to the true labels of ``ids`` (None for no ids): how good pseudo-labels were,
        for the round's report only; nothing trains on it."""
        if not len(ids):
            return None
        truth = self._truth["label"].reindex(pd.Index([str(i) for i in ids])).to_numpy()
        return float(np.mean(truth == np.asarray(labels, dtype=object)))

    def label(self, ids: list[str], round: int) -> pd.DataFrame:  # noqa: A002
        """The true annotations of ``ids``.

        Raises:
            OracleError: naming the clips that cannot be labelled and why; nothing is returned, so nothing
                is appended.
        """
        problems = self._problems(ids)
        if problems:
            shown = ", ".join(f"{i!r} ({why})" for i, why in list(problems.items())[:10])
            hint = ("; map them (label_map) or drop them" if any("outside model.labels" in w for w in problems.values())
                    else " (their manifest rows have empty label / dimension columns)")
            raise OracleError(f"SimulatedOracle cannot label {len(problems)} of {len(ids)} requested clips in round "
                              f"{round}: {shown}{' ...' if len(problems) > 10 else ''}{hint}")
        frame = self._truth.loc[[str(i) for i in ids]].copy()
        if self.labels == []:
            frame["label"] = None
        return frame

    def __repr__(self) -> str:
        return f"SimulatedOracle(known={len(self._truth)}, dimensions={self.dimensions})"


_INFO_COLUMNS = ["utt_id", "path", "duration"]

#: What a labeller types in a cell to fill in (any case, ``skip: why`` keeps a note) to take a clip out of the
#: request: nobody can label it (silence, another language, two voices). The loop records it as skipped in
#: ``labels/dropped.parquet`` and never asks for it again (it counts against the budget: someone listened to it).
#: A class of ``model.labels`` named ``skip`` stays that class.
SKIP = "skip"


@dataclass
class FileAnswer:
    """What a request file holds right now (:meth:`FileOracle.read`).

    Attributes:
        frame: the rows filled in correctly: index ``utt_id`` (in the asked order), ``label`` and one float
            column per dimension.
        skipped: ``{utt_id: reason}`` of the rows whose cell reads ``skip``.
        blank: ``{utt_id: line}`` of the clips still left to fill in (line 0: the file has no row for it).
        refused: ``{utt_id: problem}`` of the rows that cannot be imported (an unknown label, a value out of
            range, a clip on two lines), each problem naming its line and value.
        stray: problems of lines that name no requested clip (an unknown or already decided ``utt_id``...).
    """

    frame: pd.DataFrame
    skipped: dict[str, str]
    blank: dict[str, int]
    refused: dict[str, str]
    stray: list[str]

    @property
    def pending(self) -> list[str]:
        """The clips still requested: left blank, or refused (in the asked order of :attr:`blank` then
        :attr:`refused`)."""
        return [*self.blank, *(i for i in self.refused if i not in self.blank)]

    @property
    def problems(self) -> list[str]:
        """Every refused line, in line order."""
        return sorted([*self.refused.values(), *self.stray], key=_line_number)

    def summary(self) -> str:
        """``12 rows imported, 5 left blank, 1 skipped, 2 refused``."""
        return (f"{len(self.frame)} rows imported, {len(self.blank)} left blank, {len(self.skipped)} skipped, "
                f"{len(self.refused) + len(self.stray)} refused")


def _line_number(problem: str) -> int:
    digits = problem[5:].split(" ", 1)[0].rstrip(":") if problem.startswith("line ") else ""
    return int(digits) if digits.isdigit() else 1 << 30


def _skip_note(cell: str) -> str | None:
    """The note of a ``skip`` cell (``""`` for a bare ``skip``); None when the cell is not a skip."""
    word, _, note = cell.partition(":")
    return note.strip() if word.strip().lower() == SKIP else None


class FileOracle:
    """Human labelling through a CSV file per round.

    First call: writes ``round_dir/to_label.csv`` (utt_id, path, duration; for segments of longer recordings
    also source_path, recording, channel, start, end, clip_start, clip_end, with ``path`` the segment's own
    clip; then an empty ``label`` column when the model has classes and one empty column per dimension; then,
    when the caller gives ``details``, :data:`DETAIL_COLUMNS` for the annotator to read) and raises
    :class:`LabellingPending`. A human fills it in (any spreadsheet); rerunning the same command imports it.

    A file may be filled in part (:meth:`read`): the rows filled in correctly are imported, blank rows stay
    requested, a row whose cell reads ``skip`` (:data:`SKIP`) takes its clip out of the request, and a row
    that cannot be imported (an unknown label, a value out of range) is refused with its line number and value
    and stays requested. Columns other than utt_id and the filled ones are ignored.

    Text cells that a spreadsheet would run as formulas (starting with ``=``, ``+``, ``-``, ``@``, tab or CR)
    are written with a leading ``'``, and so are cells starting with ``'``; the import removes exactly that
    prefix, or finds it already dropped by a spreadsheet, so every id comes back as it was
    (:mod:`ser_models.formats.spreadsheet`).

    Args:
        round_dir: folder of the round (local path or ``pyarrow.fs`` URI).
        labels: the allowed label names ([] = no label column: dimensions only).
        clip_info: DataFrame with at least utt_id, path, duration (seconds) for the clips that may be asked.
        dimensions: dimension columns to fill (``model.dimensions``).
        value_range: (low, high) every dimensional value must lie in (``model.dimension_range``).
        request: names the request in messages (None = ``round <r>``; e.g. ``the evaluation sets``).
    """

    name = "file"
    #: ``label`` takes ``details`` (the model's guess, score and reason per clip) to show in the file.
    takes_details = True

    def __init__(self, round_dir: str | os.PathLike, labels: Sequence[str], clip_info: pd.DataFrame,
                 dimensions: Sequence[str] = (), value_range: tuple[float, float] = (1.0, 5.0),
                 request: str | None = None):
        missing = [c for c in _INFO_COLUMNS if c not in clip_info.columns]
        if missing:
            raise OracleError(f"FileOracle clip_info lacks columns {missing}")
        if not labels and not dimensions:
            raise OracleError("FileOracle needs at least one allowed label or one dimension")
        self.round_dir = str(round_dir).rstrip("/")
        self.labels = [str(x) for x in labels]
        self.dimensions = list(dimensions)
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self._info = clip_info.set_index(clip_info["utt_id"].astype(str))
        self.request = request

    @property
    def file(self) -> str:
        return f"{self.round_dir}/to_label.csv"

    @property
    def columns(self) -> list[str]:
        """The columns a human fills in."""
        return (["label"] if self.labels else []) + self.dimensions

    def _what(self, round: int) -> str:  # noqa: A002
        return self.request or f"round {round}"

    def label(self, ids: list[str], round: int, details: pd.DataFrame | None = None) -> pd.DataFrame:  # noqa: A002
        """The filled file's annotations of every one of ``ids``; the first call writes the request and raises.
        (The loop reads a partly filled file with :meth:`read` instead.)

        Args:
            details: index ``utt_id``; any of :data:`DETAIL_COLUMNS`, written after the columns to fill in
                (blank where a clip has none). None = no such columns.

        Raises:
            LabellingPending: the request was written now; people fill it in, then the command is rerun.
            LabelImportError: a row is blank, skipped or refused (every one listed, with line numbers).
        """
        ids = [str(i) for i in ids]
        self.ask(ids, round, details)
        got = self.read(ids)
        errors = [f"line {line} ({uid!r}): empty {' / '.join(self.columns)}" if line else
                  f"no row for requested id {uid!r}" for uid, line in got.blank.items()]
        errors += got.problems + [f"{uid!r}: {why}" for uid, why in got.skipped.items()]
        if errors:
            raise LabelImportError(f"{self.file}: {len(errors)} problems:\n  " + "\n  ".join(errors[:50]))
        return got.frame

    def ask(self, ids: list[str], round: int, details: pd.DataFrame | None = None) -> None:  # noqa: A002
        """Write the request of ``ids`` and raise, unless the file is there already (then return).

        Raises:
            LabellingPending: the request was written now.
        """
        if io.exists(self.file):
            return
        ids = [str(i) for i in ids]
        self._write_request(ids, details)
        hints = [f"allowed labels: {', '.join(self.labels)}"] if self.labels else []
        if self.dimensions:
            hints.append(f"{', '.join(self.dimensions)}: numbers in [{self.value_range[0]:g}, "
                         f"{self.value_range[1]:g}]")
        hints.append(f"or {SKIP} for a clip nobody can label")
        cols = ", ".join(repr(c) for c in self.columns)
        raise LabellingPending(
            f"{self._what(round)}: {len(ids)} clips need labels. Fill in the {cols} column(s) of {self.file} "
            f"({'; '.join(hints)}), save it as CSV, then rerun the same command: it imports the rows filled in "
            "and asks again for the rest.")

    def pending_message(self, got: FileAnswer, round: int) -> str:  # noqa: A002
        """What the job says while clips of a partly filled file are still requested."""
        refused = len(got.refused)
        return (f"{self._what(round)}: {len(got.pending)} clips still need labels in {self.file} "
                f"({len(got.blank)} left blank" + (f", {refused} refused: see the lines above" if refused else "")
                + f"). Fill them in (or type {SKIP} for a clip nobody can label), save the file, then rerun the "
                "same command.")

    def _write_request(self, ids: list[str], details: pd.DataFrame | None = None) -> None:
        unknown = [i for i in ids if i not in self._info.index]
        if unknown:
            raise OracleError(f"FileOracle has no path/duration for ids {unknown[:10]}")
        # Segments of longer recordings also show where they lie (their clip is the path; see labelling.clips).
        where = [c for c in CLIP_COLUMNS if c in self._info.columns and self._info.loc[ids, c].notna().any()]
        df = self._info.loc[ids, ["path", "duration", *where]].reset_index(names="utt_id")
        for col in self.columns:
            df[col] = ""
        shown = []
        if details is not None:
            known = details.reindex(pd.Index(ids))
            shown = list(DETAIL_COLUMNS)
            for col in shown:
                df[col] = (known[col].to_numpy(dtype=object) if col in known.columns else None)
        buf = _io.StringIO()
        # Ids, paths and reasons come from data: a cell such as "=cmd|..." must reach people as text.
        neutralise_frame(df[_INFO_COLUMNS + where + self.columns + shown]).to_csv(buf, index=False)
        io.write_bytes_atomic(self.file, buf.getvalue().encode())

    def read(self, ids: list[str], decided: Collection[str] = ()) -> FileAnswer:
        """What the filled request file holds for ``ids``, row by row (see the class docstring).

        Args:
            ids: the clips requested.
            decided: clips among ``ids`` already imported or skipped: their rows are not read again (a decision
                is final; a later edit of the row changes nothing).

        Raises:
            LabelImportError: the file has no header with utt_id and the columns to fill in (nothing is read).
        """
        fs, p = io.filesystem(self.file)
        with fs.open_input_stream(p) as fh:
            text = fh.read().decode("utf-8-sig")  # spreadsheets often save a BOM
        rows = list(csv.reader(_io.StringIO(text)))
        need = ["utt_id", *self.columns]
        if not rows or any(c not in rows[0] for c in need):
            raise LabelImportError(f"{self.file}: line 1 must be a header with columns {', '.join(need)}")
        pos = {c: rows[0].index(c) for c in need}
        decided = {str(i) for i in decided}
        wanted = {str(i) for i in ids} - decided
        filled = [(line, row) for line, row in enumerate(rows[1:], start=2) if any(cell.strip() for cell in row)]
        cells = [{c: (row[k].strip() if k < len(row) else "") for c, k in pos.items()} for _, row in filled]
        # The request neutralised formula-like cells with a leading "'"; a text editor keeps it, a spreadsheet
        # drops it on saving: match_ids tells which for this file.
        uids = match_ids([c["utt_id"] for c in cells], wanted | decided)
        lines: dict[str, list[int]] = {}
        stray: list[str] = []
        for (line, _), uid in zip(filled, uids):
            if uid in wanted:
                lines.setdefault(uid, []).append(line)
            elif uid not in decided:
                stray.append(f"line {line}: unknown utt_id {uid!r} (not requested in this round)")
        out: dict[str, dict] = {}
        skipped: dict[str, str] = {}
        blank: dict[str, int] = {}
        refused: dict[str, str] = {}
        by_line = {line: cell for (line, _), cell in zip(filled, cells)}
        for uid in (str(i) for i in ids):
            if uid not in wanted:
                continue
            at = lines.get(uid, [])
            if len(at) > 1:
                refused[uid] = f"line {at[1]}: utt_id {uid!r} repeats line {at[0]} (keep one of the lines)"
                continue
            if not at:
                blank[uid] = 0
                continue
            kind, value = self._row(at[0], uid, by_line[at[0]])
            {"blank": blank, "skip": skipped, "refused": refused, "ok": out}[kind][uid] = value
        frame = pd.DataFrame.from_dict(out, orient="index", columns=["label", *self.dimensions])
        frame["label"] = frame["label"].astype(object)
        for dim in self.dimensions:
            frame[dim] = frame[dim].astype(np.float64)
        return FileAnswer(frame=frame.loc[[i for i in map(str, ids) if i in out]], skipped=skipped, blank=blank,
                          refused=refused, stray=stray)

    def _row(self, line: int, uid: str, cell: dict[str, str]) -> tuple[str, object]:
        """One requested clip's row: ``("blank", line)``, ``("skip", reason)``, ``("refused", problem)`` or
        ``("ok", {"label", dimension: value})``."""
        values = {c: restore_cell(cell[c]) for c in self.dimensions}
        if self.labels:
            lab = cell["label"]
            values["label"] = lab if lab in self.labels or restore_cell(lab) not in self.labels else restore_cell(lab)
        if not any(values.values()):
            return "blank", line
        notes = [_skip_note(v) for c, v in values.items() if not (c == "label" and v in self.labels)]
        notes = [n for n in notes if n is not None]
        if notes:
            return "skip", f"skipped in {self.file.rsplit('/', 2)[-2]}/to_label.csv line {line}" + (
                f": {notes[0]}" if notes[0] else "")
        errors: list[str] = []
        record: dict = {"label": None}
        if self.labels:
            lab = values["label"]
            if not lab:
                errors.append("empty label")
            elif lab not in self.labels:
                errors.append(f"unknown label {lab!r} (allowed: {', '.join(self.labels)}, or {SKIP})")
            record["label"] = lab
        low, high = self.value_range
        for dim in self.dimensions:
            raw = values[dim]
            try:
                value = float(raw)
            except ValueError:
                errors.append(f"{dim} is " + (f"not a number: {raw!r}" if raw else "empty"))
                continue
            if not math.isfinite(value) or not low <= value <= high:
                errors.append(f"{dim} {raw} is outside [{low:g}, {high:g}] (model.dimension_range)")
            record[dim] = value
        if errors:
            return "refused", f"line {line} ({uid!r}): {'; '.join(errors)}"
        return "ok", record

    def __repr__(self) -> str:
        return f"FileOracle(file={self.file!r}, labels={self.labels}, dimensions={self.dimensions})"

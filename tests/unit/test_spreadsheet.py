"""Cells for people's spreadsheets: formula-like text neutralised, and restored exactly on the way back."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest

from ser_models.formats.spreadsheet import (
    FORMULA_STARTS,
    match_ids,
    neutralise_cell,
    neutralise_frame,
    restore_cell,
)

TEXTS = ["=cmd|' /C calc'!A0", "+1", "-x", "@SUM(A1)", "\tx", "\rx", "'", "''", "'=x", "'x", "x'", "plain",
         "", "=", "a=b", "''=x", "'''"]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_is_exact(text):
    assert restore_cell(neutralise_cell(text)) == text


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_formula_starts_are_prefixed(start):
    assert neutralise_cell(start + "x") == "'" + start + "x"


def test_other_cells_are_left_alone():
    assert neutralise_cell("a=b") == "a=b" and neutralise_cell(-0.5) == -0.5 and neutralise_cell(None) is None
    # a cell nobody neutralised is never changed on the way back
    assert restore_cell("'x") == "'x" and restore_cell("x") == "x" and restore_cell("'") == "'"


def test_neutralise_frame_touches_text_only_and_survives_csv():
    frame = pd.DataFrame({"utt_id": ["=1+1", "ok", "'q"], "score": [-0.5, 0.25, 1.0], "label": ["", "", ""]})
    text = neutralise_frame(frame).to_csv(index=False)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1] == ["'=1+1", "-0.5", ""] and rows[3][0] == "''q"
    assert [restore_cell(r[0]) for r in rows[1:]] == frame["utt_id"].tolist()
    assert frame["utt_id"].tolist() == ["=1+1", "ok", "'q"]  # the caller's frame is not modified


def test_match_ids_reads_both_a_kept_and_a_spreadsheet_stripped_file():
    ids = ["=x", "'=x", "'q", "plain"]
    written = [neutralise_cell(i) for i in ids]  # as to_label.csv holds them: "'=x", "''=x", "''q", "plain"
    assert match_ids(written, set(ids)) == ids  # a text editor kept the prefixes
    # a spreadsheet drops one leading "'" of every cell that has one when it saves a CSV
    stripped = [c[1:] if c.startswith("'") else c for c in written]
    assert stripped == ["=x", "'=x", "'q", "plain"]
    assert match_ids(stripped, set(ids)) == ids
    # a cell that is neither a requested id nor one restored stays as it is, for the caller to report
    assert match_ids(["'=zz", "plain"], set(ids)) == ["=zz", "plain"]

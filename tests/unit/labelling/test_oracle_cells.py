"""to_label.csv is safe to open in a spreadsheet, and hostile ids and labels come back on the right clips."""

from __future__ import annotations

import csv

import pandas as pd
import pytest

from ser_models.exceptions import LabellingPending
from ser_models.formats.spreadsheet import FORMULA_STARTS
from ser_models.labelling import FileOracle

IDS = ["=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0", "+1", "-x", "@x", "'q", "q", "Abc", "abc", "../../../../x",
       "/etc/x", "%2e%2e", "a\u2215b", "a\uff0eb"]
LABELS = ["-neg", "+pos", "@mid"]  # class names that a spreadsheet would also run


def _request(tmp_path, dims=()):
    info = pd.DataFrame({"utt_id": IDS, "path": [f"/clips/{k}.wav" for k in range(len(IDS))],
                         "duration": 1.0, "recording": "=HYPERLINK(\"http://x\")"})
    oracle = FileOracle(tmp_path, LABELS, info, dimensions=list(dims), value_range=(-1.0, 1.0))
    details = pd.DataFrame({"reason": "=1+1", "model_guess": "-neg", "score": -0.5}, index=pd.Index(IDS))
    with pytest.raises(LabellingPending):
        oracle.label(IDS, 0, details=details)
    with open(tmp_path / "to_label.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return oracle, rows


def _answer(k: int) -> str:
    return LABELS[k % len(LABELS)]


def test_no_text_cell_reaches_a_spreadsheet_as_a_formula(tmp_path):
    _, rows = _request(tmp_path)
    head = rows[0]
    for row in rows[1:]:
        for col, cell in zip(head, row):
            if col != "score":  # the strategy's score is a number, written as one
                assert not cell.startswith(FORMULA_STARTS), (col, cell)
    assert [r[head.index("score")] for r in rows[1:]] == ["-0.5"] * len(IDS)


@pytest.mark.parametrize("editor", ["text", "spreadsheet"])
def test_labels_come_back_on_the_right_ids(tmp_path, editor):
    oracle, rows = _request(tmp_path, dims=["valence"])
    head = rows[0]
    out = [head]
    for k, row in enumerate(rows[1:]):
        row = list(row)
        row[head.index("label")] = "'" + _answer(k) if editor == "text" else _answer(k)  # as people type it
        row[head.index("valence")] = f"{-k / 20:g}"
        if editor == "spreadsheet":  # saving a CSV drops the "'" that marks text
            row = [c[1:] if c.startswith("'") else c for c in row]
        out.append(row)
    out[1:] = out[:0:-1]  # people sort rows as they like
    with open(tmp_path / "to_label.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(out)
    got = oracle.label(IDS, 0)
    assert got.index.tolist() == IDS
    assert got["label"].tolist() == [_answer(k) for k in range(len(IDS))]
    assert got["valence"].tolist() == pytest.approx([-k / 20 for k in range(len(IDS))])

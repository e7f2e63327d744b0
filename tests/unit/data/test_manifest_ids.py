"""read_manifest refuses unusable ids with one error naming the rows, and keeps every other id as it is."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ser_models.data.manifest import ID_COLUMNS, read_manifest
from ser_models.exceptions import ManifestError
from ser_models.names import MAX_ID_CHARS

VALID = ["../x", "../../../../x", "/etc/x", "/", "Abc", "abc", "=cmd|' /C calc'!A0", "%2e%2e", "a\u2215b",
         "a\uff0eb", "\uff0e\uff0e", "'q", "+1", "@x", "x" * MAX_ID_CHARS]


def _jsonl(tmp_path, rows, name="m.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_hostile_but_printable_ids_are_kept_exactly(tmp_path):
    rows = [{"utt_id": u, "path": "a.wav", "speaker": u, "recording": u, "group": u, "label": u} for u in VALID]
    df = read_manifest(_jsonl(tmp_path, rows))
    for col in ("utt_id", "speaker", "recording", "group", "label"):
        assert df[col].tolist() == VALID


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_bad_ids_are_refused_with_every_row_named(tmp_path, fmt):
    bad = {2: "a\x00b", 3: "two\nlines", 5: "x" * 300, 6: "tab\tbed"}
    ids = [bad.get(k, f"ok{k}") for k in range(1, 8)]
    rows = [{"utt_id": u, "path": "a.wav"} for u in ids]
    if fmt == "jsonl":
        path = _jsonl(tmp_path, rows)
    else:
        path = tmp_path / f"m.{fmt}"
        frame = pd.DataFrame(rows)
        frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path)
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    msg = str(info.value)
    line = (lambda r: f"row {r} (line {r + 1})") if fmt == "csv" else (lambda r: f"row {r}")
    assert msg.startswith(f"{path}: column 'utt_id': 4 value(s) cannot be ids")
    for r in bad:
        assert line(r) in msg
    assert "U+0000" in msg and "U+000A" in msg and "U+0009" in msg and "is 300 characters long" in msg
    assert "ok1" not in msg and "ok4" not in msg


@pytest.mark.parametrize("col", [c for c in ID_COLUMNS if c != "utt_id"])
def test_other_name_columns_are_checked_too(tmp_path, col):
    rows = [{"utt_id": "a", "path": "a.wav", col: "fine"}, {"utt_id": "b", "path": "b.wav", col: "bad\x07"},
            {"utt_id": "c", "path": "c.wav"}]
    with pytest.raises(ManifestError, match=rf"column '{col}': 1 value\(s\) cannot be ids.*row 2 'bad\\x07'"):
        read_manifest(_jsonl(tmp_path, rows))

"""read_recordings: recording ids name files, so they are plain, and unique even ignoring case."""

from __future__ import annotations

import pandas as pd
import pytest

from ser_models.exceptions import ManifestError
from ser_models.segment.recordings import read_recordings


def _csv(tmp_path, rows):
    path = tmp_path / "recordings.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_plain_ids_pass_and_are_kept(tmp_path):
    df = read_recordings(_csv(tmp_path, [{"path": "a.wav", "recording": "Ep-1.a_b"}, {"path": "b.wav"}]))
    assert df["recording"].tolist() == ["Ep-1.a_b", "b"]


def test_every_unusable_id_is_named_in_one_error(tmp_path):
    recs = ["ok", "../x", "a/b", "..", ".hidden", "-rm", "=cmd", "a\u2215b", "x" * 201, "fine"]
    with pytest.raises(ManifestError) as info:
        read_recordings(_csv(tmp_path, [{"path": f"{k}.wav", "recording": r} for k, r in enumerate(recs)]))
    msg = str(info.value)
    assert "column 'recording': 8 recording id(s) must be 1 to 200 letters" in msg
    for k, rec in enumerate(recs[1:-1], start=2):
        assert f"row {k} (line {k + 1}) {rec!r}" in msg
    assert "'ok'" not in msg and "'fine'" not in msg


def test_ids_equal_up_to_case_would_share_a_frames_file(tmp_path):
    rows = [{"path": "a.wav", "recording": "ep1"}, {"path": "b.wav", "recording": "x"},
            {"path": "c.wav", "recording": "EP1"}, {"path": "d.wav", "recording": "X"}]
    with pytest.raises(ManifestError, match=r"2 recording id\(s\) repeat an earlier one \(ignoring case.*"
                                            r"row 3 \(line 4\) 'EP1' duplicates row 1 'ep1'; row 4 \(line 5\) 'X' "
                                            r"duplicates row 2 'x'"):
        read_recordings(_csv(tmp_path, rows))


def test_file_names_that_clash_ask_for_a_recording_column(tmp_path):
    rows = [{"path": "show1/ep.wav"}, {"path": "show2/EP.wav"}]
    with pytest.raises(ManifestError, match="two files share a name: add a 'recording' column"):
        read_recordings(_csv(tmp_path, rows))


def test_group_and_speaker_must_be_ids(tmp_path):
    rows = [{"path": "a.wav", "group": "show/1", "speaker": "ok"}, {"path": "b.wav", "group": "g", "speaker": "x\ny"}]
    with pytest.raises(ManifestError, match=r"column 'speaker': 1 value\(s\) cannot be ids.*row 2 \(line 3\)"):
        read_recordings(_csv(tmp_path, rows))

"""Source signatures of a pool update: a present, untouched file is never re-hashed or restamped, even when
another clip's file is missing (nanosecond mtimes must survive the comparison exactly); a file touched or moved
with the same bytes is restamped; changed bytes or a changed span under an existing id are refused, naming the
clip and its file (``ser_models.data.pool_update``)."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest

from ser_models.data.pool_update import SourceChangedError, check_sources, check_spans, source_signatures


def test_a_missing_source_leaves_the_untouched_ones_alone(tmp_path, capsys):
    paths = [str(tmp_path / f"{k}.wav") for k in range(3)]
    for k, p in enumerate(paths):
        with open(p, "wb") as fh:
            fh.write(bytes([k]) * 100)
        os.utime(p, ns=(1_700_000_000_123_456_789 + k, 1_700_000_000_123_456_789 + k))  # not a float64 value
    signed = source_signatures(paths)
    old = pd.DataFrame({"path": paths, "source_size": [signed[p][0] for p in paths],
                        "source_mtime_ns": pd.array([signed[p][1] for p in paths], dtype="Int64"),
                        "source_sha256": [signed[p][2] for p in paths]}, index=["a", "b", "c"])
    os.remove(paths[2])
    rows = pd.DataFrame({"path": paths}, index=old.index)
    assert check_sources(old, rows).empty  # nothing restamped: 'a' and 'b' match exactly
    assert "1 existing clips' source files are missing" in capsys.readouterr().out


# --- check_sources: restamped, moved and changed sources -------------------------------------------------------




MTIME = 1_700_000_000_123_456_789
SOURCE_COLUMNS = ["path", "source_size", "source_mtime_ns", "source_sha256"]


def _signed(folder, names):
    """Source files ``<folder>/<name>.wav`` (100 bytes each) and the index rows recording their signatures."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [str(folder / f"{n}.wav") for n in names]
    for k, p in enumerate(paths):
        with open(p, "wb") as fh:
            fh.write(bytes([k % 256]) * 100)
        os.utime(p, ns=(MTIME + k, MTIME + k))
    signed = source_signatures(paths)
    old = pd.DataFrame({"path": paths, "source_size": [signed[p][0] for p in paths],
                        "source_mtime_ns": pd.array([signed[p][1] for p in paths], dtype="Int64"),
                        "source_sha256": [signed[p][2] for p in paths]}, index=list(names))
    return paths, old


def test_a_source_touched_with_the_same_bytes_is_restamped(tmp_path, capsys):
    paths, old = _signed(tmp_path / "corpus", ["a", "b", "c"])
    os.utime(paths[1], ns=(MTIME + 99, MTIME + 99))  # same bytes, new mtime
    rows = pd.DataFrame({"path": paths}, index=old.index)
    restamp = check_sources(old, rows)
    assert list(restamp.columns) == SOURCE_COLUMNS and list(restamp.index) == ["b"]
    assert restamp.loc["b"].to_dict() == {"path": paths[1], "source_size": 100, "source_mtime_ns": MTIME + 99,
                                          "source_sha256": old.at["b", "source_sha256"]}
    assert capsys.readouterr().out == ""  # nothing missing


def test_a_source_moved_with_the_same_bytes_is_restamped_at_its_new_path(tmp_path):
    paths, old = _signed(tmp_path / "corpus", ["a", "b"])
    moved = str(tmp_path / "elsewhere" / "b.wav")
    os.makedirs(os.path.dirname(moved))
    os.rename(paths[1], moved)
    rows = pd.DataFrame({"path": [paths[0], moved]}, index=old.index)
    restamp = check_sources(old, rows)
    assert list(restamp.index) == ["b"]
    assert restamp.loc["b"].to_dict() == {"path": moved, "source_size": 100, "source_mtime_ns": MTIME + 1,
                                          "source_sha256": old.at["b", "source_sha256"]}


def test_clips_sharing_a_touched_source_are_all_restamped(tmp_path):
    paths, old = _signed(tmp_path / "corpus", ["rec"])
    old = pd.concat([old.rename(index={"rec": "rec#1"}), old.rename(index={"rec": "rec#2"})])  # two segments
    os.utime(paths[0], ns=(MTIME + 5, MTIME + 5))
    restamp = check_sources(old, pd.DataFrame({"path": paths * 2}, index=old.index))
    assert list(restamp.index) == ["rec#1", "rec#2"]
    assert restamp["source_mtime_ns"].tolist() == [MTIME + 5, MTIME + 5]
    assert restamp["source_sha256"].tolist() == [old.iat[0, 3]] * 2


def test_a_folder_of_many_sources_is_checked_by_one_listing(tmp_path, capsys):
    names = [f"clip{k:02d}" for k in range(20)]  # more than a folder's worth for file-by-file stats
    paths, old = _signed(tmp_path / "corpus", names)
    (tmp_path / "corpus" / "notes.txt").write_text("not a source")
    (tmp_path / "corpus" / "sub").mkdir()
    rows = pd.DataFrame({"path": paths}, index=old.index)
    assert check_sources(old, rows).empty  # every one untouched, none missing
    assert capsys.readouterr().out == ""
    os.utime(paths[7], ns=(MTIME + 99, MTIME + 99))
    restamp = check_sources(old, rows)
    assert list(restamp.index) == ["clip07"] and restamp.at["clip07", "source_mtime_ns"] == MTIME + 99
    assert capsys.readouterr().out == ""


def test_a_source_whose_bytes_changed_is_refused_naming_the_clip_and_file(tmp_path):
    paths, old = _signed(tmp_path / "corpus", ["a", "b", "c"])
    with open(paths[1], "ab") as fh:
        fh.write(b"!")
    rows = pd.DataFrame({"path": paths}, index=old.index)
    with pytest.raises(SourceChangedError) as err:
        check_sources(old, rows)
    e = err.value
    assert (e.utt_id, e.path, e.changed) == ("b", paths[1], ["b"])
    assert str(e).startswith(f"clip 'b' ({paths[1]}): its source file's bytes changed since it was decoded "
                             "(size 100 -> 101 bytes, sha256 differs). A pool never replaces decoded audio")


# --- check_spans: a clip's channel, start or end never changes under its id ------------------------------------


def _spans(**cols):
    return pd.DataFrame(cols, index=["a", "b", "c"])


def test_a_manifest_without_span_columns_matches_clips_stored_as_whole_files():
    old = _spans(channel=np.array([-1, -1, -1], np.int32), start=[math.nan] * 3, end=[math.nan] * 3)
    check_spans(old, _spans(path=["/x/a.wav", "/x/b.wav", "/x/c.wav"]))  # no error


def test_a_changed_span_is_refused_naming_the_clip_and_every_changed_id():
    old = _spans(channel=np.array([0, 1, 0], np.int32), start=[0.0, 1.0, math.nan], end=[1.0, 2.0, math.nan])
    same = _spans(path=["/x/a.wav", "/x/b.wav", "/x/c.wav"], channel=[0, 1, 0], start=[0.0, 1.0, None],
                  end=[1.0, 2.0, None])
    check_spans(old, same)  # unchanged (a missing start / end equals a stored NaN)
    rows = same.copy()
    rows.loc["b", "end"] = 2.5
    rows.loc["c", "channel"] = 1
    with pytest.raises(SourceChangedError) as err:
        check_spans(old, rows)
    e = err.value
    assert (e.utt_id, e.path, e.changed) == ("b", "/x/b.wav", ["b", "c"])
    assert str(e).startswith("clip 'b' (/x/b.wav): its span in the file changed (end 2.0 -> 2.5) (1 more: 'c'). "
                             "A pool never replaces decoded audio under an existing id")


def test_a_change_in_a_later_span_column_alone_is_refused_too():
    old = _spans(channel=np.array([0, 0, 0], np.int32), start=[0.0, 0.0, 0.0], end=[1.0, 1.0, 1.0])
    rows = _spans(path=["/x/a.wav", "/x/b.wav", "/x/c.wav"], channel=[0, 0, 0], start=[0.0, 0.0, 0.5],
                  end=[1.0, 1.0, 1.0])  # only the start of 'c', a column after the first, changed
    with pytest.raises(SourceChangedError) as err:
        check_spans(old, rows)
    assert err.value.changed == ["c"] and "(start 0.0 -> 0.5)" in str(err.value)


# --- SourceChangedError: its message lists a few of the changed ids ---------------------------------------------


@pytest.mark.parametrize("changed, more", [
    (["a"], ""),
    (["a", "b"], " (1 more: 'b')"),
    (["a", "b", "c", "d"], " (3 more: 'b', 'c', 'd')"),
    (["a", "b", "c", "d", "e"], " (4 more: 'b', 'c', 'd', ...)"),
    (["a", "b", "c", "d", "e", "f"], " (5 more: 'b', 'c', 'd', ...)"),
])
def test_the_changed_source_message_names_at_most_three_more_ids(changed, more):
    e = SourceChangedError("a", "/x/a.wav", "it changed", changed)
    assert str(e).startswith(f"clip 'a' (/x/a.wav): it changed{more}. A pool never replaces decoded audio")
    assert e.changed == changed and e.utt_id == "a" and e.path == "/x/a.wav"

"""What an export folder's later write deletes (:func:`ser_models.ownership.replace_files`): only files whose
content is still what the platform wrote; an edited file, or one whose content was never recorded, stays with a
warning naming it."""

from __future__ import annotations

import json

from ser_models.ownership import MARKER_NAME, claim, read_marker, replace_files


def test_replace_files_records_each_files_hash_and_deletes_only_unchanged_ones(tmp_path):
    out = tmp_path / "export"
    claim(out, "export")
    (out / "data").mkdir()
    for name in ("a.parquet", "b.parquet", "c.parquet"):
        (out / "data" / name).write_text(f"ours {name}")
    lines: list[str] = []
    assert replace_files(out, "export", [out / "data" / n for n in ("a.parquet", "b.parquet", "c.parquet")],
                         log=lines.append) == []
    marker = read_marker(out)
    assert marker["files"] == ["data/a.parquet", "data/b.parquet", "data/c.parquet"]
    assert set(marker["hashes"]) == set(marker["files"]) and all(len(h) == 64 for h in marker["hashes"].values())
    (out / "data" / "b.parquet").write_text("a person's fix")  # edited since the platform wrote it
    assert replace_files(out, "export", [out / "data" / "a.parquet"], log=lines.append) == ["data/c.parquet"]
    assert (out / "data" / "b.parquet").read_text() == "a person's fix" and not (out / "data" / "c.parquet").exists()
    assert len(lines) == 1 and str(out / "data" / "b.parquet") in lines[0] and "changed since" in lines[0]
    assert read_marker(out)["files"] == ["data/a.parquet"]  # the kept file is no longer the platform's


def test_a_file_an_earlier_version_recorded_without_its_hash_is_kept(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "cuts.jsonl").write_text("{}\n")
    (out / MARKER_NAME).write_text(json.dumps({"kind": "export", "files": ["cuts.jsonl"]}))  # no hashes recorded
    lines: list[str] = []
    assert replace_files(out, "export", [], log=lines.append) == []
    assert (out / "cuts.jsonl").exists() and "not recorded" in lines[0]


def test_a_written_path_outside_the_folder_gets_no_hash(tmp_path):
    """Only files inside the export folder are hashed (one outside is recorded as given and never deleted)."""
    out = tmp_path / "export"
    claim(out, "export")
    beside = tmp_path / "beside.parquet"
    beside.write_text("theirs")
    (out / "a.parquet").write_text("ours")
    replace_files(out, "export", [beside, out / "a.parquet", out / "never_written.parquet"])
    marker = read_marker(out)
    assert marker["files"] == ["../beside.parquet", "a.parquet", "never_written.parquet"]
    assert list(marker["hashes"]) == ["a.parquet"]

"""``bench/fingerprint.py`` on a few MB, so the script does not rot between benchmark runs (its work folders' locks
are held until the process exits, as in a benchmark run)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # bench/ is not an installed package

from bench import fingerprint  # noqa: E402
from ser_models.exceptions import ForeignFolderError  # noqa: E402
from ser_models.locks import LOCK_NAME  # noqa: E402


def test_the_benchmark_times_every_key_and_leaves_only_its_marked_folders(tmp_path):
    text = fingerprint.main(["--workdir", str(tmp_path / "work"), "--size-gb", "0.003", "--repeats", "1",
                             "--results", ""])
    for row in ("path-keyed (before)", "first hash, cold", "first hash, warm", "sidecar hit"):
        assert row in text
    assert "0 files read and hashed" in text  # the sidecar hits read no file
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.name != LOCK_NAME)
    assert left == ["work", "work/.ser-output.json", "work/fingerprint", "work/fingerprint/.ser-output.json"]


def test_the_benchmark_refuses_a_work_folder_it_did_not_make(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ForeignFolderError):
        fingerprint.main(["--workdir", str(tmp_path), "--size-gb", "0.001", "--results", ""])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

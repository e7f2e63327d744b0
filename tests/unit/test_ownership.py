"""Delete only what we made: a folder the platform did not mark is refused and left as it was; deletions stay
inside marked folders, on recorded children or the kind's own layout names.

The second part is the module's contract function by function: which folders a claim takes (new, ours, adopted
by content) and refuses (with which words), what the marker holds, and what each delete removes and keeps; the
third, :func:`ser_models.ownership.overlap.check_apart` (an output that is an input, lies inside one or contains one is
refused naming both keys and paths). Real files in ``tmp_path``; S3 (moto) only where a branch is specific to
object stores."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

import ser_models
from ser_models.data import PoolConfig, prepare_pool
from ser_models.data.pool_builds import legacy_pool
from ser_models.exceptions import ForeignFolderError, LockHeldError, LockLostError, OutputOverlapError
from ser_models.io import TEMP_PREFIX
from ser_models.locks import LOCK_NAME, STALE_ENV, TAKE_OVER_ENV, WAIT_ENV, FolderLock
from ser_models.ownership import (
    KINDS,
    MARKER_NAME,
    assert_claimed,
    check_claim,
    check_output,
    claim,
    claim_file,
    claim_output,
    clear,
    discard_staging,
    entries,
    make_staging,
    open_output,
    read_marker,
    recognise_csv,
    recognise_files,
    recognise_run,
    record,
    recorded,
    remove,
    remove_if,
    replace_files,
)
from ser_models.ownership.overlap import check_apart

ROOT = Path(__file__).resolve().parents[2]


def _plain_folder(root):
    """A folder a person made: a thesis in ``data/`` and a ``build-old/`` of their own."""
    (root / "data").mkdir(parents=True)
    (root / "data" / "thesis.txt").write_text("four years of work")
    (root / "build-old").mkdir()
    (root / "build-old" / "notes.txt").write_text("keep me")
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_prepare_pool_refuses_a_folder_it_did_not_make_and_leaves_it_intact(tmp_path):
    """The issue's repro: before, output_dir holding data/thesis.txt and build-old/ lost both (exit 0)."""
    out = tmp_path / "out"
    before = _plain_folder(out)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("utt_id,path,label\na,a.wav,happy\n")
    with pytest.raises(ForeignFolderError) as err:
        prepare_pool(PoolConfig(manifest=str(manifest), output_dir=str(out), labels=[]))
    message = str(err.value)
    assert str(out) in message and "build-old" in message and "data" in message and MARKER_NAME in message
    after = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # nothing deleted, and no marker or lock written into it


def test_a_folder_marked_as_another_kind_is_refused_naming_its_kind(tmp_path):
    claim(tmp_path / "run", "run")
    (tmp_path / "run" / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(ForeignFolderError, match="marked as kind 'run'"):
        open_output(tmp_path / "run", "pool")
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_deletions_stay_inside_a_marked_folder_on_recorded_children(tmp_path):
    plain = tmp_path / "plain"
    _plain_folder(plain)
    with pytest.raises(ForeignFolderError, match="no .ser-output.json"):
        remove(plain, "pool", "build-old", recorded_only=False)
    assert (plain / "build-old" / "notes.txt").exists()

    pool = tmp_path / "pool"
    with open_output(pool, "pool"):
        for name in ("build-a", "build-b"):
            (pool / name).mkdir()
            (pool / name / "x.parquet").write_bytes(b"x")
        record(pool, "pool", ["build-a"])
        with pytest.raises(ForeignFolderError, match="not recorded"):
            remove(pool, "pool", "build-b", recorded_only=True)
        for bad in ("../plain", "/etc", "build-a/../../plain", MARKER_NAME, LOCK_NAME, ""):
            with pytest.raises(ForeignFolderError):
                remove(pool, "pool", bad, recorded_only=False)
        assert remove(pool, "pool", "build-a", recorded_only=True)
    assert not (pool / "build-a").exists() and (pool / "build-b" / "x.parquet").exists()
    assert (plain / "data" / "thesis.txt").exists()


def test_clear_keeps_the_marker_and_refuses_an_unmarked_folder(tmp_path):
    claim(tmp_path / "trial", "run")
    (tmp_path / "trial" / "in_process").mkdir()
    (tmp_path / "trial" / "run.json").write_text("{}")
    assert sorted(clear(tmp_path / "trial", "run")) == ["in_process", "run.json"]
    assert read_marker(tmp_path / "trial")["kind"] == "run"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "f").write_text("x")
    with pytest.raises(ForeignFolderError):
        clear(tmp_path / "other", "run")
    assert (tmp_path / "other" / "f").exists()


def test_a_run_folder_of_an_earlier_version_is_adopted_only_with_exactly_its_layout(tmp_path):
    recognise = recognise_run("jobs.after", ("labels", "rounds", "metrics.jsonl"))
    run = tmp_path / "run"
    (run / "rounds").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"job": "jobs.after", "config": {}}))
    lines = []
    claim(run, "run", recognise, log=lines.append)
    assert read_marker(run)["adopted"] is True and len(lines) == 1 and "adopted" in lines[0]

    other = tmp_path / "other"
    (other / "rounds").mkdir(parents=True)
    (other / "run.json").write_text(json.dumps({"job": "jobs.after", "config": {}}))
    (other / "my_notes.md").write_text("mine")
    with pytest.raises(ForeignFolderError, match="my_notes.md"):
        claim(other, "run", recognise)
    finetune = tmp_path / "finetune"
    finetune.mkdir()
    (finetune / "run.json").write_text(json.dumps({"job": "jobs.finetune", "config": {}}))
    with pytest.raises(ForeignFolderError):
        claim(finetune, "run", recognise)
    assert read_marker(other) is None and read_marker(finetune) is None


@pytest.mark.parametrize("files", [{"config.yaml": "active: {}\n"},
                                   {"config.yaml": "a: 1\n", "sweep.yaml": "b: 2\n", "notes.yml": "c\n"}])
def test_a_folder_of_yaml_files_alone_is_refused_and_keeps_its_files(tmp_path, files):
    """Names alone never adopt: a folder of YAML files (the repo's own jobs/configs/ qualified) was taken as a
    run folder, and the first start replaced its config.yaml."""
    run = tmp_path / "r1"
    run.mkdir()
    for name, text in files.items():
        (run / name).write_text(text)
    with pytest.raises(ForeignFolderError, match="no .ser-output.json marker"):
        claim(run, "run", recognise_run("jobs.after", ("labels", "rounds")))
    assert {p.name: p.read_text() for p in run.iterdir()} == files


@pytest.mark.parametrize("record", [None, "not json", {"job": "jobs.predict", "config": {}}, {"job": "jobs.after"},
                                    ["jobs.after"]])
def test_a_run_json_that_is_not_this_jobs_record_is_not_adopted(tmp_path, record):
    run = tmp_path / "r1"
    run.mkdir()
    (run / "config.yaml").write_text("x: 1\n")
    if record is not None:
        (run / "run.json").write_text(record if isinstance(record, str) else json.dumps(record))
    with pytest.raises(ForeignFolderError):
        claim(run, "run", recognise_run("jobs.after", ("labels", "rounds")))
    assert not (run / MARKER_NAME).exists()


def test_a_run_json_of_this_job_is_adopted(tmp_path):
    run = tmp_path / "r1"
    (run / "labels").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"format": 1, "job": "jobs.after", "config": {"seed": 0}}))
    claim(run, "run", recognise_run("jobs.after", ("labels", "rounds")))
    assert read_marker(run)["adopted"] is True


def _pool_shard(path: Path, columns=None) -> None:
    """One Parquet file of pool rows as an earlier version wrote it (``columns``: another table's)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ser_models.data.pool_builds import LEGACY_POOL_COLUMNS

    path.parent.mkdir(parents=True, exist_ok=True)
    if columns is None:
        row = {f.name: None for f in LEGACY_POOL_COLUMNS} | {"utt_id": "a", "path": "a.wav", "audio": b"fLaC",
                                                           "num_samples": 16000, "status": "ok"}
        table = pa.Table.from_pylist([row], schema=LEGACY_POOL_COLUMNS)
    else:
        table = pa.table({c: ["x"] for c in columns})
    pq.write_table(table, path)


def _legacy_pool_layout(root, extra=()):
    """What prepare_pool wrote before markers: summary.json naming its build and files.json, one crash leftover."""
    build, dead = "build-20240101T000000-0123abcd", "build-20240102T000000-89abcdef"
    _pool_shard(root / build / "data" / "split=train" / "0.parquet")
    (root / build / "files.json").write_text(json.dumps({"files": {"train": [f"{build}/data/split=train/0.parquet"]}}))
    (root / dead).mkdir()
    (root / "summary.json").write_text(json.dumps({"fingerprint": "f" * 32, "build": build,
                                                   "files": f"{build}/files.json", "format_version": 4}))
    for name in extra:
        (root / name).mkdir()
    return build, dead


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_legacy_pool_is_recognised_by_its_summary_and_builds_and_nothing_else(tmp_path):
    build, dead = _legacy_pool_layout(tmp_path / "pool")
    assert sorted(legacy_pool(str(tmp_path / "pool"), _names(tmp_path / "pool"))) == sorted([build, dead])
    _legacy_pool_layout(tmp_path / "mixed", extra=("build-old",))
    assert legacy_pool(str(tmp_path / "mixed"), _names(tmp_path / "mixed")) == \
        "it holds 'build-old', which no version of the pool writes"
    assert legacy_pool(str(tmp_path), ["data", "build-old"]) is None  # no summary.json


@pytest.mark.parametrize("spoil", [
    pytest.param(lambda b: _pool_shard(b / "data" / "split=train" / "0.parquet", ["utt_id", "path"]),
                 id="parquet without the pool's columns"),
    pytest.param(lambda b: (b / "data" / "split=train" / "0.parquet").write_bytes(b"RIFF....WAVEfmt "),
                 id="not parquet"),
    pytest.param(lambda b: (b / "data" / "split=train" / "0.parquet").unlink(), id="a listed file missing"),
])
def test_a_pool_whose_build_does_not_read_as_pool_parquet_is_not_adopted(tmp_path, spoil):
    build, _ = _legacy_pool_layout(tmp_path / "pool")
    spoil(tmp_path / "pool" / build)
    why = legacy_pool(str(tmp_path / "pool"), _names(tmp_path / "pool"))
    assert why == f"its data file {build}/data/split=train/0.parquet does not read as Parquet with the pool's columns"


def _first_layout_pool(root: Path) -> None:
    """A pool of the first layout (format 1): data/split=*/ Parquet, quarantine.parquet, config.yaml, no build."""
    import pyarrow.parquet as pq

    from ser_models.data.pool import QUARANTINE_SCHEMA

    _pool_shard(root / "data" / "split=train" / "part-0.parquet")
    _pool_shard(root / "data" / "split=test" / "part-0.parquet")
    pq.write_table(QUARANTINE_SCHEMA.empty_table(), root / "quarantine.parquet")
    (root / "config.yaml").write_text("manifest: m.csv\n")
    (root / "summary.json").write_text(json.dumps({"fingerprint": "f" * 32, "format_version": 1, "kept": 2}))


def test_a_pool_of_the_first_layout_is_adopted_when_its_data_reads_as_pool_parquet(tmp_path):
    _first_layout_pool(tmp_path / "pool")
    assert legacy_pool(str(tmp_path / "pool"), _names(tmp_path / "pool")) == ["data"]
    (tmp_path / "pool" / "data" / "split=train" / "clip.wav").write_bytes(b"RIFF")
    assert legacy_pool(str(tmp_path / "pool"), _names(tmp_path / "pool")) == \
        "its data file data/split=train/clip.wav is not a pool's split=<name>/<file>.parquet"
    (tmp_path / "pool" / "data" / "split=train" / "clip.wav").unlink()
    (tmp_path / "pool" / "quarantine.parquet").write_text("not parquet")
    assert legacy_pool(str(tmp_path / "pool"), _names(tmp_path / "pool")) == \
        "its quarantine.parquet does not read as a pool's quarantine table"


@pytest.mark.parametrize("summary", [{"fingerprint": "vendor-2024"}, {"fingerprint": "f" * 32, "format_version": 1}])
def test_prepare_pool_refuses_a_summary_with_a_fingerprint_beside_data_of_audio_files(tmp_path, summary):
    """A vendor folder (summary.json with a "fingerprint" key, data/ of audio files, config.yaml) was adopted by
    that one key: prepare_pool deleted its data/ and replaced its summary.json."""
    out = tmp_path / "vendor"
    (out / "data").mkdir(parents=True)
    for k in range(3):
        (out / "data" / f"call{k}.wav").write_bytes(b"RIFF" + bytes([k]) * 40)
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "config.yaml").write_text("vendor: acme\n")
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("utt_id,path,label\na,a.wav,happy\n")
    with pytest.raises(ForeignFolderError, match="not a prepared pool") as refused:
        prepare_pool(PoolConfig(manifest=str(manifest), output_dir=str(out), labels=[]))
    # the refusal says which content check failed, not only that the folder is not the platform's
    assert ("does not read as a pool's (a pool's has a fingerprint and a format_version)" if len(summary) == 1
            else "its data file data/call0.wav is not a pool's split=<name>/<file>.parquet") in str(refused.value)
    after = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_open_output_marks_and_locks_the_folder_until_the_job_leaves(tmp_path):
    with open_output(tmp_path / "seg", "segments") as lock:
        assert lock.held and (tmp_path / "seg" / LOCK_NAME).exists()
    assert not (tmp_path / "seg" / LOCK_NAME).exists() and read_marker(tmp_path / "seg")["kind"] == "segments"


def test_a_marker_write_killed_midway_never_blocks_the_folder(tmp_path):
    """A kill while writing the first marker left ``.ser-tmp-.ser-output.json.<random>.tmp``; every later start
    was refused."""
    out = tmp_path / "run"
    out.mkdir()
    litter = out / f"{TEMP_PREFIX}{MARKER_NAME}.k2j3h4x9.tmp"  # mkstemp: 8 characters
    litter.write_text('{"kind": "ru')
    with open_output(out, "run"):
        pass
    assert read_marker(out)["kind"] == "run" and not litter.exists()


def test_litter_of_another_write_is_ignored_by_a_claim_and_removed_by_the_owner(tmp_path):
    out = tmp_path / "pool"
    claim(out, "pool")
    (out / f"{TEMP_PREFIX}summary.json.a1b2c3d4.tmp").write_text("{")
    with open_output(out, "pool"):
        pass
    assert sorted(p.name for p in out.iterdir()) == [MARKER_NAME]


def test_a_segment_output_is_adopted_by_content_not_by_names(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ser_models.segment.run import _legacy_segments

    seg = tmp_path / "seg"
    seg.mkdir()
    names = ["config.yaml", "segments.parquet", "summary.json"]
    pq.write_table(pa.table({"utt_id": ["r-0-0"], "recording": ["r"], "start": [0.0], "end": [1.0]}),
                   seg / "segments.parquet")
    (seg / "summary.json").write_text('{"mine": 1}')
    (seg / "config.yaml").write_text("a: 1\n")
    assert _legacy_segments(str(seg), names) is None
    (seg / "summary.json").write_text("not json")
    assert _legacy_segments(str(seg), names) is None
    (seg / "summary.json").write_text(json.dumps({k: 0 for k in (
        "recordings", "segmented", "quarantined", "reasons", "segments", "rejected_segments", "audio_hours",
        "segment_hours", "vad_recordings", "vad_seconds", "seconds", "output_dir")}))
    assert _legacy_segments(str(seg), names) == []
    assert _legacy_segments(str(seg), ["config.yaml", "summary.json"]) is None  # its segments table is not there
    (seg / "segments.parquet").write_text("not parquet")
    assert _legacy_segments(str(seg), names) is None


@pytest.mark.parametrize("names", [("frames", "config.yaml"), ("frames",), ("frames", "quarantine.parquet")])
def test_jobs_segment_refuses_a_folder_of_frames_and_a_config_and_keeps_the_config(tmp_path, names):
    """A folder holding only frames/ and config.yaml was adopted by its names, and the person's config.yaml was
    overwritten by the first segmentation."""
    from jobs.segment import main

    out = tmp_path / "mine"
    for name in names:
        if name == "frames":
            (out / "frames" / "vad").mkdir(parents=True)
            (out / "frames" / "vad" / "take1.npy").write_bytes(b"\x93NUMPY")
        elif name == "config.yaml":
            (out / "config.yaml").write_text("my: settings\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({"recording": ["r"]}), out / name)
    recordings = tmp_path / "recordings.csv"
    recordings.write_text("recording,path\nr,a.wav\n")
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ForeignFolderError, match="not a segmentation output"):
        main([f"recordings={recordings}", f"output_dir={out}"])
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_pool_summary_naming_builds_that_are_not_there_is_not_adopted(tmp_path):
    build, dead = _legacy_pool_layout(tmp_path / "pool")
    (tmp_path / "pool" / build).rename(tmp_path / "elsewhere")
    names = sorted(p.name for p in (tmp_path / "pool").iterdir())
    assert legacy_pool(str(tmp_path / "pool"), names).startswith("the builds its summary.json names do not read")


@pytest.mark.parametrize("relation", ["is", "inside", "contains", "link"])
def test_an_output_overlapping_an_input_is_refused_before_anything_is_written(tmp_path, relation):
    from ser_models.exceptions import OutputOverlapError
    from ser_models.ownership import claim_output

    pool = tmp_path / "data" / "pool"
    pool.mkdir(parents=True)
    (pool / "summary.json").write_text("{}")
    out = {"is": pool, "inside": pool / "run", "contains": tmp_path / "data", "link": tmp_path / "alias"}[relation]
    if relation == "link":
        out.symlink_to(pool, target_is_directory=True)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(OutputOverlapError, match="pool_dir="):
        claim_output(out, "run", job="jobs.predict", inputs={"pool_dir": str(pool)})
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_a_run_folder_of_another_job_is_refused(tmp_path):
    from ser_models.ownership import claim_output

    with claim_output(tmp_path / "r", "run", job="jobs.after"):
        pass
    with pytest.raises(ForeignFolderError, match="jobs.after's, not jobs.predict's"):
        claim_output(tmp_path / "r", "run", job="jobs.predict")


def test_an_export_never_deletes_through_a_link_and_records_relative_paths(tmp_path, monkeypatch):
    from ser_models.ownership import replace_files

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "export"
    claim(out, "export")
    (out / "data").mkdir()
    (out / "data" / "train-0.parquet").write_text("ours")
    assert replace_files("export", "export", ["export/data/train-0.parquet"]) == []  # a relative path
    assert read_marker(out)["files"] == ["data/train-0.parquet"]
    person = tmp_path / "person"
    person.mkdir()
    (person / "train-0.parquet").write_text("theirs")
    (out / "data" / "train-0.parquet").unlink()
    (out / "data").rmdir()
    (out / "data").symlink_to(person, target_is_directory=True)  # data/ now leads to a person's folder
    assert replace_files(out, "export", []) == []
    assert (person / "train-0.parquet").read_text() == "theirs"


def test_a_refused_rows_file_is_deleted_only_when_it_reads_as_ours(tmp_path):
    """``<output>.refused.csv`` of an earlier import was deleted unchecked."""
    from ser_models.formats.rows import _is_refusal_listing
    from ser_models.ownership import remove_if

    ours, theirs = tmp_path / "a.refused.csv", tmp_path / "b.refused.csv"
    ours.write_text("row,id,reason,detail\n3,x,missing_file,\n")
    theirs.write_text("utt_id,label\nx,happy\n")  # a person's own file of that name
    assert remove_if(ours, _is_refusal_listing, "a list of refused rows") and not ours.exists()
    assert not remove_if(theirs, _is_refusal_listing, "a list of refused rows") and theirs.exists()


# -- the contract, function by function -------------------------------------------------------------------------

STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}")


@pytest.fixture(autouse=True)
def _empty_working_folder(tmp_path, monkeypatch):
    """A path taken from the wrong argument (``None``, a bare name) lands in this empty folder, never in a real one."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for name in (STALE_ENV, TAKE_OVER_ENV, WAIT_ENV):  # a writer stops at once on a held lock
        monkeypatch.delenv(name, raising=False)


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root``: files with their bytes, folders and links as None."""
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(root.rglob("*"))}


def _refusal(folder, kind: str, has: str, holds: str) -> str:
    """The whole ForeignFolderError message of a claim or delete refused in ``folder``."""
    what = KINDS.get(kind, kind)
    return (f"refusing to write or delete in {folder}: it is not empty and not {what} made by this platform ({has}). "
            f"It holds: {holds}. Point the job's output at a new or empty folder. If this folder is really {what} "
            f"from this platform, move the entries it does not make elsewhere, or write {{\"kind\": \"{kind}\"}} to "
            f"{folder}/{MARKER_NAME}")


def _write(path: Path, text: str | bytes = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _taken_over(folder: Path) -> None:
    """Rewrite ``folder``'s lock file as another writer's: what a take-over leaves for the writer that lost it."""
    lock = folder / LOCK_NAME
    lock.write_text(json.dumps({**json.loads(lock.read_text()), "token": "another-writer"}))


@contextmanager
def _locked_by_another_thread(folder: Path):
    """``folder``'s lock held by another thread (another writer) for the ``with`` block."""
    held, done = threading.Event(), threading.Event()

    def hold():
        with FolderLock(folder, "test folder"):
            held.set()
            done.wait(30)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert held.wait(30)
    try:
        yield
    finally:
        done.set()
        thread.join(30)


# -- refusals: the message names the folder, its kind (if any) and its entries ----------------------------------


def test_an_unmarked_folder_is_refused_with_its_entries_and_nothing_is_written(tmp_path):
    out = tmp_path / "out"
    _write(out / "notes.txt", "mine")
    (out / "data").mkdir()
    before = _tree(out)
    with pytest.raises(ForeignFolderError) as err:
        check_claim(out, "pool")
    assert str(err.value) == _refusal(out, "pool", f"it has no {MARKER_NAME} marker", "data, notes.txt")
    with pytest.raises(ForeignFolderError) as err:
        claim(out, "pool")  # no recognise: an unmarked folder is never adopted
    assert str(err.value) == _refusal(out, "pool", f"it has no {MARKER_NAME} marker", "data, notes.txt")
    assert _tree(out) == before


def test_a_folder_marked_as_another_kind_is_refused_naming_that_kind(tmp_path):
    out = tmp_path / "out"
    claim(out, "run")
    _write(out / "metrics.jsonl", "{}\n")
    with pytest.raises(ForeignFolderError) as err:
        check_claim(out, "pool")
    assert str(err.value) == _refusal(out, "pool", "it is marked as kind 'run'", "metrics.jsonl")


def test_a_run_folder_of_another_job_is_refused_naming_both_jobs(tmp_path):
    out = tmp_path / "out"
    claim(out, "run", job="jobs.after")
    _write(out / "run.json", "{}")
    with pytest.raises(ForeignFolderError) as err:
        claim(out, "run", job="jobs.predict")
    assert str(err.value) == _refusal(out, "run", "it is marked as kind 'run'; it is jobs.after's, not jobs.predict's",
                                      "run.json")
    assert claim(out, "run")["job"] == "jobs.after"  # no job asked: the run folder is ours


def test_a_kind_the_platform_does_not_list_is_named_as_given(tmp_path):
    _write(tmp_path / "out" / "a.txt")
    with pytest.raises(ForeignFolderError) as err:
        check_claim(tmp_path / "out", "mystery")
    message = str(err.value)
    assert "not mystery made by this platform" in message and '{"kind": "mystery"}' in message
    assert message == _refusal(tmp_path / "out", "mystery", f"it has no {MARKER_NAME} marker", "a.txt")


@pytest.mark.parametrize("count, holds", [
    (2, "f0, f1"),
    (8, "f0, f1, f2, f3, f4, f5, f6, f7"),
    (9, "f0, f1, f2, f3, f4, f5, f6, f7, ... (9 entries)"),
])
def test_a_refusal_shows_eight_entries_then_how_many_there_are(tmp_path, count, holds):
    for i in range(count):
        _write(tmp_path / "out" / f"f{i}")
    with pytest.raises(ForeignFolderError) as err:
        check_claim(tmp_path / "out", "pool")
    assert f"It holds: {holds}. Point the job's output" in str(err.value)


@pytest.mark.parametrize("name", ["my.notes.v2.txt", ".x.tmp", ".x.k2j3.tmpl", "x.k2j3.tmp", ".report.draft_v2.tmp",
                                  ".labels.20250101.tmp", f".summary.{'0123456789abcdef' * 2}.tmp",
                                  f".{MARKER_NAME}.k2j3h4x9.tmp", TEMP_PREFIX[1:] + "x.tmp", ".ser-tmpx.tmp"])
def test_a_file_named_almost_like_litter_makes_a_folder_foreign(tmp_path, name):
    _write(tmp_path / "out" / name)
    with pytest.raises(ForeignFolderError, match=re.escape(f"It holds: {name}.")):
        claim(tmp_path / "out", "run")
    assert (tmp_path / "out" / name).exists() and read_marker(tmp_path / "out") is None


@pytest.mark.parametrize("name", [f"{TEMP_PREFIX}summary.{'0123456789abcdef' * 2}.tmp",
                                  f"{TEMP_PREFIX}{MARKER_NAME}.k2j3h4x9.tmp"])
def test_litter_of_a_killed_write_never_blocks_a_claim_and_is_removed(tmp_path, name):
    """``.ser-tmp-<name>.<random>.tmp``, as an object store's write (32 hex digits) or a local one (mkstemp)
    leaves it."""
    out = tmp_path / "out"
    _write(out / name, '{"kind": "ru')
    assert check_claim(out, "run") == ("new", [])
    claim(out, "run")
    assert sorted(p.name for p in out.iterdir()) == [MARKER_NAME]


def test_a_persons_hidden_file_shaped_like_litter_is_neither_ignored_nor_deleted(tmp_path):
    out = tmp_path / "notes"
    _write(out / ".draft.final.tmp", "a person's notes")
    with pytest.raises(ForeignFolderError, match=re.escape("It holds: .draft.final.tmp.")):
        claim(out, "run")
    assert (out / ".draft.final.tmp").read_text() == "a person's notes"


# -- claims: new, ours, adopted ----------------------------------------------------------------------------------


def test_check_claim_says_new_ours_or_legacy_and_writes_nothing(tmp_path):
    assert check_claim(tmp_path / "missing", "pool") == ("new", [])
    (tmp_path / "empty").mkdir()
    assert check_claim(tmp_path / "empty", "pool") == ("new", [])
    claim(tmp_path / "ours", "pool")
    assert check_claim(tmp_path / "ours", "pool") == ("ours", [])
    _write(tmp_path / "old" / "summary.json", "{}")
    assert check_claim(tmp_path / "old", "pool", lambda folder, names: ["build-b", "build-a"]) == \
        ("legacy", ["build-b", "build-a"])
    assert not (tmp_path / "missing").exists() and not list((tmp_path / "empty").iterdir())
    assert read_marker(tmp_path / "old") is None


def test_a_new_folder_gets_the_documented_marker(tmp_path):
    marker = claim(tmp_path / "pool", "pool")
    assert read_marker(tmp_path / "pool") == marker
    assert set(marker) == {"kind", "created_at", "platform_version", "children", "adopted"}
    assert marker["kind"] == "pool" and marker["children"] == [] and marker["adopted"] is False
    assert marker["platform_version"] == ser_models.__version__ and STAMP.fullmatch(marker["created_at"])
    run = claim(tmp_path / "run", "run", job="jobs.after")
    assert set(run) == {"kind", "created_at", "platform_version", "children", "adopted", "job"}
    assert run["job"] == "jobs.after"


def test_claiming_a_folder_that_is_ours_returns_its_marker_unchanged(tmp_path):
    first = claim(tmp_path / "pool", "pool")
    _write(tmp_path / "pool" / "summary.json", "{}")
    assert claim(tmp_path / "pool", "pool") == first == read_marker(tmp_path / "pool")


def test_the_marker_names_an_unknown_version_when_the_package_has_none(tmp_path, monkeypatch):
    monkeypatch.delattr(ser_models, "__version__")
    assert claim(tmp_path / "pool", "pool")["platform_version"] == "unknown"


def test_an_adopted_folder_records_its_children_and_says_so_in_one_line(tmp_path):
    out = tmp_path / "pool"
    _write(out / "summary.json", "{}")
    lines = []
    marker = claim(out, "pool", lambda folder, names: ["build-b", "build-a"], log=lines.append)
    assert marker["adopted"] is True and marker["children"] == ["build-a", "build-b"]
    assert read_marker(out) == marker
    assert lines == [f"{out}: adopted as {KINDS['pool']} written by an earlier version (its layout is exactly ours; "
                     f"marker {MARKER_NAME} written, recorded build-a, build-b)"]


def test_an_adopted_folder_of_an_unlisted_kind_without_children_is_logged_plainly(tmp_path):
    out = tmp_path / "x"
    _write(out / "a.txt")
    lines = []
    claim(out, "mystery", lambda folder, names: [], log=lines.append)
    assert lines == [f"{out}: adopted as mystery written by an earlier version (its layout is exactly ours; "
                     f"marker {MARKER_NAME} written)"]


@pytest.mark.parametrize("text", ["[1]", '"pool"', "not json", ""])
def test_a_marker_that_is_not_a_json_object_reads_as_none(tmp_path, text):
    _write(tmp_path / "out" / MARKER_NAME, text)
    assert read_marker(tmp_path / "out") is None


# -- check_output: the refusals of claim_output, nothing written ---------------------------------------------------


def test_check_output_refuses_an_output_inside_an_input_naming_the_output_key(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    with pytest.raises(OutputOverlapError) as err:
        check_output(pool / "run", "run", job="jobs.after", inputs={"pool_dir": str(pool)})
    assert str(err.value).startswith(f"refusing to write output_dir={pool / 'run'}: it lies inside the input "
                                     f"pool_dir={pool}")
    with pytest.raises(OutputOverlapError, match=re.escape(f"refusing to write run_dir={pool}: it is the input")):
        check_output(pool, "run", inputs={"pool_dir": str(pool)}, key="run_dir")
    assert not (pool / "run").exists() and not list(pool.iterdir())


def _legacy_run(folder: Path, job: str = "jobs.after") -> Path:
    """A run folder an earlier version wrote (no marker): its run.json, config.yaml and a ``labels/`` folder."""
    _write(folder / "run.json", json.dumps({"format": 1, "job": job, "config": {"seed": 0}}))
    _write(folder / "config.yaml", "seed: 0\n")
    (folder / "labels").mkdir()
    return folder


def test_check_output_accepts_an_earlier_run_folder_of_its_job_without_marking_it(tmp_path):
    run = _legacy_run(tmp_path / "run")
    before = _tree(run)
    check_output(run, "run", job="jobs.after", layout=("labels",))
    assert _tree(run) == before
    with pytest.raises(ForeignFolderError, match="no .ser-output.json marker"):
        check_output(run, "run", job="jobs.predict", layout=("labels",))
    with pytest.raises(ForeignFolderError):
        check_output(run, "run", job="jobs.after")  # labels/ is not in the layout asked for
    assert _tree(run) == before


def test_check_output_refuses_a_foreign_folder_and_accepts_its_own(tmp_path):
    _write(tmp_path / "foreign" / "thesis.txt")
    with pytest.raises(ForeignFolderError, match="thesis.txt"):
        check_output(tmp_path / "foreign", "pool")
    assert read_marker(tmp_path / "foreign") is None
    claim(tmp_path / "pool", "pool")
    _write(tmp_path / "pool" / "summary.json", "{}")
    check_output(tmp_path / "pool", "pool")
    claim(tmp_path / "run", "run", job="jobs.after")
    check_output(tmp_path / "run", "run", job="jobs.after")
    with pytest.raises(ForeignFolderError, match="it is jobs.after's, not jobs.predict's"):
        check_output(tmp_path / "run", "run", job="jobs.predict")
    check_output(tmp_path / "missing", "pool")
    assert not (tmp_path / "missing").exists()


def test_check_output_keeps_the_recognise_it_is_given(tmp_path):
    _write(tmp_path / "out" / "a.json", "{}")
    check_output(tmp_path / "out", "run", job="jobs.x", recognise=recognise_files({"a.json": "json"}))
    check_output(tmp_path / "out", "evidence", job="jobs.evidence", recognise=recognise_files({"a.json": "json"}))
    assert read_marker(tmp_path / "out") is None


# -- claim_output / open_output: refuse, lock, mark ----------------------------------------------------------------


def test_claim_output_refuses_an_overlap_naming_the_output_key(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    with pytest.raises(OutputOverlapError, match=re.escape(f"refusing to write output_dir={pool}: it is the input")):
        claim_output(pool, "run", inputs={"pool_dir": str(pool)})
    with pytest.raises(OutputOverlapError, match=re.escape(f"refusing to write out={pool}: it is the input")):
        claim_output(pool, "run", inputs={"pool_dir": str(pool)}, key="out")
    assert not list(pool.iterdir())


def test_claim_output_adopts_an_earlier_run_folder_of_its_job_and_names_its_lock_after_the_job(tmp_path):
    run = _legacy_run(tmp_path / "run")
    lines = []
    with claim_output(run, "run", job="jobs.after", layout=("labels",), log=lines.append) as lock:
        assert lock.held and lock.what == "jobs.after output folder"
        marker = read_marker(run)
        assert marker["adopted"] is True and marker["job"] == "jobs.after" and marker["kind"] == "run"
    assert len(lines) == 1 and lines[0].startswith(f"{run}: adopted as {KINDS['run']} written by an earlier version")


def test_claim_output_names_its_lock_and_passes_the_lock_settings(tmp_path):
    with claim_output(tmp_path / "a", "pool") as lock:
        assert lock.what == "pool"
    with claim_output(tmp_path / "b", "pool", what="the pool", stale_s=7) as lock:
        assert lock.what == "the pool" and lock.stale_s == 7


def test_claim_output_adopts_with_the_recognise_it_is_given(tmp_path):
    _write(tmp_path / "seg" / "summary.json", "{}")
    lines = []
    with claim_output(tmp_path / "seg", "segments", recognise=recognise_files({"summary.json": "json"}), log=lines.append):
        assert read_marker(tmp_path / "seg")["adopted"] is True
    assert len(lines) == 1


def test_open_output_names_its_lock_after_the_kind_and_passes_the_lock_settings(tmp_path):
    with open_output(tmp_path / "a", "feature_cache") as lock:
        assert lock.what == "feature cache"
    with open_output(tmp_path / "b", "feature_cache", what="the cache", stale_s=7) as lock:
        assert lock.what == "the cache" and lock.stale_s == 7
    assert read_marker(tmp_path / "b")["kind"] == "feature_cache"


def test_open_output_adopts_with_the_recognise_it_is_given_and_logs_it(tmp_path):
    _write(tmp_path / "seg" / "summary.json", "{}")
    lines = []
    with open_output(tmp_path / "seg", "segments", recognise=recognise_files({"summary.json": "json"}), log=lines.append):
        assert read_marker(tmp_path / "seg")["adopted"] is True
    assert len(lines) == 1 and "adopted as a segmentation output (jobs.segment)" in lines[0]


def test_open_output_refuses_a_foreign_folder_before_it_waits_for_the_lock(tmp_path):
    """A folder that is not ours is refused as such, even while another writer holds its lock."""
    new = tmp_path / "new"
    with _locked_by_another_thread(new), pytest.raises(LockHeldError):
        open_output(new, "pool")  # the setup is real: a folder we may take is refused by its lock
    _write(tmp_path / "foreign" / "thesis.txt")
    with _locked_by_another_thread(tmp_path / "foreign"), pytest.raises(ForeignFolderError, match="thesis.txt"):
        open_output(tmp_path / "foreign", "pool")
    claim(tmp_path / "run", "run", job="jobs.after")
    with _locked_by_another_thread(tmp_path / "run"), \
            pytest.raises(ForeignFolderError, match="it is jobs.after's, not jobs.predict's"):
        open_output(tmp_path / "run", "run", job="jobs.predict")


# -- claim_file: one output file ------------------------------------------------------------------------------------


def test_claim_file_accepts_a_new_path_or_a_file_to_replace(tmp_path):
    claim_file(tmp_path / "model.onnx")
    _write(tmp_path / "old.onnx", b"old graph")
    claim_file(tmp_path / "old.onnx", inputs={"checkpoint": str(tmp_path / "ckpt")})
    assert not (tmp_path / "model.onnx").exists() and (tmp_path / "old.onnx").read_bytes() == b"old graph"


def test_claim_file_refuses_a_folder_naming_its_entries(tmp_path):
    out = tmp_path / "model.onnx"
    _write(out / "a.txt")
    with pytest.raises(ForeignFolderError) as err:
        claim_file(out)
    assert str(err.value) == (f"refusing to write output={out}: it is a folder (a.txt); output names the one file "
                              "to write. Name a file path instead")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ForeignFolderError, match=re.escape(f"refusing to write plot={tmp_path / 'empty'}: it is a "
                                                           "folder (empty); plot names the one file")):
        claim_file(tmp_path / "empty", key="plot")
    (tmp_path / "link.onnx").symlink_to(out, target_is_directory=True)
    with pytest.raises(ForeignFolderError, match="it is a folder"):
        claim_file(tmp_path / "link.onnx")
    assert _tree(out) == {"a.txt": b"x"}


def test_claim_file_refuses_an_output_that_is_an_input(tmp_path):
    manifest = _write(tmp_path / "manifest.csv", "utt_id\n")
    with pytest.raises(OutputOverlapError) as err:
        claim_file(manifest, inputs={"input": str(manifest)})
    assert str(err.value).startswith(f"refusing to write output={manifest}: it is the input input={manifest}")
    with pytest.raises(OutputOverlapError, match=re.escape(f"refusing to write manifest={manifest}: it is")):
        claim_file(manifest, inputs={"input": str(manifest)}, key="manifest")
    assert manifest.read_text() == "utt_id\n"


# -- assert_claimed: marked, and locked by this process -------------------------------------------------------------


@pytest.mark.parametrize("name", ["outX", "out ", "out"])
def test_a_claimed_folder_passes_assert_claimed_whatever_its_name_ends_with(tmp_path, name):
    with claim_output(tmp_path / name, "run"):
        assert_claimed(tmp_path / name)
        assert_claimed(f"{tmp_path / name}/")


def test_assert_claimed_refuses_a_folder_without_marker_or_lock(tmp_path):
    message = (f"refusing to write into {tmp_path / 'out'}: the job has not claimed it (a marked folder whose lock "
               "this process holds); every writer claims its output with ser_models.ownership.claim_output before "
               "its first byte")
    with FolderLock(tmp_path / "out", "run"), pytest.raises(ForeignFolderError) as err:
        assert_claimed(tmp_path / "out")  # locked, not marked
    assert str(err.value) == message
    claim(tmp_path / "out", "run")
    with pytest.raises(ForeignFolderError, match="has not claimed it"):
        assert_claimed(tmp_path / "out")  # marked, not locked
    with FolderLock(tmp_path, "parent"), pytest.raises(ForeignFolderError, match="has not claimed it"):
        assert_claimed(tmp_path / "out")  # marked, and only a folder above it locked


# -- deletes inside a marked folder ---------------------------------------------------------------------------------


def test_a_delete_in_a_folder_of_another_kind_is_refused_and_deletes_nothing(tmp_path):
    out = tmp_path / "out"
    claim(out, "pool")
    (out / "build-a").mkdir()
    for delete in (lambda: remove(out, "run", "build-a", recorded_only=False), lambda: clear(out, "run"),
                   lambda: recorded(out, "run"), lambda: replace_files(out, "run", [])):
        with pytest.raises(ForeignFolderError) as err:
            delete()
        assert str(err.value) == _refusal(out, "run", "it is marked as kind 'pool'; nothing deleted", "build-a")
    with pytest.raises(ForeignFolderError) as err:
        remove(tmp_path / "cwd", "run", "x", recorded_only=False)
    assert f"(it has no {MARKER_NAME} marker; nothing deleted)" in str(err.value)
    assert (out / "build-a").is_dir()


@pytest.mark.parametrize("rel", ["a//b", "a/./b", "a/b/", "a/\x00b", "../x", "a/../../x", "/etc", "s3://b/x", "", "."])
def test_remove_refuses_a_path_that_is_not_plain(tmp_path, rel):
    out = tmp_path / "out"
    claim(out, "pool")
    _write(out / "a" / "b")
    with pytest.raises(ForeignFolderError) as err:
        remove(out, "pool", rel, recorded_only=False)
    assert str(err.value) == f"refusing to delete {rel!r} under {out}: not a plain path inside the folder"
    assert (out / "a" / "b").exists()


@pytest.mark.parametrize("rel", [MARKER_NAME, LOCK_NAME, f"{LOCK_NAME}.taking", f"{MARKER_NAME}/x"])
def test_remove_never_deletes_the_marker_or_the_lock(tmp_path, rel):
    out = tmp_path / "out"
    claim(out, "pool")
    with pytest.raises(ForeignFolderError) as err:
        remove(out, "pool", rel, recorded_only=False)
    assert str(err.value) == f"refusing to delete {rel!r} under {out}: the folder's marker and lock stay"
    assert read_marker(out)["kind"] == "pool"


def test_remove_deletes_only_recorded_children_and_says_whether_it_deleted(tmp_path):
    out = tmp_path / "pool"
    claim(out, "pool")
    _write(out / "build-a" / "x.parquet")
    _write(out / "build-b" / "x.parquet")
    _write(out / "notes.txt")
    record(out, "pool", ["build-a", "gone"])
    with pytest.raises(ForeignFolderError) as err:
        remove(out, "pool", "build-b/x.parquet", recorded_only=True)
    assert str(err.value) == (f"refusing to delete {out}/build-b/x.parquet: 'build-b' is not recorded as made by this "
                              f"platform in {out}/{MARKER_NAME}")
    assert remove(out, "pool", "gone", recorded_only=True) is False
    assert remove(out, "pool", "build-a/x.parquet", recorded_only=True) is True
    assert remove(out, "pool", "build-a", recorded_only=True) is True
    assert remove(out, "pool", "notes.txt", recorded_only=False) is True
    assert _tree(out) == {MARKER_NAME: (out / MARKER_NAME).read_bytes(), "build-b": None,
                          "build-b/x.parquet": b"x"}


def test_record_adds_and_forgets_children(tmp_path):
    out = tmp_path / "pool"
    claim(out, "pool")
    record(out, "pool", ["build-a"])
    record(out, "pool", ["build-b/data", "build-c"])
    assert recorded(out, "pool") == {"build-a", "build-b", "build-c"} == set(read_marker(out)["children"])
    record(out, "pool", ["build-a", "build-c/x"], add=False)
    assert read_marker(out)["children"] == ["build-b"]
    with pytest.raises(ForeignFolderError) as err:
        record(out, "pool", ["../x"])
    assert str(err.value) == f"refusing to delete '../x' under {out}: not a plain path inside the folder"


def test_clear_deletes_everything_but_the_marker_and_the_lock(tmp_path):
    out = tmp_path / "trial"
    with claim_output(out, "run"):
        _write(out / "run.json", "{}")
        _write(out / "in_process" / "state.bin")
        (out / "link").symlink_to(tmp_path / "cwd", target_is_directory=True)
        assert sorted(clear(out, "run")) == ["in_process", "link", "run.json"]
        assert sorted(p.name for p in out.iterdir()) == sorted([MARKER_NAME, LOCK_NAME])
    assert (tmp_path / "cwd").is_dir()  # the link was removed, not what it pointed at


def test_a_writer_whose_lock_was_taken_over_marks_records_and_deletes_nothing(tmp_path):
    new = tmp_path / "new"
    with FolderLock(new, "run"):
        _taken_over(new)
        with pytest.raises(LockLostError):
            claim(new, "run")
    assert read_marker(new) is None

    pool = tmp_path / "pool"
    with FolderLock(pool, "pool"):
        claim(pool, "pool")
        record(pool, "pool", ["build-a"])
        _taken_over(pool)
        with pytest.raises(LockLostError):
            record(pool, "pool", ["build-a"])  # nothing to change: still checked
    assert recorded(pool, "pool") == {"build-a"}

    export = tmp_path / "export"
    with FolderLock(export, "export"):
        claim(export, "export")
        _write(export / "a.parquet")
        replace_files(export, "export", [export / "a.parquet"])
        _taken_over(export)
        with pytest.raises(LockLostError):
            replace_files(export, "export", [])
    assert (export / "a.parquet").exists() and read_marker(export)["files"] == ["a.parquet"]


# -- replace_files: the files of the previous export -----------------------------------------------------------------


def test_replace_files_deletes_only_the_previous_exports_files_not_written_again(tmp_path):
    out = tmp_path / "export"
    claim(out, "export")
    for rel in ("a/gone.parquet", "b.parquet", "c.parquet", "data/d.parquet"):
        _write(out / rel, rel)
    assert replace_files(out, "export", [out / "a/gone.parquet", out / "b.parquet", out / "c.parquet",
                                         str(out / "data/d.parquet")]) == []
    assert read_marker(out)["files"] == ["a/gone.parquet", "b.parquet", "c.parquet", "data/d.parquet"]
    (out / "a" / "gone.parquet").unlink()  # gone since: skipped, the others still go
    _write(out / "README.md", "a person's")
    _write(out / "data" / "mine.csv", "a person's")
    assert replace_files(out, "export", [out / "c.parquet"]) == ["b.parquet", "data/d.parquet"]
    assert read_marker(out)["files"] == ["c.parquet"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        sorted([MARKER_NAME, "README.md", "c.parquet", "data/mine.csv"])


def test_replace_files_skips_a_recorded_path_that_is_now_a_folder(tmp_path):
    out = tmp_path / "export"
    claim(out, "export")
    _write(out / "a.parquet")
    _write(out / "b.parquet")
    replace_files(out, "export", [out / "a.parquet", out / "b.parquet"])
    (out / "a.parquet").unlink()
    _write(out / "a.parquet" / "person.txt")
    assert replace_files(out, "export", []) == ["b.parquet"]
    assert (out / "a.parquet" / "person.txt").exists() and not (out / "b.parquet").exists()


def test_replace_files_refuses_a_recorded_path_outside_the_folder(tmp_path):
    out = tmp_path / "export"
    claim(out, "export")
    outside = _write(tmp_path / "outside.txt", "theirs")
    (out / MARKER_NAME).write_text(json.dumps({**read_marker(out), "files": ["../outside.txt"]}))
    with pytest.raises(ForeignFolderError) as err:
        replace_files(out, "export", [])
    assert str(err.value) == f"refusing to delete '../outside.txt' under {out}: not a plain path inside the folder"
    assert outside.read_text() == "theirs"


def test_a_written_path_outside_the_folder_is_recorded_as_given_and_never_deleted(tmp_path):
    """A path outside the export folder (another store, a local file beside it) is kept in the marker as given, so
    the next export refuses it, naming it, instead of deleting it."""
    out = tmp_path / "export"
    claim(out, "export")
    beside = _write(tmp_path / "beside.parquet", "theirs")
    replace_files(out, "export", ["s3://bkt/x.parquet", beside])
    assert read_marker(out)["files"] == ["../beside.parquet", "s3://bkt/x.parquet"]
    with pytest.raises(ForeignFolderError, match=re.escape(f"refusing to delete '../beside.parquet' under {out}:")):
        replace_files(out, "export", ["s3://bkt/x.parquet"])
    with pytest.raises(ForeignFolderError, match=re.escape(f"refusing to delete 's3://bkt/x.parquet' under {out}:")):
        replace_files(out, "export", [beside])
    assert beside.read_text() == "theirs"


def test_replace_files_deletes_in_an_export_folder_reached_through_a_link(tmp_path):
    """Only links below the folder stop a delete: the folder itself may be named through a link."""
    real = tmp_path / "real"
    claim(real, "export")
    _write(real / "data" / "a.parquet")
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)
    alias = tmp_path / "alias"
    replace_files(alias, "export", [alias / "data" / "a.parquet"])
    assert replace_files(alias, "export", []) == ["data/a.parquet"]
    assert not (real / "data" / "a.parquet").exists()


def test_replace_files_on_an_object_store_records_paths_relative_to_the_folder(s3_bucket):
    from ser_models import io

    out = f"{s3_bucket}/exportX"  # a name ending in X: no character but "/" is stripped from it
    claim(out, "export")
    for rel in ("a.parquet", "data/b.parquet"):
        io.write_bytes_atomic(f"{out}/{rel}", b"x")
    assert replace_files(out, "export", [f"{out}/a.parquet", f"{out}/data/b.parquet"]) == []
    assert read_marker(out)["files"] == ["a.parquet", "data/b.parquet"]
    assert replace_files(out, "export", ["data/b.parquet"]) == ["a.parquet"]  # a plain path: already relative
    assert read_marker(out)["files"] == ["data/b.parquet"]
    assert not io.exists(f"{out}/a.parquet") and io.exists(f"{out}/data/b.parquet")


# -- remove_if: one file, by its content ------------------------------------------------------------------------------


def _refused_rows(path) -> bool:
    return Path(path).read_text().startswith("row,id,reason")


def test_remove_if_deletes_a_file_that_reads_as_ours_and_keeps_anything_else(tmp_path, capsys):
    ours = _write(tmp_path / "a.refused.csv", "row,id,reason,detail\n")
    theirs = _write(tmp_path / "b.refused.csv", "utt_id,label\n")
    assert remove_if(ours, _refused_rows, "a list of refused rows") is True and not ours.exists()
    assert remove_if(theirs, _refused_rows, "a list of refused rows") is False and theirs.exists()
    assert capsys.readouterr().out == \
        f"{theirs}: left as it is (it does not read as a list of refused rows this platform wrote)\n"


def test_remove_if_never_follows_a_link_and_ignores_what_is_not_a_file(tmp_path, capsys):
    target = _write(tmp_path / "target.csv", "row,id,reason,detail\n")
    (tmp_path / "link.csv").symlink_to(target)
    assert remove_if(tmp_path / "link.csv", _refused_rows, "rows") is False
    assert (tmp_path / "link.csv").is_symlink() and target.exists()
    assert remove_if(tmp_path / "missing.csv", _refused_rows, "rows") is False
    (tmp_path / "folder.csv").mkdir()
    assert remove_if(tmp_path / "folder.csv", lambda p: True, "rows") is False and (tmp_path / "folder.csv").is_dir()
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("error", [OSError, ValueError])
def test_remove_if_keeps_a_file_it_cannot_read(tmp_path, capsys, error):
    path = _write(tmp_path / "a.refused.csv", "row,id,reason\n")

    def unreadable(p):
        raise error("cannot read")

    assert remove_if(path, unreadable, "rows") is False and path.exists()
    assert "left as it is" in capsys.readouterr().out


# -- staging folders -----------------------------------------------------------------------------------------------


def test_make_staging_makes_a_staging_folder_that_discard_staging_removes(tmp_path):
    staging = make_staging("run1-checkpoint")
    try:
        assert os.path.dirname(staging) == os.path.abspath(tempfile.gettempdir()) and os.path.isdir(staging)
        assert os.path.basename(staging).startswith("ser-staging-run1-checkpoint-")
        _write(Path(staging) / "ckpt" / "weights.bin", b"w")
        discard_staging(staging)
        assert not os.path.lexists(staging)
        discard_staging(staging)  # already gone: fine
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def test_discard_staging_removes_a_staging_link_as_a_link(tmp_path):
    model = _write(tmp_path / "model" / "weights.bin", b"w").parent
    link = os.path.join(tempfile.gettempdir(), f"ser-staging-link-{uuid.uuid4().hex}")
    os.symlink(model, link)
    try:
        discard_staging(link)
        assert not os.path.lexists(link) and (model / "weights.bin").read_bytes() == b"w"
    finally:
        if os.path.lexists(link):
            os.unlink(link)


def test_discard_staging_refuses_a_folder_it_did_not_make(tmp_path):
    elsewhere = tmp_path / "ser-staging-x"  # the name, not in the temporary folder
    _write(elsewhere / "a.bin")
    other = tempfile.mkdtemp(prefix="not-staging-")  # in the temporary folder, another name
    try:
        for path in (elsewhere, other):
            with pytest.raises(ForeignFolderError) as err:
                discard_staging(path)
            assert str(err.value) == (f"refusing to delete {os.path.abspath(path)}: not a staging folder this platform "
                                      f"made ({tempfile.gettempdir()}/ser-staging-*)")
            assert os.path.isdir(path)
    finally:
        shutil.rmtree(other, ignore_errors=True)


# -- recognise_*: adoption by content -------------------------------------------------------------------------------


def test_recognise_run_takes_a_run_json_of_any_of_its_jobs_and_exactly_its_layout(tmp_path):
    run = _write(tmp_path / "run" / "run.json", json.dumps({"job": "jobs.anchor", "config": {}})).parent
    names = ["run.json", "config.yaml", "checkpoints", ".checkpoints.incoming"]
    recognise = recognise_run(("jobs.finetune", "jobs.anchor"), ["checkpoints"])
    assert recognise(str(run), names) == []
    assert recognise(str(run), ["run.json", "config.yaml"]) == []
    assert recognise(str(run), [*names, ".other.incoming"]) is None
    assert recognise(str(run), ["config.yaml"]) is None
    assert recognise_run("jobs.finetune", ["checkpoints"])(str(run), ["run.json"]) is None
    (run / "run.json").write_text(json.dumps({"job": "jobs.anchor", "config": ["a"]}))
    assert recognise(str(run), ["run.json"]) is None


def test_recognise_csv_takes_tables_with_their_columns_and_allowed_names(tmp_path):
    _write(tmp_path / "manifest.csv", "utt_id,path,label\nx,a.wav,happy\n")
    exact = recognise_csv({"manifest.csv": ["utt_id", "path", "label"]})
    assert exact(str(tmp_path), ["manifest.csv"]) == []
    assert recognise_csv({"manifest.csv": ["label"]})(str(tmp_path), ["manifest.csv"]) == []
    _write(tmp_path / "recordings.csv", "id,duration s,speaker\nr1,3.5,s1\n")
    spaced = recognise_csv({"recordings.csv": ["id", "duration s"]}, allowed=["audio"])
    assert spaced(str(tmp_path), ["audio", "recordings.csv"]) == []
    assert spaced(str(tmp_path), ["recordings.csv"]) == []


@pytest.mark.parametrize("names, text", [
    (["manifest.csv", "notes.txt"], "utt_id,path\n"),  # an entry outside the tables
    ([], "utt_id,path\n"),  # the table missing
    (["manifest.csv"], "utt_id,label\nx,a.wav\n"),  # a column missing
    (["manifest.csv"], "utt_id\npath\n"),  # a column only on a later line
    (["manifest.csv"], b"\xff\xfeutt_id,path\n"),  # not UTF-8
    (["manifest.csv"], None),  # a folder of that name
    (["manifest.csv"], "x" * 70_000 + ",utt_id,path\n"),  # a header is read from the first 64 KiB only
])
def test_recognise_csv_refuses_a_folder_that_does_not_read_as_its_tables(tmp_path, names, text):
    if text is None:
        (tmp_path / "manifest.csv").mkdir()
    else:
        _write(tmp_path / "manifest.csv", text)
    assert recognise_csv({"manifest.csv": ["utt_id", "path"]})(str(tmp_path), names) is None


LAYOUT = {"summary.json": "json", "runs.csv": "csv:run", "trial-a": "run:jobs.finetune", "trial-b": "run:jobs.finetune",
          "trial-c": "run:jobs.finetune", "plots": "dir", "report.md": "text", "extra.json": "json", "matrix.png": "png"}


def _outputs(folder: Path) -> Path:
    """A folder whose every entry reads as its kind in :data:`LAYOUT` (``extra.json`` left out)."""
    _write(folder / "summary.json", '{"trials": 3}')
    _write(folder / "runs.csv", "trial,mean acc,run\n1,0.5,r1\n")  # "run" last, after a column with a space
    _run_json(folder / "trial-a", "jobs.finetune")
    _write(folder / "trial-b" / MARKER_NAME, json.dumps({"kind": "run", "job": "jobs.finetune"}))
    _write(folder / "trial-c" / MARKER_NAME, json.dumps({"kind": "run"}))
    (folder / "plots").mkdir()
    _write(folder / "report.md", "# report\n")
    _write(folder / "matrix.png", b"\x89PNG\r\n\x1a\n" + bytes(16))
    return folder


def test_recognise_files_takes_a_folder_whose_entries_read_as_their_kinds(tmp_path):
    out = _outputs(tmp_path / "out")
    assert recognise_files(LAYOUT)(str(out), sorted(p.name for p in out.iterdir())) == []
    assert recognise_files({"runs.csv": "csv:trial"})(str(out), ["runs.csv"]) == []


def _mark(path: Path, marker: dict) -> None:
    _write(path / MARKER_NAME, json.dumps(marker))


def _run_json(path: Path, job: str) -> None:
    _write(path / "run.json", json.dumps({"job": job, "config": {}}))


@pytest.mark.parametrize("spoil", [
    pytest.param(lambda out: _write(out / "notes.txt"), id="name outside the layout"),
    pytest.param(lambda out: _write(out / "summary.json", "[1]"), id="json not an object"),
    pytest.param(lambda out: _write(out / "summary.json", "not json"), id="json unreadable"),
    pytest.param(lambda out: _write(out / "runs.csv", "trial,score\nrun,1\n"), id="csv without the column"),
    pytest.param(lambda out: _write(out / "runs.csv", "x" * 70_000 + ",run\n"), id="csv header past 64 KiB"),
    pytest.param(lambda out: _write(out / "runs.csv", b"\xfftrial,run\n"), id="csv not utf-8"),
    pytest.param(lambda out: _run_json(out / "trial-a", "jobs.anchor"), id="run.json of another job"),
    pytest.param(lambda out: _write(out / "trial-a" / "run.json", "{"), id="run.json unreadable"),
    pytest.param(lambda out: _mark(out / "trial-b", {"kind": "run", "job": "jobs.anchor"}), id="another job's run"),
    pytest.param(lambda out: _mark(out / "trial-b", {"kind": "pool"}), id="marked as another kind"),
    pytest.param(lambda out: (out / "trial-c" / MARKER_NAME).rename(out / "trial-c" / "kept.json"),
                 id="neither marked nor run.json"),
    pytest.param(lambda out: (out / "plots").rmdir() or _write(out / "plots"), id="file where a folder belongs"),
    pytest.param(lambda out: (out / "report.md").unlink() or (out / "report.md").mkdir(),
                 id="folder where a file belongs"),
    pytest.param(lambda out: _write(out / "report.md", b"\x00\xff\xfe binary"), id="text that is not utf-8"),
    pytest.param(lambda out: _write(out / "matrix.png", "a PNG in name only"), id="png without its signature"),
])
def test_recognise_files_refuses_an_entry_that_does_not_read_as_its_kind(tmp_path, spoil):
    out = _outputs(tmp_path / "out")
    spoil(out)
    assert recognise_files(LAYOUT)(str(out), sorted(p.name for p in out.iterdir())) is None


def test_recognise_files_refuses_an_empty_folder(tmp_path):
    assert recognise_files(LAYOUT)(str(tmp_path), []) is None


@pytest.mark.parametrize("names", [["report.md"], ["plots"], ["plots", "report.md"]])
def test_recognise_files_never_adopts_by_names_alone(tmp_path, names):
    """A folder whose entries are only of kinds read by name or shape (a text file, a sub-folder) is not adopted:
    a person's report.md and plots/ read as well as ours."""
    out = _outputs(tmp_path / "out")
    assert recognise_files(LAYOUT)(str(out), names) is None


def test_recognise_files_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown kinds"):
        recognise_files({"a": "file"})


# -- outputs apart from inputs (ser_models.ownership.overlap) -------------------------------------------------------------

def _message(key: str, output, relation: str, name: str, value) -> str:
    return (f"refusing to write {key}={output}: it {relation} the input {name}={value}, so the job would write into "
            f"what it reads. Point {key} at a new folder outside every input")


@pytest.mark.parametrize("output, relation", [("data/pool", "is"), ("data/pool/run", "lies inside"),
                                              ("data", "contains")])
def test_an_output_overlapping_an_input_is_refused_naming_both(tmp_path, output, relation):
    pool = tmp_path / "data" / "pool"
    pool.mkdir(parents=True)
    with pytest.raises(OutputOverlapError) as err:
        check_apart(tmp_path / output, {"pool_dir": str(pool)})
    assert str(err.value) == _message("output_dir", tmp_path / output, relation, "pool_dir", pool)
    with pytest.raises(OutputOverlapError) as err:
        check_apart(tmp_path / output, {"pool_dir": str(pool)}, key="run_dir")
    assert str(err.value) == _message("run_dir", tmp_path / output, relation, "pool_dir", pool)


def test_the_root_folder_overlaps_everything(tmp_path):
    with pytest.raises(OutputOverlapError, match=re.escape("it lies inside the input data_root=/,")):
        check_apart(tmp_path / "out", {"data_root": "/"})
    with pytest.raises(OutputOverlapError, match=re.escape(f"it contains the input pool_dir={tmp_path},")):
        check_apart("/", {"pool_dir": str(tmp_path)})


@pytest.mark.parametrize("output, other", [("runX/out", "run"), ("run/out", "runX"), ("run", "runX/in"),
                                           ("runX", "run/in"), ("run2", "run")])
def test_a_sibling_whose_name_starts_alike_is_apart(tmp_path, output, other):
    (tmp_path / other).mkdir(parents=True)
    check_apart(tmp_path / output, {"input": str(tmp_path / other)})


def test_every_path_of_a_list_input_counts(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    missing, a, b = (str(tmp_path / name) for name in ("missing", "a", "b"))
    for value in ([a, b], (a, b), [missing, "", b]):
        with pytest.raises(OutputOverlapError, match=re.escape(f"it lies inside the input models={b},")):
            check_apart(tmp_path / "b" / "out", {"models": value})


def test_a_missing_or_empty_local_input_is_skipped_and_the_next_one_still_checked(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    check_apart(tmp_path / "preset", {"encoder": str(tmp_path / "preset"), "labels": "", "model": None})
    check_apart(tmp_path / "cwd" / "out", {"labels": ""})  # "" is no input, not the working folder
    with pytest.raises(OutputOverlapError, match=re.escape(f"the input pool_dir={pool},")):
        check_apart(pool / "out", {"encoder": str(tmp_path / "missing"), "labels": "", "pool_dir": str(pool)})


def test_a_link_to_an_input_counts_as_the_input(tmp_path):
    (tmp_path / "pool").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "pool", target_is_directory=True)
    with pytest.raises(OutputOverlapError, match="it lies inside the input pool_dir="):
        check_apart(tmp_path / "alias" / "run", {"pool_dir": str(tmp_path / "pool")})


# -- object stores: compared by scheme and bucket/key ------------------------------------------------------------------


@pytest.mark.parametrize("output, relation", [("s3://bkt/pool", "is"), ("s3://bkt/pool/", "is"),
                                              ("s3://bkt/pool/run", "lies inside"), ("s3://bkt", "contains")])
def test_an_object_store_output_overlapping_an_input_is_refused(output, relation):
    with pytest.raises(OutputOverlapError) as err:
        check_apart(output, {"pool_dir": "s3://bkt/pool"})
    assert str(err.value) == _message("output_dir", output, relation, "pool_dir", "s3://bkt/pool")


@pytest.mark.parametrize("output, other", [("s3://bkt/poolX", "s3://bkt/pool"), ("s3://bkt/pool", "s3://bkt/poolX"),
                                           ("s3://bkt/a/run", "s3://bkt/b/run"), ("s3://other/pool", "s3://bkt/pool"),
                                           ("gs://bkt/pool/run", "s3://bkt/pool"),
                                           ("s3://bkt/pool%20", "s3://bkt/pool")])  # the key "pool " (a space)
def test_object_store_paths_in_other_places_or_stores_are_apart(output, other):
    check_apart(output, {"pool_dir": other})


def test_an_object_store_key_holding_a_scheme_separator_still_lies_inside_its_input():
    with pytest.raises(OutputOverlapError, match="it lies inside the input pool_dir=s3://bkt/pool,"):
        check_apart("s3://bkt/pool/a://b", {"pool_dir": "s3://bkt/pool"})


def test_a_local_folder_spelled_like_a_uri_is_not_that_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s3:" / "bkt" / "pool").mkdir(parents=True)  # a local folder: ./s3:/bkt/pool
    check_apart("s3://bkt/pool", {"pool_dir": "s3:/bkt/pool"})
    check_apart("s3:/bkt/pool/run", {"pool_dir": "s3://bkt/pool"})


def test_a_persons_hidden_tmp_file_in_a_marked_folder_survives_the_owners_sweep(tmp_path):
    """Only names with the platform's prefix are litter: ``.report.draft_v2.tmp`` (a shape the platform's temporary
    files once had) is a person's file, kept when the owner sweeps its litter, while ``.ser-tmp-...`` goes."""
    out = tmp_path / "run"
    claim(out, "run")
    _write(out / ".report.draft_v2.tmp", "a person's draft")
    _write(out / f"{TEMP_PREFIX}summary.json.a1b2c3d4.tmp", "{")
    with open_output(out, "run"):
        pass
    assert sorted(p.name for p in out.iterdir()) == [".report.draft_v2.tmp", MARKER_NAME]
    assert (out / ".report.draft_v2.tmp").read_text() == "a person's draft"
    assert entries(out) == [".report.draft_v2.tmp"]


# -- nested ownership: another output inside a folder being cleared -----------------------------------------------
def _store_write(path: str, text: str = "x") -> None:
    from ser_models import io

    io.write_bytes_atomic(path, text.encode())


def test_clear_keeps_another_output_inside_the_folder_and_says_so(store):
    """A pool (its own marker) inside a benchmark's work folder is another job's output: kept, with a line."""
    from ser_models import io

    work = f"{store}/work"
    claim(work, "bench")
    _store_write(f"{work}/pool/{MARKER_NAME}", '{"kind": "pool"}')
    _store_write(f"{work}/pool/data/part-0.parquet", "clips")
    _store_write(f"{work}/deep/a/{MARKER_NAME}", '{"kind": "run"}')  # a marker further down counts too
    _store_write(f"{work}/deep/b.txt")
    _store_write(f"{work}/tmp/scores.parquet")
    lines = []
    assert clear(work, "bench", log=lines.append) == ["tmp"]
    assert io.read_bytes(f"{work}/pool/data/part-0.parquet") == b"clips" and io.exists(f"{work}/deep/b.txt")
    assert not io.exists(f"{work}/tmp")
    assert lines == [f"{work}: keeping deep: {work}/deep/a is another output (it carries {MARKER_NAME}), and clearing "
                     "the folder never deletes through one",
                     f"{work}: keeping pool: {work}/pool is another output (it carries {MARKER_NAME}), and clearing "
                     "the folder never deletes through one"]
    with pytest.raises(ForeignFolderError, match=f"refusing to delete {work}/pool: {work}/pool is another output"):
        remove(work, "bench", "pool", recorded_only=False)
    assert io.read_bytes(f"{work}/pool/data/part-0.parquet") == b"clips"


def test_a_child_the_marker_records_is_the_folders_own_even_with_a_marker_of_its_own(store):
    """bench.common.scratch records a job's output before the job claims it: clearing (or removing) it again is
    the owner's right."""
    from ser_models import io

    work = f"{store}/work"
    claim(work, "bench")
    with FolderLock(work, "bench"):
        record(work, "bench", ["run"])
    _store_write(f"{work}/run/{MARKER_NAME}", '{"kind": "run"}')
    _store_write(f"{work}/run/metrics.json")
    assert clear(work, "bench") == ["run"] and not io.exists(f"{work}/run")
    _store_write(f"{work}/run/{MARKER_NAME}", '{"kind": "run"}')
    assert remove(work, "bench", "run", recorded_only=True) and not io.exists(f"{work}/run")


def _in_a_mount_namespace(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``script`` as root of a new user + mount namespace (it may mount), or skip where the kernel refuses."""
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "d=$(mktemp -d) && mount -t tmpfs none $d && umount $d && rmdir $d"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no user + mount namespace here: {probe.stderr.strip()[-200:]}")
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-c", script, *args],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


# Mounts a tmpfs holding a file at <work>/data/disk, then clears and removes; prints what happened.
_MOUNTED = """
import json, os, subprocess, sys
from ser_models.exceptions import ForeignFolderError
from ser_models.ownership import claim, clear, remove
work = sys.argv[1]
claim(work, "bench")
disk = os.path.join(work, "data", "disk")
os.makedirs(disk)
subprocess.run(["mount", "-t", "tmpfs", "none", disk], check=True)
open(os.path.join(disk, "theirs.wav"), "w").write("audio")
open(os.path.join(work, "scores.parquet"), "w").write("x")
lines = []
gone = clear(work, "bench", log=lines.append)
try:
    remove(work, "bench", "data", recorded_only=False)
    refused = ""
except ForeignFolderError as exc:
    refused = str(exc)
print(json.dumps({"gone": gone, "lines": lines, "refused": refused,
                  "kept": open(os.path.join(disk, "theirs.wav")).read()}))
"""


def test_a_mount_point_inside_a_folder_is_never_deleted_through(tmp_path):
    work = tmp_path / "work"
    done = _in_a_mount_namespace(_MOUNTED, str(work))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["gone"] == ["scores.parquet"] and result["kept"] == "audio"
    assert result["lines"] == [f"{work}: keeping data: {work}/data/disk is a mount point, and clearing the folder "
                               "never deletes through one"]
    assert result["refused"].startswith(f"refusing to delete {work}/data: {work}/data/disk is a mount point")


def test_a_temporary_folder_a_kill_left_is_litter_and_the_owner_removes_it(tmp_path):
    out = tmp_path / "trial"
    claim(out, "run")
    _write(out / f"{TEMP_PREFIX}pbt-t1-abc" / "fit_state.pt", "state")
    (out / ".pbt-t1-abc").mkdir()  # not the platform's prefix: someone's
    assert entries(out) == [".pbt-t1-abc"]
    claim(out, "run")
    assert sorted(p.name for p in out.iterdir()) == [".pbt-t1-abc", MARKER_NAME]


def test_clear_removes_a_link_to_another_output_as_a_link(tmp_path):
    """A link is never gone through: neither to delete what it points at, nor to keep it because of a marker there."""
    pool = tmp_path / "pool"
    pool.mkdir()
    _write(pool / MARKER_NAME, '{"kind": "pool"}')
    work = tmp_path / "work"
    claim(work, "bench")
    (work / "pool").symlink_to(pool)
    assert clear(work, "bench") == ["pool"]
    assert not os.path.lexists(work / "pool") and (pool / MARKER_NAME).exists()

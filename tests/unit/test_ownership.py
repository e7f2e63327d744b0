"""Delete only what we made: a folder the platform did not mark is refused and left as it was; deletions stay
inside marked folders, on recorded children or the kind's own layout names."""

from __future__ import annotations

import json

import pytest

from ser_models.data import PoolConfig, prepare_pool
from ser_models.data.pool_builds import legacy_pool
from ser_models.exceptions import ForeignFolderError
from ser_models.locks import LOCK_NAME
from ser_models.ownership import (
    MARKER_NAME,
    claim,
    clear,
    open_output,
    read_marker,
    recognise_run,
    record,
    remove,
)


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


def _legacy_pool_layout(root, extra=()):
    """What prepare_pool wrote before markers: summary.json naming its build and files.json, one crash leftover."""
    build, dead = "build-20240101T000000-0123abcd", "build-20240102T000000-89abcdef"
    (root / build / "data" / "split=train").mkdir(parents=True)
    (root / build / "files.json").write_text(json.dumps({"files": {"train": [f"{build}/data/split=train/0.parquet"]}}))
    (root / dead).mkdir()
    (root / "summary.json").write_text(json.dumps({"fingerprint": "f" * 32, "build": build,
                                                   "files": f"{build}/files.json", "format_version": 4}))
    for name in extra:
        (root / name).mkdir()
    return build, dead


def test_a_legacy_pool_is_recognised_by_its_summary_and_builds_and_nothing_else(tmp_path):
    build, dead = _legacy_pool_layout(tmp_path / "pool")
    assert sorted(legacy_pool(str(tmp_path / "pool"), sorted(p.name for p in (tmp_path / "pool").iterdir()))) == \
        sorted([build, dead])
    _legacy_pool_layout(tmp_path / "mixed", extra=("build-old",))
    assert legacy_pool(str(tmp_path / "mixed"), sorted(p.name for p in (tmp_path / "mixed").iterdir())) is None
    assert legacy_pool(str(tmp_path), ["data", "build-old"]) is None  # no summary.json


def test_open_output_marks_and_locks_the_folder_until_the_job_leaves(tmp_path):
    with open_output(tmp_path / "seg", "segments") as lock:
        assert lock.held and (tmp_path / "seg" / LOCK_NAME).exists()
    assert not (tmp_path / "seg" / LOCK_NAME).exists() and read_marker(tmp_path / "seg")["kind"] == "segments"


def test_a_marker_write_killed_midway_never_blocks_the_folder(tmp_path):
    """A kill while writing the first marker left ``.ser-output.json.<random>.tmp``; every later start was refused."""
    out = tmp_path / "run"
    out.mkdir()
    litter = out / f".{MARKER_NAME}.k2j3h4.tmp"
    litter.write_text('{"kind": "ru')
    with open_output(out, "run"):
        pass
    assert read_marker(out)["kind"] == "run" and not litter.exists()


def test_litter_of_another_write_is_ignored_by_a_claim_and_removed_by_the_owner(tmp_path):
    out = tmp_path / "pool"
    claim(out, "pool")
    (out / ".summary.json.a1b2c3.tmp").write_text("{")
    with open_output(out, "pool"):
        pass
    assert sorted(p.name for p in out.iterdir()) == [MARKER_NAME]


def test_a_segment_output_is_adopted_by_content_not_by_names(tmp_path):
    from ser_models.segment.run import _legacy_segments

    seg = tmp_path / "seg"
    seg.mkdir()
    (seg / "summary.json").write_text('{"mine": 1}')
    (seg / "config.yaml").write_text("a: 1\n")
    assert _legacy_segments(str(seg), ["config.yaml", "summary.json"]) is None
    (seg / "summary.json").write_text("not json")
    assert _legacy_segments(str(seg), ["config.yaml", "summary.json"]) is None
    (seg / "summary.json").write_text(json.dumps({k: 0 for k in (
        "recordings", "segmented", "quarantined", "reasons", "segments", "rejected_segments", "audio_hours",
        "segment_hours", "vad_recordings", "vad_seconds", "seconds", "output_dir")}))
    assert _legacy_segments(str(seg), ["config.yaml", "summary.json"]) == []
    (seg / "segments.parquet").write_text("not parquet")
    assert _legacy_segments(str(seg), ["config.yaml", "segments.parquet", "summary.json"]) is None


def test_a_pool_summary_naming_builds_that_are_not_there_is_not_adopted(tmp_path):
    build, dead = _legacy_pool_layout(tmp_path / "pool")
    (tmp_path / "pool" / build).rename(tmp_path / "elsewhere")
    names = sorted(p.name for p in (tmp_path / "pool").iterdir())
    assert legacy_pool(str(tmp_path / "pool"), names) is None


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

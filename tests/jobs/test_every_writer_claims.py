"""Every writer claims its output before its first byte, through one path (:mod:`ser_models.ownership`).

Each job in ``jobs/`` is run against outputs it must refuse: a person's non-empty folder, another kind's output
(a pool, another job's run folder, a segment output), a link to a person's folder, and an output that is one of
the job's inputs, lies inside one, or contains one. Each is refused with the folder and the way out, and the
whole tree (names, sizes, hashes) is unchanged. A new job fails :func:`test_every_job_is_enumerated` until it is
listed here.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path

import pytest

from ser_models.exceptions import ForeignFolderError, OutputOverlapError
from ser_models.ownership import MARKER_NAME

REPO = Path(__file__).resolve().parents[2]


def _folder_input(root: Path) -> Path:
    """An input folder (a pool, a checkpoint, a run) with a file in it."""
    root.mkdir(parents=True)
    (root / "summary.json").write_text('{"fingerprint": "x"}')
    return root


def _file_input(root: Path, name: str = "manifest.csv", text: str = "utt_id,path,label\na,a.wav,happy\n") -> Path:
    root.mkdir(parents=True)
    (root / name).write_text(text)
    return root / name


def _checkpoint_input(root: Path) -> Path:
    """A checkpoint folder (its model.json) beside a pool folder."""
    _folder_input(root.parent / "pool")
    root.mkdir(parents=True)
    (root / "model.json").write_text("{}")
    return root


#: The random tiny encoder, named: these cases are about claims, and the default encoder (smart-turn) would be
#: imported before the job reaches its claim.
TINY = "model.encoder.source=tiny-wav2vec2"
#: job -> (how its input is made, argv for (output, input)). The input is what the overlap cases point into.
JOBS = {
    "after": (_folder_input, lambda o, i: [f"pool_dir={i}", f"output_dir={o}", TINY]),
    "evidence": (_folder_input, lambda o, i: [f"pool_dir={i}", f"output_dir={o}", TINY]),
    "finetune": (_folder_input, lambda o, i: [f"pool_dir={i}", f"output_dir={o}", TINY]),
    "anchor": (_folder_input, lambda o, i: [f"pool_dir={i}", f"output_dir={o}", "source=en", "target=de", TINY]),
    "adapter_pretrain": (_folder_input, lambda o, i: [f"pool_dir={i}", f"output_dir={o}", TINY]),
    "tapt": (_folder_input, lambda o, i: [f"pool_dir={i}", f"output_dir={o}", "encoder.source=tiny-wav2vec2"]),
    "distill": (_folder_input, lambda o, i: [f"pool_dir={i}", f"output_dir={o}", "teacher.source=tiny-wav2vec2"]),
    "layer_analysis": (_folder_input, lambda o, i: [f"pool_dir={i}", f"output_dir={o}", TINY]),
    "predict": (_folder_input, lambda o, i: [f"checkpoint={i}", f"output_dir={o}", f"pool_dir={i}"]),
    "sweep": (_folder_input, lambda o, i: [str(REPO / "jobs/configs/sweep_smoke.yaml"), f"output_dir={o}",
                                           f"config.pool_dir={i}"]),
    "adapt": (_folder_input, lambda o, i: [f"source_pool_dir={i}", f"target_pool_dir={i}2", f"output_dir={o}", TINY]),
    "prepare_pool": (_file_input, lambda o, i: [f"manifest={i}", f"output_dir={o}"]),
    "segment": (lambda r: _file_input(r, "recordings.csv", "recording,path\nr,a.wav\n"),
                lambda o, i: [f"recordings={i}", f"output_dir={o}"]),
    "convert": (_file_input, lambda o, i: [f"input={i}", f"output={o}"]),
    "convert:export": (_folder_input, lambda o, i: [f"input={i}", f"output={o}", "to=lhotse"]),
    "export": (_folder_input, lambda o, i: [f"checkpoint={i}", f"output={o}"]),
    "plan": (_folder_input, lambda o, i: ["budget=100", f"pool_dir={i}", f"output_dir={o}"]),
    "evaluate": (_checkpoint_input, lambda o, i: [str(i), str(i.parent / "pool"), "--output-dir", str(o)]),
    "compare": (_folder_input, lambda o, i: [str(i), "--out", str(o)]),
    "import_encoder": (lambda r: _file_input(r, "pipecat.whl", "not a wheel"),
                       lambda o, i: ["smart-turn", str(o), "--source", str(i)]),
    "make_demo_pool": (None, lambda o, i: [str(o), "--n", "12"]),
    "make_demo_archive": (None, lambda o, i: [str(o)]),
}
#: The different kinds of output a job may be pointed at by mistake.
FOREIGN = ("person", "pool", "run", "segments", "link")
OVERLAP = ("is_input", "inside_input", "contains_input")


def _tree(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (links not followed): kind, size and content hash."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir",)
        else:
            data = path.read_bytes()
            out[rel] = ("file", len(data), hashlib.sha256(data).hexdigest())
    return out


def _foreign(root: Path, kind: str) -> Path:
    """A folder the job must not write into."""
    person = root / "person"
    if not person.exists():
        (person / "curated").mkdir(parents=True)
        (person / "notes.md").write_text("three weeks of listening")
        (person / "labels.csv").write_text("utt_id,label\na,happy\n")
        (person / "config.yaml").write_text("mine: true\n")
        (person / "curated" / "keep.txt").write_text("keep")
    if kind == "person":
        return person
    if kind == "link":
        link = root / "link"
        link.symlink_to(person, target_is_directory=True)
        return link
    folder = root / kind
    folder.mkdir()
    marker = {"kind": kind, "children": []}
    if kind == "run":
        marker["job"] = "jobs.someone_else"
        (folder / "run.json").write_text(json.dumps({"format": 1, "job": "jobs.someone_else", "config": {}}))
    (folder / "summary.json").write_text('{"theirs": 1}')
    (folder / MARKER_NAME).write_text(json.dumps(marker))
    return folder


def _own_kind(job: str) -> set[str]:
    """The foreign cases that are this job's own kind of output (and so not foreign to it)."""
    return {"prepare_pool": {"pool"}, "segment": {"segments"}}.get(job, set())


def _run(job: str, argv: list[str]):
    module = importlib.import_module(f"jobs.{job.split(':')[0]}")
    return module.main(argv)


CASES = [(job, case) for job in JOBS for case in FOREIGN + (OVERLAP if JOBS[job][0] else ())
         if case not in _own_kind(job)]


@pytest.mark.parametrize(("job", "case"), CASES, ids=[f"{j}-{c}" for j, c in CASES])
def test_a_job_refuses_an_output_that_is_not_its_own_and_changes_nothing(tmp_path, job, case, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_input, argv = JOBS[job]
    given = make_input(tmp_path / "inputs" / "in") if make_input else tmp_path / "inputs" / "none"
    if case == "is_input":
        out = given
    elif case == "inside_input":
        out = given / "out"
    elif case == "contains_input":
        out = given.parent
    else:
        out = _foreign(tmp_path / "outputs", case)
    import ray

    before, ray_before = _tree(tmp_path), ray.is_initialized()
    if job == "import_encoder":  # a console tool: it prints the error and exits 2
        with pytest.raises(SystemExit, match="2"):
            _run(job, argv(out, given))
        message = capsys.readouterr().err
        assert message.startswith("error: refusing to write")
    else:
        with pytest.raises(ForeignFolderError) as err:
            _run(job, argv(out, given))
        message = str(err.value)
    if case in OVERLAP:
        assert "new folder outside every input" in message
        assert job == "import_encoder" or isinstance(err.value, OutputOverlapError)
    else:
        assert str(out) in message or os.path.realpath(out) in message
    assert _tree(tmp_path) == before
    assert ray_before or not ray.is_initialized()  # refused before Ray starts


def test_every_job_is_enumerated():
    """A job added to jobs/ must be listed in JOBS (and so claim its output) before this passes."""
    jobs = {p.stem for p in (REPO / "jobs").glob("*.py") if p.stem != "__init__"}
    assert jobs == {j.split(":")[0] for j in JOBS}


def test_every_bench_script_that_writes_claims_its_folder():
    """Every benchmark with a work folder claims it (bench.common.claim_workdir / scratch), and writes its results
    file through bench.common.write_results (which refuses a folder at that path)."""
    import re

    missing = []
    for path in sorted((REPO / "bench").glob("*.py")):
        text = path.read_text()
        if re.search(r"add_argument\(\"--(workdir|work|demo-dir)\"", text) and not re.search(
                r"claim_workdir\(|fresh_workdir\(|scratch\(", text):
            missing.append(path.name)
    assert missing == []


@pytest.mark.parametrize("case", FOREIGN)
def test_a_benchmark_refuses_a_work_folder_it_did_not_make(tmp_path, case):
    from bench.common import claim_workdir, fresh_workdir, scratch

    out = _foreign(tmp_path / "outputs", case)
    before = _tree(tmp_path)
    for claim, folder in ((claim_workdir, out), (fresh_workdir, out), (scratch, out / "pool")):
        with pytest.raises(ForeignFolderError):
            claim(folder)
    assert _tree(tmp_path) == before


def test_a_benchmarks_scratch_output_is_made_way_for_and_a_job_then_claims_it(tmp_path):
    """scratch() leaves the path free for the job the benchmark runs next, which claims it as its own."""
    from bench.common import scratch
    from ser_models.ownership import claim_output, read_marker

    work = tmp_path / "work"
    for _ in range(2):  # the second run removes what the first left
        out = scratch(work / "run")
        assert not out.exists() and read_marker(work)["kind"] == "bench"
        with claim_output(out, "run", job="jobs.finetune"):
            (out / "metrics.json").write_text("{}")
    (work / "notes.md").write_text("mine")
    scratch(work / "run")
    assert sorted(p.name for p in work.iterdir() if p.name[0] != ".") == ["notes.md"]


def _marked_pool(folder: Path) -> None:
    """A pool folder some job made: its marker and a summary."""
    folder.mkdir(parents=True)
    (folder / ".ser-output.json").write_text('{"kind": "pool"}')
    (folder / "summary.json").write_text('{"build": "build-x"}')


def test_a_benchmark_whose_work_folder_holds_its_pool_is_refused_and_the_pool_stays(tmp_path):
    """``bench.predict --workdir W --pool-dir W/pool`` once emptied W, the pool with it, before reading it: the
    benchmark makes the jobs' input/output check, and nothing is deleted."""
    from bench import predict
    from ser_models.exceptions import OutputOverlapError

    work = tmp_path / "w"
    work.mkdir()
    (work / ".ser-output.json").write_text('{"kind": "bench"}')  # an earlier benchmark run's work folder
    _marked_pool(work / "pool")
    before = _tree(tmp_path)
    with pytest.raises(OutputOverlapError, match=r"--workdir=.* contains the input --pool-dir="):
        predict.main(["--workdir", str(work), "--pool-dir", str(work / "pool"), "--results", str(tmp_path / "r.md")])
    assert _tree(tmp_path) == before


def test_a_fresh_work_folder_keeps_another_output_inside_it_and_empties_the_rest(tmp_path, capsys):
    from bench.common import fresh_workdir, scratch

    work = tmp_path / "w"
    scratch(work / "run")  # recorded as the benchmark's own: emptied on the next run, marker or not
    (work / "run").mkdir()
    (work / "run" / ".ser-output.json").write_text('{"kind": "run", "job": "jobs.finetune"}')
    _marked_pool(work / "pool")
    (work / "old.parquet").write_text("x")
    fresh_workdir(work)
    assert sorted(p.name for p in work.iterdir() if p.name[0] != ".") == ["pool"]
    assert (work / "pool" / "summary.json").read_text() == '{"build": "build-x"}'
    assert f"keeping pool: {work / 'pool'} is another output (it carries .ser-output.json)" in capsys.readouterr().out

"""``python -m jobs.prepare_pool manifest=<a Lhotse cuts file>`` builds the pool in one step: the cuts are imported
into the pool folder as jobs.convert imports them (refused rows printed and listed there), the pool is built from
the import, and a rerun is up to date. A file of no format the jobs read is refused, naming the formats and
jobs.convert, before Ray starts or anything is written."""

from __future__ import annotations

import json
import os
import re
import runpy
import sys

import pandas as pd
import pytest

from ser_models.data import Pool, generate_corpus

CONFIG = "jobs/configs/prepare_pool_smoke.yaml"


def run_job(monkeypatch, job: str, *args: str):
    monkeypatch.setattr(sys, "argv", [job, *args])
    return runpy.run_module(job, run_name="__main__")


@pytest.mark.ray
def test_lhotse_cuts_become_a_pool_in_one_step_with_refused_rows_reported(ray_local, tmp_path, monkeypatch, capsys):
    lhotse = pytest.importorskip("lhotse")
    corpus = generate_corpus(tmp_path / "corpus", n=12, seed=3)
    files = {u: str(tmp_path / "corpus" / p) for u, p in zip(corpus["utt_id"], corpus["path"])}
    recs = lhotse.RecordingSet.from_recordings([lhotse.Recording.from_file(files[u], recording_id=u) for u in files])
    sups = lhotse.SupervisionSet.from_segments([
        lhotse.SupervisionSegment(f"{r.utt_id}-s", r.utt_id, 0.0, recs[r.utt_id].duration, channel=0,
                                  speaker=r.speaker, custom={"emotion": r.label, "split": r.split})
        for r in corpus.itertuples()])
    cuts = lhotse.CutSet.from_manifests(recordings=recs, supervisions=sups)
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    cut_of = {c.recording_id: c.id for c in cuts}  # one cut per recording: the pool's clip ids
    os.remove(files[corpus["utt_id"].iloc[0]])  # its cut is refused (missing_file), the others make the pool
    gone = cut_of[corpus["utt_id"].iloc[0]]
    manifest, out = tmp_path / "cuts.jsonl.gz", tmp_path / "pool"

    run_job(monkeypatch, "jobs.prepare_pool", CONFIG, f"manifest={manifest}", f"output_dir={out}")
    printed = capsys.readouterr().out
    imported = out / "imported" / "manifest.parquet"
    assert f"manifest={manifest}: a Lhotse manifest; importing it as jobs.convert does, into {imported}" in printed
    assert "took 11 of 12 rows; refused 1 (missing_file 1)" in printed, printed
    assert re.search(rf"refused row \d+ '{gone}': missing_file: no such file", printed), printed
    refused = pd.read_csv(out / "imported" / "manifest.refused.csv")
    assert refused[["id", "reason"]].values.tolist() == [[gone, "missing_file"]]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["manifest"] == str(manifest)  # the run records what it was given
    assert summary["clips_in"] == 11 and summary["kept"] == 11
    rows = Pool.open(out).metadata(columns=["utt_id", "label", "split"]).set_index("utt_id")
    want = corpus.assign(utt_id=corpus["utt_id"].map(cut_of)).set_index("utt_id").drop(index=gone)
    assert sorted(rows.index) == sorted(want.index)  # one clip per cut, named by the cut
    assert rows["label"].to_dict() == want["label"].to_dict() and rows["split"].to_dict() == want["split"].to_dict()

    mtime = (out / "summary.json").stat().st_mtime_ns
    run_job(monkeypatch, "jobs.prepare_pool", CONFIG, f"manifest={manifest}", f"output_dir={out}")
    assert f"pool up to date: {out}" in capsys.readouterr().out  # imported again, to the same manifest
    assert (out / "summary.json").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("job, key", [("jobs.prepare_pool", "manifest"), ("jobs.segment", "recordings")])
def test_an_unknown_format_is_refused_naming_the_formats_and_jobs_convert(job, key, tmp_path, monkeypatch, capsys):
    import ray

    def no_ray(*args, **kwargs):
        raise AssertionError("ray.init was called before the manifest was checked")

    monkeypatch.setattr(ray, "init", no_ray)
    (tmp_path / "clips.xlsx").write_bytes(b"PK\x03\x04")
    with pytest.raises(SystemExit) as exit_info:
        run_job(monkeypatch, job, f"{key}={tmp_path / 'clips.xlsx'}", f"output_dir={tmp_path / 'out'}")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(rf"^error: ManifestError: {key}=\S+clips\.xlsx: unknown manifest extension '\.xlsx'\. ", err,
                     re.M), err
    assert "Lhotse" in err and "NeMo" in err and "Hugging Face" in err and "python -m jobs.convert" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()

"""Smoke run of ``python -m jobs.prepare_pool`` on its smoke config over a 12-clip generated corpus."""

from __future__ import annotations

import json
import re
import runpy
import sys

import pytest

from ser_models.data import Pool, generate_corpus

pytestmark = pytest.mark.ray

CONFIG = "jobs/configs/prepare_pool_smoke.yaml"


def run_job(monkeypatch, *args: str):
    monkeypatch.setattr(sys, "argv", ["jobs.prepare_pool", *args])
    return runpy.run_module("jobs.prepare_pool", run_name="__main__")


def test_prepare_pool_smoke_config_end_to_end_then_up_to_date(ray_local, tmp_path, monkeypatch, capsys):
    corpus = generate_corpus(tmp_path / "corpus", n=12, seed=3)
    manifest, out = tmp_path / "corpus" / "manifest.csv", tmp_path / "pool"
    run_job(monkeypatch, CONFIG, f"manifest={manifest}", f"output_dir={out}")
    captured = capsys.readouterr()
    printed = captured.out
    # One progress line for the decode stage, and no Ray Data bar (tqdm frames go to stderr)
    assert "  decode and write: 12/12 clips (100%)" in printed, printed
    assert not re.search(r"\d+%\|[^|]*\|", captured.out + captured.err) and "Parquet dataset sampling" not in captured.err

    summary = json.loads((out / "summary.json").read_text())
    assert summary["clips_in"] == 12 and summary["kept"] + summary["quarantined"] == 12
    assert summary["config"]["audio_format"] == "flac"  # from the smoke YAML, not the schema default
    assert summary["config"]["manifest"] == str(manifest)
    expected = corpus["split"].value_counts().to_dict()
    assert {s: int(v["clips"]) for s, v in summary["splits"].items()} == expected
    build = out / summary["build"]
    assert (build / "config.yaml").is_file() and (build / "quarantine.parquet").is_file()
    assert sorted(p.name for p in (build / "data").iterdir()) == [f"split={s}" for s in sorted(expected)]
    rows = Pool.open(out).metadata(columns=["utt_id", "audio_format", "label"])
    assert sorted(rows["utt_id"]) == sorted(corpus["utt_id"]) and set(rows["audio_format"]) == {"flac"}
    assert dict(zip(rows["utt_id"], rows["label"])) == dict(zip(corpus["utt_id"], corpus["label"]))

    # The library's table, then the job's one-line summary.
    assert re.search(r"clips in\s+12\n\s+kept\s+12\n\s+quarantined\s+0\n", printed), printed
    assert f"pool: {out}  kept 12 / 12 clips, quarantined 0" in printed

    mtime = (out / "summary.json").stat().st_mtime_ns
    run_job(monkeypatch, CONFIG, f"manifest={manifest}", f"output_dir={out}")
    assert f"pool up to date: {out}" in capsys.readouterr().out
    assert (out / "summary.json").stat().st_mtime_ns == mtime


def test_missing_manifest_names_the_file(tmp_path, monkeypatch, capsys):
    import ray

    def no_ray(*args, **kwargs):
        raise AssertionError("ray.init was called before the manifest was checked")

    monkeypatch.setattr(ray, "init", no_ray)
    missing = tmp_path / "nope" / "manifest.csv"
    with pytest.raises(SystemExit) as exit_info:
        run_job(monkeypatch, CONFIG, f"manifest={missing}", f"output_dir={tmp_path / 'pool'}")
    # One line naming the file, exit code 2, no traceback.
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(r"^error: PoolError: manifest file not found: " + re.escape(str(missing)) + "$", err, re.M), err
    assert "Traceback" not in err
    assert not (tmp_path / "pool").exists()


"""A refused start leaves no trace: no job records a run (marker, ``run.json``, ``config.yaml``, lock) before its
checks pass, so the fix a refusal names is a new start, never a resume mismatch.

Every job of the ``ser-models`` catalog is run in process with a config error (an input that does not exist, a
value out of range) into a new folder, which must not exist afterwards; none of them starts Ray. ``jobs.after``'s
budget refusal, which once claimed the folder after minutes of TAPT, is then followed by the fix its own message
names.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from ser_models.catalog.jobs import JOBS
from ser_models.exceptions import ConfigError, ResumeMismatchError, SERError

REPO = Path(__file__).resolve().parents[2]
TINY = "model.encoder.source=tiny-wav2vec2"


def _config_error(job: str, out: Path, missing: Path) -> list[str]:
    """argv of ``job`` with one error the job finds before its first write (``missing``: a path not there)."""
    pool, o = f"pool_dir={missing}", f"output_dir={out}"
    return {
        "prepare-pool": [f"manifest={missing}/manifest.csv", o],
        "segment": [f"recordings={missing}/recordings.csv", o],
        "convert": [f"input={missing}/manifest.csv", f"output={out}"],
        "import-encoder": ["smart-turn", str(out), "--source", str(missing / "pipecat.whl")],
        "make-demo-pool": [str(out), "--n", "3"],
        "make-demo-archive": [str(out), "--class-prior", "1,2"],
        "plan": ["budget=100", pool, o],
        "after": [pool, o, TINY],
        "evidence": [pool, o, TINY],
        "compare": [str(missing), "--out", str(out / "curves.png")],
        "finetune": [pool, o, TINY],
        "tapt": [pool, o, "encoder.source=tiny-wav2vec2"],
        "adapter-pretrain": [pool, o, TINY],
        "adapt": [f"source_pool_dir={missing}", f"target_pool_dir={missing}2", o, TINY],
        "anchor": [pool, o, "source=en", "target=de", TINY],
        "distill": [pool, o, "teacher.source=tiny-wav2vec2"],
        "layer-analysis": [pool, o, TINY, "model.adapter.kind=frozen"],
        "sweep": [str(REPO / "jobs/configs/sweep_smoke.yaml"), f"config.pool_dir={missing}", o],
        "evaluate": [str(missing), str(missing), "--output-dir", str(out)],
        "export": [f"checkpoint={missing}", f"output={out}/model.onnx"],
        "predict": [f"checkpoint={missing}", pool, o],
    }[job]


def test_every_catalog_job_has_a_config_error_case(tmp_path):
    for job in JOBS:
        assert _config_error(job, tmp_path / "out", tmp_path / "missing")


@pytest.mark.parametrize("job", list(JOBS))
def test_a_job_refused_for_a_config_error_leaves_no_folder(tmp_path, job, monkeypatch):
    import ray

    monkeypatch.chdir(REPO)
    out = tmp_path / "new" / "run"
    ray_before = ray.is_initialized()
    module = importlib.import_module(JOBS[job].module)
    with pytest.raises((SERError, SystemExit)) as refused:
        module.main(_config_error(job, out, tmp_path / "missing"))
    assert not isinstance(refused.value, SystemExit) or refused.value.code == 2
    assert not out.exists(), f"{job} left {sorted(p.name for p in out.rglob('*'))} behind"
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").iterdir())
    assert ray_before or not ray.is_initialized()  # refused before Ray starts


@pytest.mark.parametrize("source", ["pool", "loop"])
def test_a_refused_after_budget_leaves_no_run_and_its_fix_then_starts(demo_pool, tmp_path, monkeypatch, source):
    """The budget refusal's own fix ("lower active.budget_labels") is a new start: no run.json was written, so
    it is not refused as a resume mismatch. Both ways of getting evaluation sets (the pool's splits, sets drawn
    by the run) are checked before the folder is claimed and before TAPT."""
    from ser_models.runs.after import main

    monkeypatch.chdir(REPO)
    out = tmp_path / "run"
    common = ["jobs/configs/after_smoke.yaml", f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}",
              f"active.evaluation.source={source}", "active.oracle=file", "tapt_enabled=false"]
    with pytest.raises(ConfigError, match="lower active.budget_labels") as refused:
        main([*common, "active.budget_labels=[4,1000]"])
    assert not isinstance(refused.value, ResumeMismatchError)
    assert not out.exists()
    # The fix the message names: the run starts (and waits for its first labels in to_label.csv).
    assert main([*common, "active.budget_labels=[4,8]"]) is None
    assert (out / "run.json").exists()


def test_a_refused_evidence_budget_leaves_no_folder(demo_pool, tmp_path, monkeypatch):
    from ser_models.runs.evidence import main

    monkeypatch.chdir(REPO)
    out = tmp_path / "evidence"
    with pytest.raises(ConfigError, match="lower active.budget_labels"):
        main(["jobs/configs/demo_evidence.yaml", f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}", TINY,
              "active.budget_fractions=[]", "active.budget_labels=[8,1000]"])
    assert not out.exists()

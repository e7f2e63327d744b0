"""Every job on cluster storage: manifest, audio, pool, AL run, TAPT and fine-tuning in an S3 bucket; the
fine-tuning set is streamed from the bucket (``scaling.stream_above_clips=0``: read every epoch).

The bucket lives on a real S3 endpoint the tests start on 127.0.0.1 (moto's standalone server, see
``conftest.s3_server``); pyarrow and the Ray workers reach it through the standard AWS variables. The jobs
run from an empty working directory, which must still be empty at the end: nothing lands on local disk.
"""

from __future__ import annotations

import os
import runpy
import sys
import tempfile

import pytest

from ser_models import io
from ser_models.data import Pool, PoolConfig, prepare_pool
from ser_models.data.ledger import LabelLedger

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _job(module: str, argv: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [module, *argv])
    runpy.run_module(module, run_name="__main__")


def _checkpoint_staging() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("ser-") and "-checkpoint-" in n}


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """This process's temporary files in a folder of its own (another test process may be training too)."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


@pytest.mark.slow_e2e
def test_pool_after_loop_and_finetune_live_in_the_bucket(demo_pool, s3_bucket, tmp_path, monkeypatch,
                                                          private_tmp):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    staging_before = _checkpoint_staging()

    # The corpus (manifest with relative paths + audio) only in the bucket.
    io.copy_dir(demo_pool.corpus_dir, f"{s3_bucket}/corpus")
    pool_uri = f"{s3_bucket}/pool"
    summary = prepare_pool(PoolConfig(manifest=f"{s3_bucket}/corpus/manifest.csv", output_dir=pool_uri,
                                      labels=list(demo_pool.labels), max_duration=8.0, audio_format="flac",
                                      batch_size=8, num_workers=1))
    assert summary.kept == demo_pool.summary.kept and summary.quarantined == 0
    pool = Pool.open(pool_uri)
    paths = pool.metadata(columns=["path"])["path"]
    assert paths.str.startswith(f"{s3_bucket}/corpus/").all()  # relative paths resolved inside the bucket
    local = demo_pool.open().metadata(columns=["utt_id", "num_samples"]).sort_values("utt_id")
    remote = pool.metadata(columns=["utt_id", "num_samples"]).sort_values("utt_id")
    assert local["num_samples"].tolist() == remote["num_samples"].tolist()

    # AFTER with TAPT through Ray Train (its checkpoints in the bucket), rounds trained in process.
    run = f"{s3_bucket}/runs/after"
    args = ["jobs/configs/after_smoke.yaml", f"pool_dir={pool_uri}", f"output_dir={run}",
            "scaling.backend=in_process", "active.budget_fractions=[0.25,0.375,0.5]", "train.optim.epochs=1"]
    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))  # configs are repo-relative
    _job("jobs.after", args, monkeypatch)
    for rel in ("run.json", "config.yaml", "labels/ledger.parquet", "metrics.jsonl", "report/learning_curve.png",
                "tapt/encoder/encoder.safetensors", "rounds/round=001/selection.parquet",
                "rounds/round=002/metrics.json", "rounds/round=002/train/checkpoint/model.json"):
        assert io.exists(f"{run}/{rel}"), rel
    assert io.list_dir(f"{run}/tapt/ray_train"), "Ray Train wrote no checkpoints to the bucket"
    model_json = io.read_bytes(f"{run}/rounds/round=000/train/checkpoint/model.json").decode()
    assert "tapt" in model_json  # the rounds trained on the TAPT-adapted encoder
    ledger = LabelLedger(f"{run}/labels/ledger.parquet").labelled()

    # Resume from the bucket: the last round is redone from its stored inputs and labels nothing new.
    io.fs_delete(f"{run}/rounds/round=002/metrics.json")
    _job("jobs.after", args + ["scaling.cpus_per_worker=2"], monkeypatch)  # a speed-only key may change
    again = LabelLedger(f"{run}/labels/ledger.parquet").labelled()
    assert again[["utt_id", "label", "round"]].equals(ledger[["utt_id", "label", "round"]])
    assert io.exists(f"{run}/rounds/round=002/metrics.json")

    # Fine-tuning through Ray Train with storage_path + storage_filesystem in the bucket.
    ft = f"{s3_bucket}/runs/ft"
    _job("jobs.finetune", ["jobs/configs/finetune_smoke.yaml", f"pool_dir={pool_uri}", f"output_dir={ft}",
                           "train.optim.epochs=1", "scaling.stream_above_clips=0"], monkeypatch)  # streamed shard
    assert io.exists(f"{ft}/metrics.json") and io.exists(f"{ft}/checkpoint/model.safetensors")
    assert io.list_dir(f"{ft}/ray_train/finetune"), "Ray Train wrote no checkpoints to the bucket"

    assert os.listdir(cwd) == []
    assert _checkpoint_staging() == staging_before  # local checkpoint downloads were removed

"""Losing a worker node mid-job on a real multi-node Ray cluster: nothing lost, nothing done twice.

The cluster (:mod:`ser_models.testing.cluster`) runs in its own process: a head node with no CPUs and two
worker nodes of 2 CPUs each, all on this machine. Jobs run as users run them, ``RAY_ADDRESS=... python -m
jobs.<job> ...``, so the driver is attached to the head. A pause point in the job's worker code holds the
work on a node until the cluster process has SIGKILLed that node's whole process tree (raylet, object
store, workers, actors: a machine that loses power) and added a fresh node; then the job goes on. Each test
checks that the kill happened and that the job's output is whole and has no duplicates.

Where Ray cannot recover, the head node, the test proves the error the user sees and that a rerun on a new
cluster resumes from ``output_dir``.
"""

from __future__ import annotations

import glob
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from ser_models.cli import HEAD_LOST_EXIT
from ser_models.testing.cluster import ClusterProcess

pytestmark = [pytest.mark.slow, pytest.mark.failure_model]

ROOT = Path(__file__).resolve().parents[2]
JOB_TIMEOUT_S = 420
DEMO_CLIPS = 96


def run_job(cluster: ClusterProcess, log: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m jobs.<args>`` attached to ``cluster``; output to ``log`` (and in the assertion message)."""
    with open(log, "w") as out:
        proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env={**cluster.env(), **(env or {})},
                              stdout=out, stderr=subprocess.STDOUT, timeout=JOB_TIMEOUT_S)
    proc.output = log.read_text()
    return proc


def tail(proc) -> str:
    return "\n".join(line for line in proc.output.splitlines() if "state-dump" not in line)[-4000:]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = ClusterProcess(tmp_path_factory.mktemp("cluster"), workers=2, cpus=2)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def built_pool(cluster, tmp_path_factory):
    """(a) ``jobs.prepare_pool`` losing the node of a decode task: (pool dir, manifest, the job's process)."""
    root = tmp_path_factory.mktemp("pool")
    subprocess.run([sys.executable, "-m", "jobs.make_demo_pool", str(root / "corpus"), "--n", str(DEMO_CLIPS),
                    "--seed", "0"], cwd=ROOT, check=True, capture_output=True, timeout=120)
    arming = cluster.arm("prepare_decode")
    proc = run_job(cluster, root / "prepare.log", "jobs.prepare_pool", "jobs/configs/prepare_pool_smoke.yaml",
                   f"manifest={root / 'corpus' / 'manifest.csv'}", f"output_dir={root / 'pool'}", "num_workers=2",
                   "batch_size=8")
    return root / "pool", pd.read_csv(root / "corpus" / "manifest.csv"), proc, arming


def _pool_ids(pool_dir: Path) -> list[str]:
    summary = json.loads((pool_dir / "summary.json").read_text())
    data = pool_dir / summary["build"] / "data"
    return pads.dataset(str(data), format="parquet", partitioning="hive").to_table(columns=["utt_id"]) \
        .column("utt_id").to_pylist()


def test_prepare_pool_loses_a_node_and_writes_every_clip_exactly_once(cluster, built_pool):
    pool_dir, manifest, proc, arming = built_pool
    assert proc.returncode == 0, tail(proc)
    lost = cluster.losses(arming)
    assert len(lost) == 1 and lost[0]["killed_processes"] >= 1, cluster.events()
    ids = _pool_ids(pool_dir)
    assert sorted(ids) == sorted(manifest["utt_id"]), "a clip was lost or written twice"
    summary = json.loads((pool_dir / "summary.json").read_text())
    assert summary["kept"] == len(manifest) and summary["quarantined"] == 0


def test_a_plain_ray_init_elsewhere_on_the_machine_does_not_join_the_test_cluster(cluster):
    """``Cluster`` records its address where ``ray.init()`` looks for a running cluster; other test processes
    (and their drivers) joined it and lost their actors with its nodes, until its temp dir became its own."""
    from ray._common.utils import get_ray_address_file

    machine_wide = Path(get_ray_address_file(None))
    assert not (machine_wide.exists() and machine_wide.read_text().strip() == cluster.address)


def _after(cluster, pool_dir, out: Path, *extra: str):
    return run_job(cluster, out.with_suffix(".log"), "jobs.after", "jobs/configs/after_smoke.yaml",
                   f"pool_dir={pool_dir}", f"output_dir={out}", "tapt_enabled=false", "train.optim.epochs=1",
                   "model.adapter.kind=frozen", "active.feature_cache=on", f"active.feature_cache_dir={out}/cache",
                   "active.scorer.num_actors=2", "active.scorer.num_cpus=1", *extra)


def _ledger(out: Path) -> pd.DataFrame:
    t = pq.read_table(out / "labels" / "ledger.parquet", columns=["utt_id", "label", "round"]).to_pandas()
    return t.sort_values("utt_id").reset_index(drop=True)


def _cache_ids(out: Path) -> list[str]:
    files = glob.glob(str(out / "cache" / "*" / "features-*" / "*.parquet"))
    return pads.dataset(files, format="parquet").to_table(columns=["utt_id"]).column("utt_id").to_pylist()


def test_after_round_loses_nodes_while_caching_and_scoring_and_ends_with_the_same_ledger(cluster, built_pool,
                                                                                         tmp_path):
    """(a) the feature-cache build and (d) a round's pool scoring, each losing the node of a busy actor."""
    pool_dir, manifest, *_ = built_pool
    reference = _after(cluster, pool_dir, tmp_path / "reference")
    assert reference.returncode == 0, tail(reference)
    caching, scoring = cluster.arm("cache_encode"), cluster.arm("score_batch")
    proc = _after(cluster, pool_dir, tmp_path / "lossy")
    assert proc.returncode == 0, tail(proc)
    assert len(cluster.losses(caching)) == 1 and len(cluster.losses(scoring)) == 1, cluster.events()

    cached = _cache_ids(tmp_path / "lossy")
    assert sorted(cached) == sorted(manifest["utt_id"]), "the cache lost a clip or encoded one twice"

    def scores(out):
        return pq.read_table(out / "rounds" / "round=000" / "scores.parquet").to_pandas()

    lossy, ref = scores(tmp_path / "lossy"), scores(tmp_path / "reference")
    assert lossy["utt_id"].is_unique, "a clip was scored twice"
    initial = set(pq.read_table(tmp_path / "lossy" / "rounds" / "initial" / "selection.parquet")
                  .column("utt_id").to_pylist())
    unlabelled = set(manifest.loc[manifest["split"] == "train", "utt_id"]) - initial
    assert unlabelled <= set(lossy["utt_id"]), "an unlabelled clip was not scored"
    assert set(lossy["utt_id"]) == set(ref["utt_id"])

    pd.testing.assert_frame_equal(_ledger(tmp_path / "lossy"), _ledger(tmp_path / "reference"))


@pytest.mark.parametrize("point, extra", [
    ("select_shard", ("active.selection.rows_per_shard=8",)),
    ("seed_shard", ("active.selection.rows_per_shard=4", "active.strategy.name=badge"))])
def test_a_sharded_round_loses_a_node_mid_selection_and_labels_the_same_clips(cluster, built_pool, tmp_path, point,
                                                                               extra):
    """A run whose scores stay sharded (threshold 0, shards of a few clips) loses a node mid-selection.
    ``select_shard``: the selection tasks spread over both worker nodes; the node of the first one to run is
    lost, and Ray runs the lost task again on the other node. ``seed_shard``: BADGE's shares are Ray actors
    holding the shards' clips while each pick is drawn; the node of the first share to start is lost, and the
    draw starts again on fresh shares. Either way the run labels what an undisturbed run labels."""
    pool_dir, *_ = built_pool
    sharded = ("active.selection.shard_above_clips=0", *extra)
    reference = _after(cluster, pool_dir, tmp_path / "reference", *sharded)
    assert reference.returncode == 0, tail(reference)
    assert "selection: sharded" in reference.output
    selecting = cluster.arm(point)
    proc = _after(cluster, pool_dir, tmp_path / "lossy", *sharded)
    assert proc.returncode == 0, tail(proc)
    assert len(cluster.losses(selecting)) == 1, cluster.events()
    for out in (tmp_path / "reference", tmp_path / "lossy"):
        scores = out / "rounds" / "round=000" / "scores"
        assert (scores / "manifest.json").exists() and len(list(scores.glob("attempt=*/part-*.parquet"))) > 2
        assert not (out / "rounds" / "round=000" / "scores.parquet").exists()
    pd.testing.assert_frame_equal(_ledger(tmp_path / "lossy"), _ledger(tmp_path / "reference"))


@pytest.fixture(scope="module")
def finetuned(cluster, built_pool, tmp_path_factory):
    """(b) ``jobs.finetune`` on Ray Train losing a worker's node in epoch 2: (output dir, process, arming)."""
    pool_dir, *_ = built_pool
    root = tmp_path_factory.mktemp("finetune")
    out = root / "ft"
    # Ray Train learns of a checkpoint when its controller next polls the workers (every 2 s): the kill waits
    # until epoch 1's checkpoint is registered, or the restart would rightly begin at epoch 1.
    arming = cluster.arm("train_epoch_2", after=out / "ray_train" / "finetune" / "checkpoint_manager_snapshot.json")
    proc = run_job(cluster, root / "ft.log", "jobs.finetune", "jobs/configs/finetune_smoke.yaml",
                   f"pool_dir={pool_dir}", f"output_dir={out}", "scaling.backend=ray_train",
                   "scaling.num_workers=2", "scaling.cpus_per_worker=2", "scaling.max_failures=2", "train.optim.epochs=3")
    return out, proc, arming


def test_finetune_loses_a_train_worker_node_and_resumes_from_the_last_checkpoint(cluster, finetuned):
    """(b) Ray Train with ``max_failures=2``: each worker takes a whole node, so the lost block of a held
    dataset could only be rebuilt on a free CPU; it lives on the head (``held_on_driver_node``) instead."""
    out, proc, arming = finetuned
    assert proc.returncode == 0, tail(proc)
    assert len(cluster.losses(arming)) == 1, cluster.events()
    metrics = json.loads((out / "metrics.json").read_text())
    assert [(h["epoch"], h["attempt"]) for h in metrics["history"]] == [(1, 0), (2, 1), (3, 1)]
    assert metrics["resumed_after"] == [1]  # epoch 2 was redone by the restarted worker group
    assert "resuming after epoch 1 (attempt 1" in proc.output


def test_predict_loses_a_scoring_node_and_predicts_every_clip_once(cluster, built_pool, finetuned, tmp_path):
    pool_dir, manifest, *_ = built_pool
    model_dir, trained, _ = finetuned
    assert trained.returncode == 0, tail(trained)
    arming = cluster.arm("score_batch")
    proc = run_job(cluster, tmp_path / "predict.log", "jobs.predict", "jobs/configs/predict_demo.yaml",
                   f"checkpoint={model_dir}", f"pool_dir={pool_dir}", f"output_dir={tmp_path / 'pred'}",
                   "shard_rows=32", "scorer.num_actors=2", "scorer.num_cpus=1", "scorer.threads=1",
                   "scorer.batch_size=8")
    assert proc.returncode == 0, tail(proc)
    assert len(cluster.losses(arming)) == 1, cluster.events()
    pred = pads.dataset(str(tmp_path / "pred" / "predictions"), format="parquet").to_table(columns=["utt_id"])
    assert sorted(pred.column("utt_id").to_pylist()) == sorted(manifest["utt_id"]), "a clip lost or predicted twice"


def test_sweep_restores_the_trial_whose_node_was_lost(cluster, built_pool, tmp_path):
    """(c) Ray Tune with ``max_failures=1``: every trial ends, the lost one resumes after its last epoch."""
    pool_dir, *_ = built_pool
    out = tmp_path / "sweep"
    arming = cluster.arm("train_epoch_2")
    proc = run_job(cluster, tmp_path / "sweep.log", "jobs.sweep", "jobs/configs/sweep_smoke.yaml",
                   f"config.pool_dir={pool_dir}", f"output_dir={out}", "num_samples=2", "scheduler.name=fifo",
                   "max_failures=1", "config.train.optim.epochs=3")
    assert proc.returncode == 0, tail(proc)
    assert len(cluster.losses(arming)) == 1, cluster.events()
    results = pq.read_table(out / "results.parquet").to_pandas()
    assert len(results) == 2 and (results["status"] == "finished").all() and results["metric"].notna().all(), results
    histories = {Path(f).parts[-3]: json.loads(Path(f).read_text())
                 for f in glob.glob(str(out / "trials" / "*" / "in_process" / "result.json"))}
    assert len(histories) == 2
    attempts = sorted([(h["epoch"], h["attempt"]) for h in r["history"]] for r in histories.values())
    # Both trials paused at epoch 2 on the same or different nodes: the lost node took one or both.
    restored = [a for a in attempts if a == [(1, 0), (2, 1), (3, 1)]]
    untouched = [a for a in attempts if a == [(1, 0), (2, 0), (3, 0)]]
    assert restored and len(restored) + len(untouched) == 2, attempts


def test_head_loss_ends_the_job_clearly_and_a_rerun_on_a_new_cluster_resumes(built_pool, tmp_path):
    """Ray cannot survive its head node without GCS fault tolerance: the driver ends with an error that
    names the lost GCS, and the rerun on a new cluster resumes from the checkpoint in ``output_dir``."""
    pool_dir, *_ = built_pool
    out = tmp_path / "ft"
    args = ("jobs.finetune", "jobs/configs/finetune_smoke.yaml", f"pool_dir={pool_dir}", f"output_dir={out}",
            "scaling.backend=ray_train", "scaling.num_workers=1", "scaling.max_failures=2", "train.optim.epochs=3")
    doomed = ClusterProcess(tmp_path / "cluster1", workers=1, cpus=2)
    try:
        doomed.arm("train_epoch_2", lose="head",
                   after=out / "ray_train" / "finetune" / "checkpoint_manager_snapshot.json")
        proc = run_job(doomed, tmp_path / "doomed.log", *args)
    finally:
        doomed.stop()
    assert len(doomed.events("head_removed")) == 1, doomed.events()
    assert proc.returncode == HEAD_LOST_EXIT, tail(proc)
    assert "error: HeadNodeLost: the Ray cluster's head node is gone" in proc.output, tail(proc)
    # Either the error of a call to the lost head surfaced, or nothing did and the driver's head watch ended
    # the job after 10 s (runtime.watch_head_node), before Ray would have ended it with exit code 1 (20 s).
    assert not (out / "metrics.json").exists()

    fresh = ClusterProcess(tmp_path / "cluster2", workers=1, cpus=2)
    try:
        rerun = run_job(fresh, tmp_path / "rerun.log", *args)
    finally:
        fresh.stop()
    assert rerun.returncode == 0, tail(rerun)
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    assert metrics["resumed_after"] == [1], metrics["history"]

"""The AFTER loop end to end on a real prepared pool with the in-process backend (Ray Data still reads the
pool): artifacts, resume after SIGKILL, no label leakage, the human file-oracle round trip, the feature cache.
The Ray Train path of the loop runs in tests/jobs/test_after_job.py."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ser_models.active.loop import ActiveLearningLoop
from ser_models.active.round_report import forecast_word
from ser_models.active.strategies import format_verdict
from ser_models.config import load_config
from ser_models.data import LabelLedger, Pool, PoolConfig, prepare_pool
from ser_models.exceptions import FeatureCacheMissError, LabellingPending
from ser_models.testing import TRAINED_HEAD_AFTER

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]

OVERRIDES = [
    *TRAINED_HEAD_AFTER, "tapt_enabled=false", "scaling.backend=in_process",
    "model.encoder.source=tiny-wav2vec2", "model.encoder.normalize_waveform=false", "model.adapter.r=4", "model.adapter.alpha=8", "model.head_hidden=16",
    "train.optim.epochs=2", "train.optim.batch_size=8", "train.optim.max_crop_seconds=1.0", "train.early_stopping_patience=0",
    "active.budget_fractions=[0.25,0.5,0.75]", "active.initial=cluster_cold_start",
]


def _job_cfg(pool_dir, out, extra=()):
    from ser_models.runs.after import AfterJobConfig

    return load_config(AfterJobConfig, None, [f"pool_dir={pool_dir}", f"output_dir={out}", *OVERRIDES, *extra])


def _loop(cfg, oracle=None):
    return ActiveLearningLoop(Pool.open(cfg.pool_dir), cfg.output_dir, cfg.model, cfg.train, cfg.scaling,
                              cfg.active, oracle=oracle, verbose=False)


def _ledger_rows(out):
    df = LabelLedger(Path(out) / "labels" / "ledger.parquet").labelled()
    return sorted(zip(df["utt_id"], df["label"], df["round"].astype(int)))


@pytest.fixture(scope="module")
def reference_run(demo_pool, tmp_path_factory):
    """One uninterrupted run; other tests compare against it."""
    out = tmp_path_factory.mktemp("after_ref")
    cfg = _job_cfg(demo_pool.pool_dir, out)
    reports = _loop(cfg).run()
    return out, reports


def test_loop_writes_rounds_ledger_and_report(reference_run, demo_pool):
    out, reports = reference_run
    train_n = len(Pool.open(demo_pool.pool_dir).metadata(columns=["utt_id"], split="train"))
    assert [r.labelled for r in reports] == [round(f * train_n) for f in (0.25, 0.5, 0.75)]
    rows = _ledger_rows(out)
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)) == reports[-1].labelled  # nothing lost, nothing duplicated
    assert sorted({r[2] for r in rows}) == [0, 1, 2]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["round"] for x in lines] == [0, 1, 2]
    first = json.loads(lines[0])
    assert set(first["seconds"]) == {"train", "score", "stop", "select", "label"}
    # the stopping signal is reported every round, on every training clip here (the pool is small)
    assert first["stopping"]["kappa"] is None and 0 <= first["stopping"]["uncertainty"] <= 0.75
    assert -1 <= json.loads(lines[2])["stopping"]["kappa"] <= 1 and not json.loads(lines[2])["stopping"]["stop"]
    assert all((out / "rounds" / f"round={r:03d}" / "stop_set.parquet").exists() for r in range(3))
    assert 0 <= first["test"]["ua"] <= 1 and first["dev"]["n"] > 0
    for r in range(3):
        assert (out / "rounds" / f"round={r:03d}" / "train" / "checkpoint" / "model.safetensors").exists()
        assert (out / "report" / f"confusion_round={r:03d}.png").exists()
    assert (out / "rounds" / "round=000" / "scores.parquet").exists()
    assert not (out / "rounds" / "round=002" / "selection.parquet").exists()  # budget spent: no selection
    # the selection of round r is exactly what the ledger stamped r + 1
    sel = pq.read_table(out / "rounds" / "round=000" / "selection.parquet")["utt_id"].to_pylist()
    assert sorted(sel) == sorted(u for u, _, rnd in rows if rnd == 1)
    assert (out / "report" / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_rerun_of_finished_run_changes_nothing(reference_run, demo_pool):
    out, _ = reference_run
    before = _ledger_rows(out)
    mtime = (out / "labels" / "ledger.parquet").stat().st_mtime_ns
    t0 = time.perf_counter()
    reports = _loop(_job_cfg(demo_pool.pool_dir, out)).run()
    assert time.perf_counter() - t0 < 60
    assert _ledger_rows(out) == before
    assert (out / "labels" / "ledger.parquet").stat().st_mtime_ns == mtime
    assert len(reports) == 3


@pytest.mark.failure_model
def test_sigkill_mid_round_then_resume_gives_the_same_ledger(reference_run, demo_pool, tmp_path):
    ref_out, _ = reference_run
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "jobs.after", f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}", *OVERRIDES]
    import ray

    # The driver joins the session's Ray cluster, as a job on a real cluster would: killing it must not
    # take the cluster down, and a fresh driver picks the run up.
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    # Kill inside round 1: after its first training epoch was checkpointed, before the round finished.
    marker = out / "rounds" / "round=001" / "train" / "in_process" / "fit_state.pt"
    deadline = time.time() + 300
    try:
        while not marker.exists():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "timed out waiting for round 1"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, mid-round
        proc.wait()
    assert not (out / "rounds" / "round=001" / "metrics.json").exists()
    _loop(_job_cfg(demo_pool.pool_dir, out)).run()
    assert _ledger_rows(out) == _ledger_rows(ref_out)


@pytest.mark.failure_model
def test_sigkill_at_every_stage_boundary_then_resume_gives_the_same_ledger(demo_pool, tmp_path):
    """The driver is SIGKILLed (SER_FAILPOINT) right after the initial selection, after training, scoring,
    selecting, appending labels and writing a round's metrics, each in turn, in one run folder; every
    restart picks up where the last died, and the final ledger equals an uninterrupted run's."""
    import ray

    from ser_models.failpoints import FAILPOINT_ENV, LOOP_FAILPOINTS

    cached = ["active.budget_fractions=[0.25,0.375,0.5]", "model.adapter.kind=frozen", "model.pooling=mean",
              f"active.feature_cache_dir={tmp_path / 'cache'}"]  # cached features: each restart takes seconds
    ref = tmp_path / "uninterrupted"
    _loop(_job_cfg(demo_pool.pool_dir, ref, cached)).run()
    out = tmp_path / "killed"
    argv = [f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}", *OVERRIDES, *cached]
    # Each driver is a fresh process that joins the session's Ray cluster, forked from a server that has
    # already imported torch, transformers and ray (a cold interpreter spends ~7 s importing them).
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["jobs.after", "ser_models.active.loop", "ser_models.training.in_process"])
    address = ray.get_runtime_context().gcs_address
    # after_label twice: once in round 0, once (after round 0 finished) in round 1.
    for point in (*LOOP_FAILPOINTS, "after_label", None):
        proc = ctx.Process(target=_run_after_job, args=(argv, {"RAY_ADDRESS": address, FAILPOINT_ENV: point}))
        proc.start()
        proc.join(300)
        assert proc.exitcode == (-signal.SIGKILL if point else 0), (point, proc.exitcode)
        if point == "after_metrics":
            assert (out / "rounds" / "round=000" / "metrics.json").exists()
    assert _ledger_rows(out) == _ledger_rows(ref)
    ref_metrics = [json.loads(x) for x in (ref / "metrics.jsonl").read_text().splitlines()]
    out_metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["test"] for m in out_metrics] == [m["test"] for m in ref_metrics]


@pytest.mark.failure_model
def test_a_scoring_pass_killed_before_its_manifest_is_never_read_back(demo_pool, tmp_path):
    """Sharded round (``shard_above_clips=0``): the driver is SIGKILLed after every score shard of round 0 was
    written but before the manifest that commits them. The rerun scores again into a new attempt, reads only
    that one, removes the dead attempt's shards, and labels what an uninterrupted run labels."""
    import ray

    from ser_models.failpoints import FAILPOINT_ENV

    sharded = ["active.budget_fractions=[0.25,0.5]", "model.adapter.kind=frozen", "model.pooling=mean",
               f"active.feature_cache_dir={tmp_path / 'cache'}", "active.initial=random",
               "active.strategy.name=margin", "active.selection.shard_above_clips=0",
               "active.selection.rows_per_shard=7"]
    ref = tmp_path / "uninterrupted"
    _loop(_job_cfg(demo_pool.pool_dir, ref, sharded)).run()
    out = tmp_path / "killed"
    argv = [f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}", *OVERRIDES, *sharded]
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["jobs.after", "ser_models.active.loop", "ser_models.training.in_process"])
    address = ray.get_runtime_context().gcs_address
    scores = out / "rounds" / "round=000" / "scores"
    for point in ("before_score_manifest", None):
        proc = ctx.Process(target=_run_after_job, args=(argv, {"RAY_ADDRESS": address, FAILPOINT_ENV: point}))
        proc.start()
        proc.join(300)
        assert proc.exitcode == (-signal.SIGKILL if point else 0), (point, proc.exitcode)
        if point:  # every shard of the pass on disk, none committed
            assert not (scores / "manifest.json").exists() and list(scores.glob("attempt=*/part-*.parquet"))
    attempts = {p.name for p in scores.glob("attempt=*")}
    listed = {f.split("/")[0] for f in json.loads((scores / "manifest.json").read_text())["files"]}
    # the dead pass's shards were never listed, and the rerun removed them once its own pass was committed
    assert len(listed) == 1 and attempts == listed
    assert _ledger_rows(out) == _ledger_rows(ref)


@pytest.mark.failure_model
def test_query_batches_retrain_between_batches_and_resume_after_a_kill(demo_pool, tmp_path):
    """``active.query_batch=4``: each 8-clip budget step is two batches; the second is chosen by a model
    retrained on the first batch's labels. A driver killed right after the first batch was labelled resumes
    at the second, and the ledger equals an uninterrupted run's."""
    import ray

    from ser_models.failpoints import FAILPOINT_ENV
    from ser_models.scoring.scorer import Scores

    batched = ["active.budget_fractions=[0.25,0.5]", "model.adapter.kind=frozen", "model.pooling=mean",
               f"active.feature_cache_dir={tmp_path / 'cache'}", "active.query_batch=4",
               "active.initial=random", "model.head_hidden=0", "train.solver=lbfgs", "train.l2_c=auto",
               "train.cv_folds=2"]
    ref = tmp_path / "uninterrupted"
    cfg = _job_cfg(demo_pool.pool_dir, ref, batched)
    reports = _loop(cfg).run()
    step = reports[1].labelled - reports[0].labelled
    assert step == 8, [r.labelled for r in reports]
    round0 = ref / "rounds" / "round=000"
    batches = [pq.read_table(round0 / f"batch={b:03d}" / "selection.parquet").column("utt_id").to_pylist()
               for b in range(2)]
    assert [len(b) for b in batches] == [4, 4] and not set(batches[0]) & set(batches[1])
    assert pq.read_table(round0 / "selection.parquet").column("utt_id").to_pylist() == batches[0] + batches[1]
    assert not (round0 / "batch=000" / "train").exists()  # the first batch uses the round's own model
    retrained, first = (Scores.load(round0 / name / "scores.parquet") for name in ("batch=001", "."))
    order = np.argsort(first.ids)
    assert list(retrained.ids[np.argsort(retrained.ids)]) == list(first.ids[order])
    assert not np.allclose(retrained.probs[np.argsort(retrained.ids)], first.probs[order]), "no model was retrained"
    rows = _ledger_rows(ref)
    assert sum(1 for _, _, rnd in rows if rnd == 1) == 8
    # The batch model reuses the C the round's CV chose: one solve, no second CV.
    round_fit = json.loads((round0 / "train" / "metrics.json").read_text())["history"][-1]
    batch_fit = json.loads((round0 / "batch=001" / "train" / "metrics.json").read_text())["history"][-1]
    assert "l2_c_cv" in round_fit and "l2_c_cv" not in batch_fit and batch_fit["l2_c"] == round_fit["l2_c"]
    # Random picks ignore the model: batches without retraining.
    plain = tmp_path / "random"
    _loop(_job_cfg(demo_pool.pool_dir, plain, [*batched, "active.strategy.name=random"])).run()
    assert (plain / "rounds" / "round=000" / "batch=001" / "selection.parquet").exists()
    assert not (plain / "rounds" / "round=000" / "batch=001" / "train").exists()

    out = tmp_path / "killed"
    argv = [f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}", *OVERRIDES, *batched]
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["jobs.after", "ser_models.active.loop", "ser_models.training.in_process"])
    address = ray.get_runtime_context().gcs_address
    for point in ("after_query_batch", None):
        proc = ctx.Process(target=_run_after_job, args=(argv, {"RAY_ADDRESS": address, FAILPOINT_ENV: point}))
        proc.start()
        proc.join(300)
        assert proc.exitcode == (-signal.SIGKILL if point else 0), (point, proc.exitcode)
        if point:
            assert (out / "rounds" / "round=000" / "batch=000" / "selection.parquet").exists()
            assert not (out / "rounds" / "round=000" / "batch=001").exists()
    assert _ledger_rows(out) == rows


def _run_after_job(argv: list[str], env: dict) -> None:
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    os.chdir(REPO)
    from jobs.after import main

    main(argv)


def test_clips_the_simulated_oracle_cannot_label_are_never_selected(demo_pool, tmp_path):
    """A pool whose training split holds clips labelled 'oth' (outside model.labels) and clips with no label:
    the loop runs, never selects them, and the ledger holds model labels only."""
    manifest = pd.read_csv(demo_pool.manifest)
    train_ids = manifest.loc[manifest.split == "train", "utt_id"].tolist()
    oth, empty = set(train_ids[:4]), set(train_ids[4:7])
    manifest.loc[manifest.utt_id.isin(oth), "label"] = "oth"
    manifest.loc[manifest.utt_id.isin(empty), "label"] = None
    manifest["path"] = [str(Path(demo_pool.corpus_dir) / p) for p in manifest["path"]]
    manifest.to_csv(tmp_path / "mixed.csv", index=False)
    prepare_pool(PoolConfig(manifest=str(tmp_path / "mixed.csv"), output_dir=str(tmp_path / "pool"), labels=[]))
    out = tmp_path / "run"
    cfg = _job_cfg(tmp_path / "pool", out, ["active.budget_fractions=[0.25,0.5]", "active.initial=random",
                                            "model.adapter.kind=frozen", "model.pooling=mean"])  # cached: fast
    _loop(cfg).run()
    ledger = LabelLedger(out / "labels" / "ledger.parquet").labelled()
    assert set(ledger["label"]) <= set(cfg.model.labels)
    assert not (set(ledger["utt_id"]) & (oth | empty))


def test_file_oracle_round_trip_on_a_pool_with_poisoned_labels(demo_pool, tmp_path):
    """The human path, and proof that nothing but the ledger feeds training: every training clip's label in
    the pool is 'LEAKED' (not a model label), so any training or scoring code that read pool labels would fail
    on it. The true labels reach the loop only through the to_label.csv files a 'human' fills in."""
    manifest = pd.read_csv(demo_pool.manifest)
    train = manifest.split == "train"
    truth = dict(zip(manifest.loc[train, "utt_id"], manifest.loc[train, "label"]))
    manifest.loc[train, "label"] = "LEAKED"
    manifest["path"] = [str(Path(demo_pool.corpus_dir) / p) for p in manifest["path"]]
    manifest.to_csv(tmp_path / "poisoned.csv", index=False)
    prepare_pool(PoolConfig(manifest=str(tmp_path / "poisoned.csv"), output_dir=str(tmp_path / "pool"), labels=[]))
    out = tmp_path / "run"
    cfg = _job_cfg(tmp_path / "pool", out, ["active.oracle=file", "active.budget_fractions=[0.25,0.5]",
                                            "active.initial=random"])

    def fill(csv):
        df = pd.read_csv(csv)
        assert list(df.columns[:3]) == ["utt_id", "path", "duration"] and df["label"].isna().all()
        df["label"] = df["utt_id"].map(truth)
        df.to_csv(csv, index=False)

    with pytest.raises(LabellingPending, match="to_label.csv"):
        _loop(cfg).run()
    fill(out / "rounds" / "initial" / "to_label.csv")
    with pytest.raises(LabellingPending):
        _loop(cfg).run()  # imports the initial labels, trains round 0, asks for round 1's clips
    assert (out / "rounds" / "round=000" / "train" / "metrics.json").exists()
    fill(out / "rounds" / "round=000" / "to_label.csv")
    reports = _loop(cfg).run()
    assert [r.round for r in reports] == [0, 1]
    df = LabelLedger(out / "labels" / "ledger.parquet").labelled()
    assert set(df["oracle"]) == {"file"} and len(df) == reports[-1].labelled
    assert set(df["label"]) <= set(truth.values())


def test_frozen_encoder_cache_encodes_once(demo_pool, tmp_path):
    cfg = _job_cfg(demo_pool.pool_dir, tmp_path, ["model.adapter.kind=frozen", "model.pooling=mean",
                                                  "active.budget_fractions=[0.25,0.5]"])
    loop = _loop(cfg)
    assert loop.cache is not None
    reports = loop.run()
    assert len(reports) == 2
    shards = sorted(tmp_path.glob("feature_cache/*/features-*/*.parquet"))  # written as encoded, in shards
    n_all = len(Pool.open(demo_pool.pool_dir).metadata(columns=["utt_id"]))
    assert sum(pq.read_metadata(f).num_rows for f in shards) == n_all
    with pytest.raises(FeatureCacheMissError, match="'nope'"):  # never skipped without a word
        loop.cache.table(ids=["nope"])
    assert len(loop.cache.table()) == n_all
    mtimes = [f.stat().st_mtime_ns for f in shards]
    shutil.rmtree(tmp_path / "rounds" / "round=001")  # redo the last round: it must not re-encode
    _loop(cfg).run()
    assert [f.stat().st_mtime_ns for f in shards] == mtimes


def test_small_label_recipe_standardises_with_training_pool_statistics(demo_pool, tmp_path):
    import numpy as np
    from safetensors.numpy import load_file

    from ser_models.encoders.standardizer import load_statistics
    from ser_models.scoring.cache_rows import features_array

    cfg = _job_cfg(demo_pool.pool_dir, tmp_path, [
        "model.adapter.kind=frozen", "model.pooling=mean", "model.feature_norm=pool", "model.head_hidden=0",
        "model.featurizer_layer=1", "train.solver=lbfgs", "active.budget_fractions=[0.25,0.5]"])
    loop = _loop(cfg)
    reports = loop.run()
    assert [r.labelled for r in reports] == loop.targets
    mean, std, clips = load_statistics(tmp_path / "feature_stats.safetensors")
    # every training clip, labelled or not, and nothing from dev / test
    assert clips == len(loop.clips)
    feats = features_array(loop.cache.table(ids=loop.clips.ids).column("features"), loop.cache.shape)
    np.testing.assert_allclose(mean, feats.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(std, feats.std(0), rtol=1e-3, atol=1e-5)
    weights = load_file(str(tmp_path / "rounds" / "round=000" / "train" / "checkpoint" / "model.safetensors"))
    np.testing.assert_allclose(weights["standardizer.mean"], mean)
    assert json.loads((tmp_path / "rounds" / "round=000" / "train" / "metrics.json").read_text())["history"][0][
        "iterations"] > 1  # solved by L-BFGS, one full-batch "epoch"


def test_speaker_norm_standardises_every_clip_by_its_speaker_in_training_and_scoring(demo_pool, tmp_path):
    """Each speaker's statistics are those of all their clips in the pool (every split; k=0: their own alone);
    the round's checkpoint carries them; and the round's scores of unlabelled clips are the checkpoint's
    output on each clip's cached features with its speaker."""
    import torch

    from ser_models.encoders.speaker_norm import SpeakerStatistics
    from ser_models.models.model import EmotionModel
    from ser_models.scoring.cache_rows import features_array

    cfg = _job_cfg(demo_pool.pool_dir, tmp_path, [
        "model.adapter.kind=frozen", "model.pooling=mean", "model.feature_norm=speaker", "model.speaker_shrinkage=0",
        "model.head_hidden=0", "model.head_input_norm=false", "model.featurizer_layer=1", "train.solver=lbfgs",
        "train.class_weighted=false",
        "active.budget_fractions=[0.25,0.5]", "active.initial=random", "active.strategy.name=margin"])
    loop = _loop(cfg)
    reports = loop.run()
    assert [r.labelled for r in reports] == loop.targets
    stats = SpeakerStatistics.load(tmp_path / "speaker_stats.safetensors")
    meta = Pool.open(demo_pool.pool_dir).metadata(columns=["utt_id", "speaker", "split"])
    assert set(stats.speakers) == set(meta["speaker"]) and set(meta["split"]) == {"train", "dev", "test"}
    table = loop.cache.table()  # every clip, with its speaker joined in
    assert table.num_rows == len(meta)
    feats, speakers = features_array(table.column("features"), loop.cache.shape), table.column("speaker").to_pylist()
    for row, name in enumerate(stats.speakers):
        mine = feats[[s == name for s in speakers]]
        assert stats.counts[row] == len(mine)
        np.testing.assert_allclose(stats.mean[row], mine.mean(0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(stats.std[row], mine.std(0), rtol=1e-3, atol=1e-5)
    assert loop.speaker_summary["speakers"] == len(stats.speakers)

    ckpt = tmp_path / "rounds" / "round=000" / "train" / "checkpoint"
    model = EmotionModel.load_checkpoint(str(ckpt))
    np.testing.assert_array_equal(model.speaker_norm.stats.mean, stats.mean)
    scores = pq.read_table(tmp_path / "rounds" / "round=000" / "scores.parquet").to_pandas().set_index("utt_id")
    order = {u: i for i, u in enumerate(table.column("utt_id").to_pylist())}
    ids = sorted(scores.index)[:8]
    with torch.no_grad():
        probs = torch.softmax(model.forward_from_pooled(
            torch.from_numpy(feats[[order[u] for u in ids]]), speakers=[speakers[order[u]] for u in ids]).logits, -1)
    np.testing.assert_allclose(np.stack(scores.loc[ids, "probs"].to_list()), probs.numpy(), atol=1e-5)
    # ... and it was trained on them: its loss on round 0's labelled clips, with their speakers, is the fit's
    labelled = [(u, label) for u, label, r in _ledger_rows(tmp_path) if r == 0]
    x = torch.from_numpy(feats[[order[u] for u, _ in labelled]])
    y = torch.tensor([model.labels.index(label) for _, label in labelled])
    fit_loss = json.loads((ckpt.parent / "metrics.json").read_text())["history"][0]["train_loss"]
    with torch.no_grad():
        own = torch.nn.functional.cross_entropy(
            model.forward_from_pooled(x, speakers=[speakers[order[u]] for u, _ in labelled]).logits, y)
        pooled_only = torch.nn.functional.cross_entropy(model.forward_from_pooled(x).logits, y)
    assert float(own) == pytest.approx(fit_loss, rel=1e-4) and float(pooled_only) != pytest.approx(fit_loss, rel=1e-2)


def test_feature_norm_auto_chooses_each_round_by_cv_and_logs_it(demo_pool, tmp_path):
    """``model.feature_norm=auto`` with ``train.l2_c=auto``: every round's fit cross-validates pool against speaker
    standardisation on the labelled clips; the choice and its scores are in the round line, metrics.jsonl and
    the round's checkpoint."""
    from ser_models.models.model import EmotionModel

    cfg = _job_cfg(demo_pool.pool_dir, tmp_path, [
        "model.adapter.kind=frozen", "model.pooling=mean", "model.feature_norm=auto", "model.head_hidden=0",
        "model.head_input_norm=false", "model.featurizer_layer=1", "train.solver=lbfgs", "train.l2_c=auto",
        "train.cv_folds=2", "active.budget_fractions=[0.5,0.75]", "active.initial=random",
        "active.strategy.name=margin"])
    loop = _loop(cfg)
    reports = loop.run()
    assert (tmp_path / "feature_stats.safetensors").exists() and (tmp_path / "speaker_stats.safetensors").exists()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for rep, row in zip(reports, rows):
        chosen = rep.features["feature_norm"]
        assert chosen in ("pool", "speaker") and row["features"] == rep.features
        assert set(rep.features["cv_scores"]) == {"pool", "speaker"} and f"| norm {chosen}" in rep.line()
        assert rep.features["reason"] == "best CV score", rep.features
        model = EmotionModel.load_checkpoint(
            str(tmp_path / "rounds" / f"round={rep.round:03d}" / "train" / "checkpoint"))
        assert model.norm == chosen


def test_a_cache_of_the_first_states_gives_the_run_that_every_state_gives(demo_pool, tmp_path):
    """Whisper reading hidden state 1: the cache holds states 0-1 only (the encoder stops after layer 1), and
    the run's ledger and metrics equal a run over the cache of every state; its checkpoint, which runs the
    whole encoder on audio, carries statistics for every state."""
    import numpy as np

    from ser_models.io import read_json

    recipe = ["model.encoder.source=tiny-whisper", "model.adapter.kind=frozen", "model.pooling=mean",
              "model.feature_norm=pool", "model.head_hidden=0", "model.head_input_norm=false",
              "model.featurizer_layer=1", "train.solver=lbfgs", "active.budget_fractions=[0.25,0.5]",
              "active.initial=random", "active.strategy.name=margin"]
    runs = {}
    for layers in ("auto", "all"):
        out = tmp_path / layers
        loop = _loop(_job_cfg(demo_pool.pool_dir, out, [*recipe, f"active.feature_cache_layers={layers}"]))
        runs[layers] = (loop, loop.run(), out)
    (short, short_reports, short_out), (whole, whole_reports, whole_out) = runs["auto"], runs["all"]
    assert short.cache.dir.name.endswith("-states2") and short.cache.shape[0] == 2
    assert whole.cache.shape[0] == whole._num_layers > 2
    assert read_json(short.cache.dir / "meta.json")["num_layers"] == 2
    assert _ledger_rows(short_out) == _ledger_rows(whole_out)
    for a, b in zip(short_reports, whole_reports):
        assert a.test["ua"] == pytest.approx(b.test["ua"], abs=1e-9)
        np.testing.assert_allclose(a.test["confusion"], b.test["confusion"])
    from safetensors.numpy import load_file

    weights = [load_file(str(out / "rounds" / "round=000" / "train" / "checkpoint" / "model.safetensors"))
               for out in (short_out, whole_out)]
    assert weights[0]["standardizer.mean"].shape == weights[1]["standardizer.mean"].shape
    np.testing.assert_allclose(weights[0]["standardizer.mean"][:2], weights[1]["standardizer.mean"][:2], rtol=1e-5)


def test_budget_larger_than_pool_is_a_config_error(demo_pool, tmp_path):
    from ser_models.exceptions import ConfigError

    cfg = _job_cfg(demo_pool.pool_dir, tmp_path, ["active.budget_fractions=[]", "active.initial_size=5",
                                                  "active.query_size=1000", "active.rounds=3"])
    with pytest.raises(ConfigError, match="budget"):
        _loop(cfg)




@pytest.mark.parametrize("extra", [
    # dimensions alone, greedy sampling in both spaces (iGS), frozen encoder: trains from the feature cache
    ["model.labels=[]", "active.strategy.name=igs", "model.adapter.kind=frozen", "model.pooling=mean"],
    # multi-task through the audio path (LoRA), informative + diverse with the MC-dropout variance of A/V/D
    ["active.strategy.name=informative_diverse", "active.strategy.uncertainty=mc_variance"],
], ids=["dimensions_igs_cached", "multitask_mc_variance_audio"])
def test_regression_loop_on_arousal_valence_dominance(demo_pool, tmp_path, extra):
    """The AL loop on dimensional targets: the oracle hands out A/V/D, the ledger records them, training reads
    them from the ledger only, scoring emits dimensional predictions and MC samples, and each round reports CCC."""
    out = tmp_path / "run"
    dims = ["arousal", "valence", "dominance"]
    cfg = _job_cfg(demo_pool.pool_dir, out, ["model.dimensions=[arousal,valence,dominance]",
                                             "active.scorer.mc_samples=2", "active.budget_fractions=[0.25,0.5]",
                                             "active.initial=random", *extra])
    reports = _loop(cfg).run()
    assert [r.round for r in reports] == [0, 1]
    for r in reports:
        assert -1 <= r.test["ccc"] <= 1 and {f"ccc_{d}" for d in dims} <= set(r.test)
        assert ("ua" in r.test) == bool(cfg.model.labels)
    ledger = LabelLedger(out / "labels" / "ledger.parquet").labelled().set_index("utt_id")
    truth = Pool.open(demo_pool.pool_dir).metadata(columns=["utt_id", "label", *dims], split="train")
    truth = truth.set_index("utt_id").loc[ledger.index]
    pd.testing.assert_frame_equal(ledger[dims], truth[dims])  # the oracle's values, unchanged
    assert ledger["label"].isna().all() if not cfg.model.labels else (ledger["label"] == truth["label"]).all()
    scores = pq.read_table(out / "rounds" / "round=000" / "scores.parquet")
    assert {"dims", "mc_dims"} <= set(scores.column_names)
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert "ccc_valence" in row["test"] and (out / "report" / "learning_curve.png").exists()


def test_auto_strategy_logs_and_keeps_its_choice_each_round(demo_pool, tmp_path, capsys):
    """``active.strategy.name=auto`` over cached features: every query round says which strategy it used and
    why (log line, metrics.jsonl, the round's strategy.json), and a rerun reports the same choices."""
    cfg = _job_cfg(demo_pool.pool_dir, tmp_path, [
        "model.adapter.kind=frozen", "model.pooling=mean", "active.initial=random",
        "active.budget_fractions=[0.5,0.75]", "active.strategy.name=auto",
        "active.strategy.auto_candidates=[random,margin,kcenter]", "active.strategy.auto_min_labelled=12",
        "active.strategy.auto_repeats=3"])
    reports = ActiveLearningLoop(Pool.open(cfg.pool_dir), cfg.output_dir, cfg.model, cfg.train, cfg.scaling,
                                 cfg.active, verbose=True).run()
    printed = capsys.readouterr().out
    rounds = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["labelled"] for r in rounds] == [16, 24]
    for r in rounds[:-1]:  # the rounds that queried
        choice = r["strategy"]
        assert choice["chosen"] in {"random", "margin", "kcenter"}
        assert choice == json.loads((tmp_path / "rounds" / f"round={r['round']:03d}" / "strategy.json").read_text())
        assert f"auto: round {r['round']} picks with {choice['chosen']}" in printed
    assert rounds[-1]["strategy"] is None  # the last round trains and stops
    # 16 labelled clips (>= auto_min_labelled): simulated over every candidate (the fallbacks: unit tests)
    assert set(rounds[0]["strategy"]["simulated_ua"]) == {"random", "margin", "kcenter"}
    # and the verdict: the better of margin and kcenter against random on the same splits, with its interval
    verdict = rounds[0]["strategy"]["verdict"]
    sims = rounds[0]["strategy"]["simulated_ua"]
    assert verdict["strategy"] == max(("margin", "kcenter"), key=sims.get) and verdict["labelled"] == 16
    assert verdict["splits"] <= 3 and verdict["low"] <= verdict["gain"] <= verdict["high"]
    assert f"does selection pay here: {format_verdict(verdict)}" in printed
    chosen = rounds[0]["strategy"]["chosen"]
    named = " " if chosen == verdict["strategy"] else f", {verdict['strategy']} "
    assert f"| auto {chosen}{named}{100 * verdict['gain']:+.1f} [" in printed
    assert [r.strategy for r in _loop(cfg).run()] == [r.strategy for r in reports]  # a rerun: same report


def test_a_run_waiting_for_labels_reports_the_verdict_its_log_printed(demo_pool, tmp_path):
    """At a labelling pause, report/selection.json holds the verdict of the round that asks for labels (the one
    its log has just printed, and its strategy.json), named by that round, though no round has finished yet;
    the finished run keeps it (its last round queries nothing)."""
    manifest = pd.read_csv(demo_pool.manifest)
    truth = dict(zip(manifest["utt_id"], manifest["label"]))
    cfg = _job_cfg(demo_pool.pool_dir, tmp_path, [
        "active.oracle=file", "model.adapter.kind=frozen", "model.pooling=mean", "active.initial=random",
        "active.budget_fractions=[0.5,0.75]", "active.strategy.name=auto",
        "active.strategy.auto_candidates=[random,margin,kcenter]", "active.strategy.auto_min_labelled=12",
        "active.strategy.auto_repeats=3"])

    def fill(csv):
        df = pd.read_csv(csv)
        df["label"] = df["utt_id"].map(truth)
        df.to_csv(csv, index=False)

    with pytest.raises(LabellingPending):
        _loop(cfg).run()
    fill(tmp_path / "rounds" / "initial" / "to_label.csv")
    with pytest.raises(LabellingPending):
        _loop(cfg).run()  # round 0 trains, decides with a verdict and asks for round 1's clips
    assert not (tmp_path / "metrics.jsonl").exists()  # round 0 is not finished: it waits for its labels
    verdict = json.loads((tmp_path / "rounds" / "round=000" / "strategy.json").read_text())["verdict"]
    assert verdict is not None
    paused = json.loads((tmp_path / "report" / "selection.json").read_text())
    assert paused == {"round": 0, "verdict": verdict, "text": format_verdict(verdict)}
    fill(tmp_path / "rounds" / "round=000" / "to_label.csv")
    reports = _loop(cfg).run()
    assert [r.round for r in reports] == [0, 1]
    assert json.loads((tmp_path / "report" / "selection.json").read_text()) == paused


def test_file_oracle_rounds_speak_one_number_and_take_partial_files(demo_pool, tmp_path, capsys):
    """With people filling request files: the round trained on the labels just imported prints its line before
    it asks for the next clips, and the line, the request and its folder give that round one number
    (``round 0`` / ``rounds/round=000``). A partly filled file imports its filled rows, keeps asking for blank
    and refused ones (a typo named by its line and value) and never asks again for a clip marked ``skip``."""
    manifest = pd.read_csv(demo_pool.manifest)
    truth = dict(zip(manifest["utt_id"], manifest["label"]))
    cfg = _job_cfg(demo_pool.pool_dir, tmp_path, ["active.oracle=file", "model.adapter.kind=frozen",
                                                  "model.pooling=mean", "active.initial=random",
                                                  "active.budget_fractions=[0.5,0.75]", "active.strategy.name=margin"])

    def run():
        loop = ActiveLearningLoop(Pool.open(cfg.pool_dir), cfg.output_dir, cfg.model, cfg.train, cfg.scaling,
                                  cfg.active, verbose=True)
        try:
            return loop.run(), None, capsys.readouterr().out
        except LabellingPending as pending:
            return None, str(pending), capsys.readouterr().out

    def fill(csv, cells=None):
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
        df["label"] = [(cells or {}).get(u, truth[u]) for u in df["utt_id"]]
        df.to_csv(csv, index=False)
        return df

    _, asked, _ = run()
    assert asked.startswith("the initial set: 16 clips need labels") and "rounds/initial/to_label.csv" in asked
    fill(tmp_path / "rounds" / "initial" / "to_label.csv")
    _, asked, printed = run()  # imports the initial set, trains round 0, says its line, asks for its picks
    lines = [x for x in printed.splitlines() if x.startswith("round ")]
    assert len(lines) == 1 and lines[0].startswith("round 0 | 16 labels (") and "| +8 |" in lines[0]
    assert len(lines[0]) <= 160
    assert asked.startswith("round 0: 8 clips need labels") and "rounds/round=000/to_label.csv" in asked
    csv = tmp_path / "rounds" / "round=000" / "to_label.csv"
    ids = pd.read_csv(csv, dtype=str)["utt_id"].tolist()
    wrong = ids[2]
    fill(csv, {ids[0]: "skip: two voices", ids[1]: "hapy", **{u: "" for u in ids[5:]}})
    _, asked, printed = run()
    assert "3 rows imported, 3 left blank, 1 skipped, 1 refused" in printed
    assert f"refused: line 3 ({ids[1]!r}): unknown label 'hapy'" in printed
    assert asked.startswith("round 0: 4 clips still need labels") and "3 left blank, 1 refused" in asked
    ledger = LabelLedger(tmp_path / "labels" / "ledger.parquet")
    assert set(ids[2:5]) <= ledger.ids() and not {ids[0], ids[1], *ids[5:]} & ledger.ids()
    fill(csv, {ids[0]: "skip", wrong: "skip"})  # imported and skipped rows are not read again
    reports, asked, printed = run()
    assert asked is None and [r.round for r in reports] == [0, 1]
    ledger = LabelLedger(tmp_path / "labels" / "ledger.parquet")
    assert ledger.labels()[wrong] == truth[wrong] and ids[0] not in ledger.ids()
    assert reports[1].labelled == 16 + 7  # the skipped clip is never asked again, and spent its label
    dropped = pq.read_table(tmp_path / "labels" / "dropped.parquet").to_pandas()
    assert dropped["utt_id"].tolist() == [ids[0]] and dropped["reason"].str.endswith(": two voices").all()
    assert [x.split(" |")[0] for x in printed.splitlines() if x.startswith("round ")] == ["round 0", "round 1"]


def test_rounds_carry_the_labels_forecast(reference_run):
    """Rounds 0 and 1 say plainly that the forecast needs three rounds; round 2 fits the curve to its three dev
    UAs, and report/forecast.json holds the last round's forecast."""
    out, reports = reference_run
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["forecast"]["points"] for r in rows] == [1, 2, 3]
    assert rows[1]["forecast"]["text"] == "needs 3 rounds with a dev UA at different label counts, has 2"
    assert "| forecast: too early |" in reports[1].line()
    last = rows[2]["forecast"]
    assert last["a"] <= 1 and last["b"] >= 0 and last["c"] > 0 and last["current_labels"] == rows[2]["labelled"]
    assert f"| forecast: {forecast_word(last)} |" in reports[2].line()
    assert json.loads((out / "report" / "forecast.json").read_text()) == last

"""jobs.evidence fanned out over Ray tasks on the session's 2-CPU Ray: the same runs.csv rows as the serial loop,
no hang when every CPU runs a simulation, and a resume that reruns only what was not finished."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from ser_models.testing import TRAINED_HEAD_AFTER

pytestmark = [pytest.mark.ray, pytest.mark.slow]

RECIPE = [*TRAINED_HEAD_AFTER, "tapt_enabled=false", "scaling.backend=in_process", "model.encoder.source=tiny-wav2vec2", "model.encoder.normalize_waveform=false",
          "model.adapter.kind=frozen", "model.pooling=mean", "model.featurizer_layer=1", "model.feature_norm=pool",
          "model.head_hidden=0", "model.head_input_norm=false", "train.solver=lbfgs", "train.l2_c=auto",
          "active.initial=random", "active.budget_labels=[8,12]", "active.stopping.stop_set_size=0",
          "evidence.strategies=[margin]", "evidence.seeds=2", "evidence.all_labels=false"]
#: Everything but the timings: what a serial and a fanned-out job must agree on, bit for bit.
COLUMNS = ["strategy", "seed", "round", "labelled", "fraction", "test_ua", "dev_ua"]


def _main(demo_pool, out, *extra):
    from jobs.evidence import main

    return main([f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}", *RECIPE, *extra])


@pytest.mark.slow_e2e
def test_fanned_out_runs_give_the_serial_rows_and_a_rerun_redoes_only_unfinished_runs(ray_local, demo_pool,
                                                                                        tmp_path, capsys):
    from ser_models.runs.simulation import SIMULATION_FILE

    serial = _main(demo_pool, tmp_path / "serial", "evidence.fan_out=false")
    capsys.readouterr()
    cache = f"active.feature_cache_dir={tmp_path / 'serial' / 'feature_cache'}"  # built once, shared by path
    # 2 CPUs, one thread per run: two runs at once take every CPU, and their Ray Data reads still get one.
    fanned = _main(demo_pool, tmp_path / "fan", cache, "evidence.concurrency=0")
    printed = capsys.readouterr().out
    pd.testing.assert_frame_equal(fanned[COLUMNS], serial[COLUMNS])
    assert "fan-out: 4 runs, 2 at a time on 1 node(s)" in printed
    assert printed.count("] seed ") == 4 and "[  4/4]" in printed and "feature cache held in memory" in printed
    assert pd.read_csv(tmp_path / "fan" / "runs.csv")[COLUMNS].equals(pd.read_csv(tmp_path / "serial" / "runs.csv")[COLUMNS])

    # A job killed with one run half done and one not started: the finished runs are read back, the half-done
    # one resumes from its finished round, the missing one runs; the rows are the same.
    runs = tmp_path / "fan" / "runs"
    (runs / "margin_s1" / SIMULATION_FILE).unlink()
    (runs / "margin_s1" / "rounds" / "round=001" / "metrics.json").unlink()
    shutil.rmtree(runs / "random_s1")
    again = _main(demo_pool, tmp_path / "fan", cache)
    printed = capsys.readouterr().out
    assert printed.count("finished earlier") == 2 and printed.count("] seed ") == 4
    assert "fan-out: 2 runs" in printed
    pd.testing.assert_frame_equal(again[COLUMNS], serial[COLUMNS])
    finished = again[again.seed == 0]
    pd.testing.assert_frame_equal(finished, fanned[fanned.seed == 0])  # timings too: read, not rerun


def test_a_fanned_out_job_refuses_a_ray_train_backend(demo_pool, tmp_path):
    from ser_models.exceptions import ConfigError

    with pytest.raises(ConfigError, match="scaling.backend must be 'in_process'"):
        _main(demo_pool, tmp_path / "x", "scaling.backend=ray_train")


@pytest.mark.failure_model
def test_a_killed_fanned_out_job_resumes_without_rerunning_finished_runs(ray_local, demo_pool, tmp_path):
    """SIGKILL the driver (its tasks die with it) once one run has finished; the rerun reads the finished runs,
    resumes the others and ends with the rows of a job that was never killed."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import ray

    from ser_models.runs.simulation import SIMULATION_FILE

    reference = _main(demo_pool, tmp_path / "serial", "evidence.fan_out=false")
    out = tmp_path / "killed"
    argv = [f"pool_dir={demo_pool.pool_dir}", f"output_dir={out}", *RECIPE,
            f"active.feature_cache_dir={tmp_path / 'serial' / 'feature_cache'}"]
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}  # the session's Ray: no cold start
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "jobs.evidence", *argv], cwd=Path(__file__).parents[2],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        deadline = time.monotonic() + 300
        while not list((out / "runs").glob(f"*/{SIMULATION_FILE}")):
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "runs.csv").exists()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob(f"*/{SIMULATION_FILE}")}
    assert 1 <= len(finished) < 4

    resumed = _main(demo_pool, out, *argv[2 + len(RECIPE):])
    pd.testing.assert_frame_equal(resumed[COLUMNS], reference[COLUMNS])
    for run, mtime in finished.items():  # nothing finished ran again
        assert (out / "runs" / run / SIMULATION_FILE).stat().st_mtime_ns == mtime

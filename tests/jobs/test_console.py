"""A job's console holds the job's own lines: Ray's banner, INFO lines, native log lines and workers' stderr stay
out unless ``--verbose`` (ser_models.console)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ser_models.console import NATIVE_LINE, RAY_LINE, keep_forwarded

REPO = Path(__file__).resolve().parents[2]


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SER_RAY_CONSOLE")}
    env["PYTHONPATH"] = str(REPO)
    return env


def test_native_lines_are_dropped_and_everything_else_passes(tmp_path):
    """A process with the filter: Ray-format native lines written to fd 2 are gone, other native writes and
    Python's own stderr (an error line, a traceback) reach the terminal, in full, even at exit."""
    script = (
        "import os, sys\n"
        "from ser_models import console\n"
        "console._filter_native_stderr()\n"
        "os.write(2, b'[2026-11-27 03:38:32,180 E 26006 26006] core_worker.cc:2465: Actor with class name\\n')\n"
        "os.write(2, b'native but ours\\n')\n"
        "print('error: ConfigError: a key', file=sys.stderr)\n"
        "raise SystemExit('last words')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 1
    assert "core_worker" not in proc.stderr
    assert "native but ours" in proc.stderr and "error: ConfigError: a key" in proc.stderr
    assert proc.stderr.rstrip().endswith("last words")


def test_forwarded_worker_lines_keep_stdout_and_drop_stderr():
    assert keep_forwarded({"is_err": False, "lines": ["epoch 1: train loss 1.2"]})
    assert not keep_forwarded({"is_err": True, "lines": ["Warning: The Ray cluster currently does not have any "
                                                         "available CPUs."]})
    assert NATIVE_LINE.match(b"[2026-11-27 03:38:32,180 W 1 2] raylet.cc:1: x\n")
    assert not NATIVE_LINE.match(b"[ 3/40] seed 2   auto   test UA 0.61\n")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("console")
    subprocess.run([sys.executable, "-m", "jobs.make_demo_archive", str(root / "archive"), "--episodes", "1", "--calls",
                    "1", "--episode-minutes", "1", "1", "--call-minutes", "1", "1", "--workers", "1"],
                   cwd=REPO, env=_env(), check=True, capture_output=True, timeout=300)
    return root / "archive"


def _segment(archive: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.segment", "jobs/configs/segment_demo.yaml",
                           f"recordings={archive / 'recordings.csv'}", f"annotations={archive / 'truth.csv'}",
                           f"output_dir={out}", "num_workers=1", *flags],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.slow_e2e  # a whole job run of 30 s or more on 2 cores: make test-e2e
def test_a_job_prints_only_its_own_lines_and_nothing_after_its_last(archive, tmp_path):
    """jobs.segment starts a local Ray, runs a Ray Data actor pool (whose start makes Ray log a native error
    line on every run) and ends: every console line is the job's, the summary line is the last (the same job
    with ``--verbose`` shows Ray's lines: ``test_verbose_brings_rays_lines_back``)."""
    proc = _segment(archive, tmp_path / "quiet")
    assert proc.returncode == 0, proc.stderr
    lines = (proc.stdout + proc.stderr).splitlines()
    assert not [line for line in lines if RAY_LINE.search(line)], lines
    assert proc.stderr.strip() == ""
    assert proc.stdout.splitlines()[-1].startswith("segments: ")


@pytest.mark.slow_e2e
def test_verbose_brings_rays_lines_back(archive, tmp_path):
    """The same job with ``--verbose``: Ray's own lines are there (so the quiet run's filter is what hid them)."""
    loud = _segment(archive, tmp_path / "loud", "--verbose")
    assert loud.returncode == 0, loud.stderr
    assert [line for line in (loud.stdout + loud.stderr).splitlines() if RAY_LINE.search(line)]


def test_ray_datas_notices_that_are_not_the_jobs_stay_out_unless_verbose(monkeypatch):
    import logging

    from ser_models.runtime import _keep_data_notice

    def record(msg):
        return logging.LogRecord("ray.data.dataset", logging.WARNING, "dataset.py", 1, msg, None, None)

    no_cpus = record("Warning: The Ray cluster currently does not have any available CPUs. The Dataset job will hang")
    monkeypatch.delenv("SER_RAY_CONSOLE", raising=False)
    assert not _keep_data_notice(no_cpus)
    assert not _keep_data_notice(record("Progress bars disabled. To enable, set ..."))
    assert _keep_data_notice(record("Failed to read a block of s3://bucket/pool/part-1.parquet"))
    monkeypatch.setenv("SER_RAY_CONSOLE", "1")
    assert _keep_data_notice(no_cpus)


def test_a_forked_child_writes_its_stderr_without_waiting_for_a_pump_it_lacks(tmp_path):
    """A fork (a DataLoader worker) inherits the filtered stderr but not the thread that drains it: its
    Python writes go straight out and send no mark (a mark nobody reads would stall each write)."""
    script = (
        "import os, sys\n"
        "from ser_models import console\n"
        "console._filter_native_stderr()\n"
        "print('parent first', file=sys.stderr)\n"
        "sent = sys.stderr._order.sent\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    for i in range(3):\n"
        "        print(f'child line {i}', file=sys.stderr)\n"
        "    print(f'child marks {sys.stderr._order.sent - sent}', file=sys.stderr)\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print('parent done', file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "child marks 0" in proc.stderr and "child line 2" in proc.stderr
    assert proc.stderr.startswith("parent first") and proc.stderr.rstrip().endswith("parent done")

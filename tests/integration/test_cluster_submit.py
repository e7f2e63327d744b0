"""End to end through platform/submit.sh against a REAL local Ray cluster started with `ray start --head`.

The cluster is separate from the test session's own Ray instance (`ray_local`): every port, the temp dir,
HOME and the auth token are its own, and it is stopped by killing its process group, never with
`ray stop` (which kills every Ray process on the machine). Token auth stays ON: the test checks that the
job API refuses a request without the token before it submits anything.

The job configs are young; the names and keys this test relies on are the constants below.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.failure_model]

ROOT = Path(__file__).resolve().parents[2]
SUBMIT = ROOT / "platform" / "submit.sh"

# ---- what the jobs are expected to accept and produce (adjust here when the job configs change) ----------
DEMO_POOL_JOB = "make_demo_pool"  # python -m jobs.make_demo_pool OUT_DIR --n N --seed S
DEMO_N = 48
DEMO_MANIFEST = "manifest.csv"  # written by make_demo_pool into OUT_DIR
PREPARE_JOB = "prepare_pool"
PREPARE_CONFIG = "jobs/configs/prepare_pool_smoke.yaml"
PREPARE_MANIFEST_KEY = "manifest"
PREPARE_ARTIFACTS = ["summary.json"]  # docs/ARCHITECTURE.md, "Prepared pool on disk"
FINETUNE_JOB = "finetune"
FINETUNE_CONFIG = "jobs/configs/finetune_smoke.yaml"
FINETUNE_POOL_KEY = "pool_dir"
FINETUNE_ARTIFACTS = ["metrics.json", "confusion.png"]
OUTPUT_KEY = "output_dir"

START_TIMEOUT_S = 120
JOB_TIMEOUT_S = 600


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            if s.getsockname()[1] not in ports:
                ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _free_port_range(width: int) -> tuple[int, int]:
    """A block of `width` consecutive free ports for Ray's worker processes."""
    rng = secrets.SystemRandom()
    for _ in range(200):
        base = rng.randrange(20000, 30000 - width)
        socks = []
        try:
            for port in range(base, base + width):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base, base + width - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range for Ray workers")


def _http_status(url: str, token: str | None) -> int:
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0  # nothing listening yet


def _kill_group(proc: subprocess.Popen, timeout: float = 10) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    # `ray start --block` tears its children down on SIGTERM; whatever is left in the group goes now.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def _pids_mentioning(needle: str) -> list[int]:
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return [p for p in pids if p != os.getpid()]


class LocalCluster:
    """A `ray start --head --block` process group on loopback with its own ports, HOME and token."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        # Unix socket paths under temp-dir are limited to ~107 bytes: keep it short.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
        self.token = secrets.token_hex(24)
        home = workdir / "home"
        home.mkdir()
        token_file = workdir / "auth_token"
        token_file.write_text(self.token)
        token_file.chmod(0o600)
        (
            gcs,
            dashboard,
            client,
            agent_http,
            agent_grpc,
            metrics,
            runtime_env,
            node_manager,
            object_manager,
        ) = _free_ports(9)
        low, high = _free_port_range(40)
        self.dashboard_url = f"http://127.0.0.1:{dashboard}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(
            HOME=str(home),  # nothing of this cluster lands in the user's ~/.ray
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(token_file),
            # Job drivers run `python -m jobs...` from the raylet's PATH: it must be this venv's python.
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
        )
        self.env = env
        ray_bin = Path(sys.executable).parent / "ray"
        cmd = [
            str(ray_bin),
            "start",
            "--head",
            "--block",
            "--disable-usage-stats",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--ray-client-server-port={client}",
            f"--dashboard-agent-listen-port={agent_http}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--metrics-export-port={metrics}",
            f"--runtime-env-agent-port={runtime_env}",
            f"--node-manager-port={node_manager}",
            f"--object-manager-port={object_manager}",
            f"--min-worker-port={low}",
            f"--max-worker-port={high}",
            "--num-cpus=2",
            f"--temp-dir={self.temp_dir}",
        ]
        self.log_path = workdir / "ray_start.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.proc.returncode}:\n{self.log_tail()}")
            if _http_status(f"{self.dashboard_url}/api/jobs/", self.token) == 200:
                return
            time.sleep(1)
        raise TimeoutError(
            f"dashboard at {self.dashboard_url} not up in {START_TIMEOUT_S}s:\n{self.log_tail()}"
        )

    def submit(self, *args: str) -> subprocess.CompletedProcess:
        # The client side gets only the token path: submit.sh must switch on token mode by itself.
        env = {k: v for k, v in self.env.items() if k != "RAY_AUTH_MODE"}
        return subprocess.run(
            ["bash", str(SUBMIT), "--address", self.dashboard_url, *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=JOB_TIMEOUT_S,
        )

    def log_tail(self, n: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_text()[-n:]

    def stop(self) -> None:
        _kill_group(self.proc)
        self._log.close()
        # Anything that left the process group (Ray daemonises a few helpers) is still recognisable by
        # our private temp dir on its command line: end those by pid, never by name.
        for pid in _pids_mentioning(str(self.temp_dir)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["rm", "-rf", str(self.temp_dir)], check=False)


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory):
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.stop()


def _require_jobs(*jobs_and_configs: str) -> None:
    """Fail (never skip) on a job or config the repo no longer ships: a rename must update the constants above."""
    missing = [p for p in jobs_and_configs if not (ROOT / p).is_file()]
    assert not missing, f"the repo ships no {missing}: renamed? update the constants at the top of this file"


def _assert_succeeded(proc: subprocess.CompletedProcess, what: str) -> None:
    assert proc.returncode == 0, (
        f"{what} failed (rc {proc.returncode})\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    )
    assert "succeeded" in proc.stdout.lower(), proc.stdout[-3000:]


def test_job_api_requires_the_token(local_cluster):
    assert _http_status(f"{local_cluster.dashboard_url}/api/jobs/", None) == 401
    assert _http_status(f"{local_cluster.dashboard_url}/api/jobs/", "not-the-token") == 403
    assert _http_status(f"{local_cluster.dashboard_url}/api/jobs/", local_cluster.token) == 200


def test_submit_prepare_pool_then_finetune_smoke(local_cluster, tmp_path):
    _require_jobs(
        f"jobs/{DEMO_POOL_JOB}.py",
        f"jobs/{PREPARE_JOB}.py",
        PREPARE_CONFIG,
        f"jobs/{FINETUNE_JOB}.py",
        FINETUNE_CONFIG,
    )
    corpus, pool, ft = tmp_path / "corpus", tmp_path / "pool", tmp_path / "ft"
    # Three real jobs through submit.sh: argument pass-through ("--" then the job's own flags), working_dir
    # upload and token auth on the first; config + dotted overrides on the next two.
    proc = local_cluster.submit(DEMO_POOL_JOB, "--", str(corpus), "--n", str(DEMO_N), "--seed", "0")
    _assert_succeeded(proc, DEMO_POOL_JOB)
    assert (corpus / DEMO_MANIFEST).is_file()

    proc = local_cluster.submit(
        PREPARE_JOB,
        PREPARE_CONFIG,
        f"{PREPARE_MANIFEST_KEY}={corpus / DEMO_MANIFEST}",
        f"{OUTPUT_KEY}={pool}",
    )
    _assert_succeeded(proc, PREPARE_JOB)
    for name in PREPARE_ARTIFACTS:
        assert (pool / name).exists(), f"{PREPARE_JOB} did not write {pool / name}"
    build = json.loads((pool / "summary.json").read_text())["build"]  # summary.json names the build folder
    assert (pool / build / "data").is_dir(), f"{PREPARE_JOB} did not write {pool / build / 'data'}"

    proc = local_cluster.submit(
        FINETUNE_JOB, FINETUNE_CONFIG, f"{FINETUNE_POOL_KEY}={pool}", f"{OUTPUT_KEY}={ft}",
        "train.optim.epochs=1",  # the submission path is under test here; epochs are tested in test_finetune
    )
    _assert_succeeded(proc, FINETUNE_JOB)
    for name in FINETUNE_ARTIFACTS:
        assert (ft / name).is_file(), f"{FINETUNE_JOB} did not write {ft / name}"

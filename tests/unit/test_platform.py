"""Checks of the deployment files in platform/ (no Ray cluster, no network).

platform/ holds no Python on purpose (DESIGN.md section 2): a package named ``platform`` would shadow the
standard library module on every Ray worker, where the repository root is first on ``PYTHONPATH``. The
YAML files are checked for the keys that make them work and for the security defaults the team agreed on
(token auth on, dashboards on 127.0.0.1 where nothing else needs to reach them).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "platform"
SUBMIT = PLATFORM / "submit.sh"
RAYJOBS = ["kuberay/rayjob-finetune.yaml", "kuberay/rayjob-after.yaml", "kuberay/rayjob-sweep.yaml"]
# Where platform/Dockerfile puts the repository copy that the RayJobs use as working_dir.
IMAGE_SOURCE_DIR = "/opt/ser"


def _load_all(rel: str) -> list[dict]:
    with open(PLATFORM / rel) as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def _load(rel: str) -> dict:
    docs = _load_all(rel)
    assert len(docs) == 1, f"platform/{rel}: expected one YAML document, got {len(docs)}"
    return docs[0]


def _ray_version() -> str:
    return importlib.metadata.version("ray")


def _ray_package_dir() -> Path:
    # find_spec of a top-level package does not import it (importing ray costs a second or more).
    spec = importlib.util.find_spec("ray")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


# --------------------------------------------------------------------------------------------------------
# The stdlib-shadowing guard


def test_platform_folder_holds_no_python():
    offenders = [
        p.relative_to(ROOT).as_posix()
        for p in PLATFORM.rglob("*")
        if p.suffix in {".py", ".pyc", ".pyi", ".so"} or p.name == "__pycache__"
    ]
    assert offenders == [], f"platform/ must hold no Python (it would shadow stdlib 'platform'): {offenders}"


def test_stdlib_platform_importable_with_repo_root_first_on_path():
    """What a Ray worker with `--working-dir .` does: repo root first on PYTHONPATH, then torch."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = "import platform, uuid, torch; print(platform.system()); print(platform.__file__)"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    system, module_file = proc.stdout.split()[-2:]
    import platform as stdlib_platform

    assert system == stdlib_platform.system()
    assert not Path(module_file).resolve().is_relative_to(ROOT), module_file


# --------------------------------------------------------------------------------------------------------
# Every YAML parses; nothing turns token auth off


def test_every_yaml_in_platform_parses():
    files = sorted(PLATFORM.rglob("*.yaml")) + sorted(PLATFORM.rglob("*.yml"))
    assert {p.relative_to(PLATFORM).as_posix() for p in files} >= {
        "runtime_env.yaml",
        "cluster.yaml",
        "kuberay/raycluster.yaml",
        *RAYJOBS,
    }
    for path in files:
        docs = _load_all(str(path.relative_to(PLATFORM)))
        assert docs, f"{path} is empty"
        assert all(isinstance(d, dict) for d in docs), f"{path}: every document must be a mapping"


_AUTH_OFF = [
    re.compile(r"RAY_AUTH_MODE\s*[=:]\s*['\"]?(?!token\b)\w+", re.IGNORECASE),
    re.compile(r"\bmode\s*:\s*['\"]?disabled", re.IGNORECASE),
    re.compile(r"name:\s*RAY_AUTH_MODE\s*\n\s*value:\s*['\"]?(?!token\b)\w+", re.IGNORECASE),
    re.compile(r"enable_?token_?auth\w*\s*[=:]\s*['\"]?false", re.IGNORECASE),
]


def test_no_file_in_platform_turns_token_auth_off():
    for path in sorted(p for p in PLATFORM.rglob("*") if p.is_file()):
        text = path.read_text()
        for pattern in _AUTH_OFF:
            match = pattern.search(text)
            assert match is None, f"{path.relative_to(ROOT)} turns token auth off: {match.group(0)!r}"


@pytest.mark.parametrize(
    "line",
    [
        "export RAY_AUTH_MODE=disabled",
        "  - --env RAY_AUTH_MODE=disabled",
        "authOptions:\n  mode: disabled",
        "- name: RAY_AUTH_MODE\n  value: disabled",
    ],
)
def test_auth_off_patterns_catch_known_spellings(line):
    # Guards the guard: the scan above must recognise the ways a config could switch auth off.
    assert any(p.search(line) for p in _AUTH_OFF)
    assert not any(p.search(line.replace("disabled", "token")) for p in _AUTH_OFF)


# --------------------------------------------------------------------------------------------------------
# cluster.yaml (Ray cluster launcher)


def test_cluster_yaml_is_valid_for_the_installed_ray_launcher():
    import jsonschema

    schema = json.loads((_ray_package_dir() / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(_load("cluster.yaml"), schema)


def test_cluster_yaml_node_types():
    cfg = _load("cluster.yaml")
    assert cfg["cluster_name"]
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    workers = {name: t for name, t in types.items() if name != cfg["head_node_type"]}
    gpu = [name for name, t in workers.items() if t["resources"].get("GPU", 0) >= 1]
    cpu = [name for name, t in workers.items() if t["resources"].get("GPU", 0) == 0]
    assert gpu, "cluster.yaml needs a GPU worker type (resources: GPU >= 1)"
    assert cpu, "cluster.yaml needs a CPU worker type for pool preparation and scoring"
    for name, t in workers.items():
        assert 0 <= t["min_workers"] <= t["max_workers"] <= cfg["max_workers"], name
    # Placeholders are UPPER_CASE words, never a concrete account, subnet or key.
    text = (PLATFORM / "cluster.yaml").read_text()
    assert not re.search(r"\bsubnet-[0-9a-f]{8,}\b|\bami-[0-9a-f]{8,}\b|\b\d{12}\.dkr\.ecr\b", text)
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key", text, re.IGNORECASE)


def test_cluster_yaml_start_commands_keep_dashboard_local_and_auth_on():
    cfg = _load("cluster.yaml")
    head = " ".join(cfg["head_start_ray_commands"])
    workers = " ".join(cfg["worker_start_ray_commands"])
    head_start = [c for c in cfg["head_start_ray_commands"] if "ray start" in c]
    assert head_start, "head_start_ray_commands must run `ray start --head`"
    assert "--head" in head_start[0]
    assert "--dashboard-host=127.0.0.1" in head, head
    assert "0.0.0.0" not in head
    # `ray start` enables token mode only when a token is found; forcing it makes a missing token fatal.
    for cmds in (head, workers):
        assert "RAY_AUTH_MODE=token" in cmds
    # The token reaches each node by file mount, at Ray's default path for the image's user.
    assert any(remote.endswith("/.ray/auth_token") for remote in cfg["file_mounts"])


# --------------------------------------------------------------------------------------------------------
# KubeRay manifests


def _head_container(cluster_spec: dict) -> dict:
    return cluster_spec["headGroupSpec"]["template"]["spec"]["containers"][0]


def _assert_gpu_group(cluster_spec: dict) -> None:
    limits = [
        c.get("resources", {}).get("limits", {})
        for g in cluster_spec["workerGroupSpecs"]
        for c in g["template"]["spec"]["containers"]
    ]
    assert any(int(lim.get("nvidia.com/gpu", 0)) >= 1 for lim in limits), "no worker group asks for a GPU"
    for g in cluster_spec["workerGroupSpecs"]:
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], g["groupName"]


def _assert_cluster_security(cluster_spec: dict, where: str) -> None:
    assert cluster_spec["authOptions"]["mode"] == "token", where
    assert cluster_spec["rayVersion"] == _ray_version(), f"{where}: rayVersion must match the pinned Ray"


def test_raycluster_manifest():
    docs = _load_all("kuberay/raycluster.yaml")
    (cluster,) = [d for d in docs if d["kind"] == "RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    _assert_cluster_security(spec, "raycluster.yaml")
    _assert_gpu_group(spec)
    assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    used = {
        v["persistentVolumeClaim"]["claimName"]
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for v in group["template"]["spec"].get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    assert used and used <= claims, f"claims used {used}, defined {claims}"


@pytest.mark.parametrize("rel", RAYJOBS)
def test_rayjob_manifest(rel):
    job = _load(rel)
    assert job["apiVersion"] == "ray.io/v1"
    assert job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] >= 0
    _assert_cluster_security(spec["rayClusterSpec"], rel)
    _assert_gpu_group(spec["rayClusterSpec"])

    # the installed command with a shipped recipe by name: `ser-models JOB --config NAME key=value ...`
    entry = shlex.split(spec["entrypoint"])
    assert entry[0] == "ser-models" and entry[2] == "--config", spec["entrypoint"]
    from ser_models.catalog.recipes import find_recipe
    from ser_models.cli.command import JOBS

    module = entry[1].replace("-", "_")
    assert entry[1] in JOBS, f"{rel}: no job {entry[1]!r}"
    config = find_recipe(entry[3], module)  # a recipe of this job
    overrides = dict(arg.split("=", 1) for arg in entry[4:])

    from ser_models.config import load_config

    mod, cls = JOBS[entry[1]].schema.split(":")
    job_cfg = load_config(getattr(importlib.import_module(mod), cls), config, entry[4:])  # valid keys and values
    if module == "sweep":
        from ser_models.tune.sweep import plan_sweep

        plan_sweep(job_cfg, check_pool=False)  # its search still names keys of the base job

    # output_dir must land on a volume mounted in the head pod (the driver writes the report there).
    mounts = [m["mountPath"] for m in _head_container(spec["rayClusterSpec"]).get("volumeMounts", [])]
    out = overrides["output_dir"]
    assert out.startswith("s3://") or any(out.startswith(m.rstrip("/") + "/") for m in mounts), (out, mounts)

    # The recipes' relative paths resolve against working_dir, which must be the image's repository copy.
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"] == IMAGE_SOURCE_DIR
    dockerfile = (PLATFORM / "Dockerfile").read_text()
    assert re.search(rf"^WORKDIR {re.escape(IMAGE_SOURCE_DIR)}$", dockerfile, re.MULTILINE)


# --------------------------------------------------------------------------------------------------------
# runtime_env.yaml


def test_runtime_env_yaml():
    env = _load("runtime_env.yaml")
    assert set(env) <= {"excludes", "env_vars", "pip", "working_dir"}
    assert "pip" not in env, "the image holds the dependencies; a pip section reinstalls them per job"
    stripped = {e.strip("/") for e in env["excludes"]}
    assert {".venv", "outputs", ".git", "bench/data", "*.wav", "*.flac", "*.parquet"} <= stripped
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in env["env_vars"].items())
    # Ray sets OMP_NUM_THREADS per worker from num_cpus; a fixed value would override it everywhere.
    assert "OMP_NUM_THREADS" not in env["env_vars"]


def test_runtime_env_excludes_match_what_ray_uploads():
    from ray._private.thirdparty.pathspec import PathSpec  # what Ray's packaging uses

    spec = PathSpec.from_lines("gitwildmatch", _load("runtime_env.yaml")["excludes"])
    for dropped in [
        ".venv/lib/python3.11/site-packages/torch/__init__.py",
        "outputs/demo/pool/x.parquet",
        "bench/data/a.flac",
        "jobs/configs/tmp/clip.wav",
        ".git/HEAD",
    ]:
        assert spec.match_file(dropped), dropped
    for kept in [
        "ser_models/__init__.py",
        "jobs/finetune.py",
        "jobs/configs/finetune_demo.yaml",
        "platform/runtime_env.yaml",
        "pyproject.toml",
    ]:
        assert not spec.match_file(kept), kept


# --------------------------------------------------------------------------------------------------------
# Dockerfile (static: no Docker daemon in tests)


def test_dockerfile():
    text = (PLATFORM / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert "ARG BASE=python:3.11-slim" in lines
    assert lines.index("ARG BASE=python:3.11-slim") < lines.index("FROM ${BASE}")
    assert any(ln.startswith("ARG TORCH_SPEC=") for ln in lines)
    assert any(ln.startswith("ARG TORCH_INDEX_URL=") for ln in lines)
    assert "libsndfile1" in text
    torch_at = next(i for i, ln in enumerate(lines) if '--index-url "${TORCH_INDEX_URL}"' in ln)
    project_at = next(i for i, ln in enumerate(lines) if re.search(r"pip wheel .*--wheel-dir /tmp/wheels \.", ln))
    assert torch_at < project_at, "torch must be installed (pinned) before the project"
    # the image installs the built wheel (the library, its recipes, the command), not the source tree
    assert "pip install /tmp/wheels/ser_models-*.whl" in text and "ser-models --version" in text
    for src in re.findall(r"^COPY (.+) \S+$", text, re.MULTILINE):
        for item in src.split():
            assert (ROOT / item).exists(), f"Dockerfile copies {item}, which is not in the repository"
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}, "the image must end as a non-root user"
    assert re.search(r"HF_HOME=/\S+", text)
    assert not re.search(r"HF_HUB_OFFLINE\s*=\s*1", text), (
        "users bring their own weights: do not force offline"
    )


# --------------------------------------------------------------------------------------------------------
# submit.sh


def _submit(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SUBMIT), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def _some_job() -> str:
    jobs = sorted(p.stem for p in (ROOT / "jobs").glob("*.py") if p.stem != "__init__")
    if not jobs:
        pytest.skip("no job module in jobs/ yet")
    return jobs[0]


def test_submit_sh_syntax_and_help():
    assert subprocess.run(["bash", "-n", str(SUBMIT)], capture_output=True).returncode == 0
    assert os.access(SUBMIT, os.X_OK), "platform/submit.sh must be executable"
    proc = _submit("--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: platform/submit.sh")
    assert "--working-dir . --runtime-env platform/runtime_env.yaml" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no_such_job", "jobs/configs/x.yaml"], "unknown job 'no_such_job'"),
        (["Finetune;rm", "x.yaml"], "must match ^[a-z_-]+$"),
        (["../jobs/finetune", "x.yaml"], "must match ^[a-z_-]+$"),
        ([], "missing JOB"),
        (["--bogus", "finetune"], "unknown option '--bogus'"),
    ],
)
def test_submit_sh_rejects_bad_input(args, message):
    proc = _submit(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "ray job submit" not in proc.stdout


def test_submit_sh_rejects_missing_or_outside_config(tmp_path):
    job = _some_job()
    proc = _submit(job, "jobs/configs/does_not_exist.yaml")
    assert proc.returncode == 2 and "does_not_exist.yaml' does not exist" in proc.stderr
    outside = tmp_path / "c.yaml"
    outside.write_text("a: 1\n")
    proc = _submit(job, str(outside))
    assert proc.returncode == 2 and "outside the repository" in proc.stderr
    proc = _submit(job, "platform/runtime_env.yaml", "not_an_override")
    assert proc.returncode == 2 and "must look like key.sub=value" in proc.stderr


def _fake_ray(tmp_path: Path) -> Path:
    """A stand-in `ray` that records its argv and auth mode (the real CLI is exercised in integration)."""
    fake = tmp_path / "ray"
    fake.write_text(
        '#!/usr/bin/env bash\nprintf "%s\\n" "$PWD" "auth=${RAY_AUTH_MODE:-}" "$@" > "$FAKE_RAY_LOG"\n'
    )
    fake.chmod(0o755)
    return fake


def test_submit_sh_builds_the_ray_command_from_any_directory(tmp_path):
    job = _some_job()
    log = tmp_path / "argv"
    env = {
        "RAY_BIN": str(_fake_ray(tmp_path)),
        "FAKE_RAY_LOG": str(log),
        "RAY_ADDRESS": "http://h:1",
        "RAY_AUTH_MODE": "",
        "RAY_AUTH_TOKEN": "",
        "RAY_AUTH_TOKEN_PATH": "",
        "HOME": str(tmp_path),
    }
    # Called from platform/ with a config path relative to there: the job still gets a repo-relative path.
    proc = _submit(
        "--no-wait", job, "runtime_env.yaml", "a.b=1", "output_dir=s3://x/y", cwd=PLATFORM, env=env
    )
    assert proc.returncode == 0, proc.stderr
    cwd, auth, *argv = log.read_text().splitlines()
    assert Path(cwd).resolve() == ROOT
    assert auth == "auth="  # no token anywhere: nothing switched on behind the user's back
    assert argv == [
        "job",
        "submit",
        "--address",
        "http://h:1",
        "--working-dir",
        ".",
        "--runtime-env",
        "platform/runtime_env.yaml",
        "--no-wait",
        "--submission-id",
        argv[10],
        "--",
        "python",
        "-m",
        "ser_models",
        job.replace("_", "-"),
        "platform/runtime_env.yaml",
        "a.b=1",
        "output_dir=s3://x/y",
    ]
    assert re.fullmatch(rf"ser-{job.replace('_', '-')}-\d{{8}}-\d{{6}}-\d+", argv[10])  # a named job, so it can be followed
    assert "job submit" in proc.stdout  # the command is echoed before it runs


def test_submit_sh_passthrough_address_flag_and_token_mode(tmp_path):
    job = _some_job()
    log = tmp_path / "argv"
    token_file = tmp_path / "tok"
    token_file.write_text("abc")
    env = {
        "RAY_BIN": str(_fake_ray(tmp_path)),
        "FAKE_RAY_LOG": str(log),
        "RAY_AUTH_MODE": "",
        "RAY_AUTH_TOKEN": "",
        "RAY_AUTH_TOKEN_PATH": str(token_file),
        "HOME": str(tmp_path),
    }
    proc = _submit("--address", "http://127.0.0.1:9", "--no-wait", "--submission-id", "my-id", job, "--",
                   "/tmp/out dir", "--n", "8", env=env)
    assert proc.returncode == 0, proc.stderr
    _, auth, *argv = log.read_text().splitlines()
    assert auth == "auth=token"  # a token is available, so `ray job submit` must send it
    assert argv[2:4] == ["--address", "http://127.0.0.1:9"]
    assert argv[argv.index("--no-wait"):argv.index("--")] == ["--no-wait", "--submission-id", "my-id"]
    assert argv[argv.index("--") :] == ["--", "python", "-m", "ser_models", job.replace("_", "-"), "/tmp/out dir",
                                        "--n", "8"]


def _flaky_ray(tmp_path: Path, message: str, failures: int) -> Path:
    """A stand-in `ray` whose first ``failures`` calls fail with ``message`` (a head whose job agent has not
    registered yet answers HTTP 500 "No available agent ..."); counts its calls in ``$FAKE_RAY_LOG``."""
    fake = tmp_path / "ray"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'echo call >> "$FAKE_RAY_LOG"\n'
        f'if [[ $(wc -l < "$FAKE_RAY_LOG") -le {failures} ]]; then echo "RuntimeError: {message}" >&2; exit 1; fi\n'
        'echo "Job submitted"\n'
    )
    fake.chmod(0o755)
    return fake


@pytest.mark.parametrize("message, failures, rc, calls", [
    ("Request failed with status code 500: No available agent to submit job, please try again later..", 2, 0, 3),
    ("Request failed with status code 401: Unauthorized", 1, 1, 1),
])
def test_submit_sh_resubmits_only_while_the_job_agent_is_not_up(tmp_path, message, failures, rc, calls):
    log = tmp_path / "calls"
    env = {"RAY_BIN": str(_flaky_ray(tmp_path, message, failures)), "FAKE_RAY_LOG": str(log),
           "RAY_AUTH_MODE": "", "RAY_AUTH_TOKEN": "", "RAY_AUTH_TOKEN_PATH": "", "HOME": str(tmp_path)}
    proc = _submit("--no-wait", _some_job(), "--", "x", env=env)
    assert proc.returncode == rc, proc.stderr
    assert len(log.read_text().splitlines()) == calls
    if rc == 0:
        assert "Job submitted" in proc.stdout and "job agent is not up yet" in proc.stderr
    else:
        assert "401" in proc.stderr and "not up yet" not in proc.stderr

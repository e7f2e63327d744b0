"""Security properties of the deployment files in platform/, read from the parsed YAML (no cluster needed):

- every pod of every KubeRay manifest runs as the image's non-root user, with ``fsGroup``, no privilege
  escalation and no Linux capabilities; so do the cluster launcher's containers;
- the Label Studio token reaches the job driver from a Kubernetes Secret (``secretKeyRef``), and no secret-like
  variable is written into a manifest;
- the Ray dashboard and job API never leave the cluster: ClusterIP head Services only, no LoadBalancer,
  NodePort, ingress, host network or host port.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ser_models.labelling.config import LabelStudioConfig

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "platform"
KUBERAY = sorted(p.relative_to(PLATFORM).as_posix() for p in (PLATFORM / "kuberay").glob("*.yaml"))
RAYJOBS = [rel for rel in KUBERAY if "rayjob-" in rel]
#: Manifests whose job driver may run the Label Studio oracle (jobs.after).
LABEL_STUDIO_MANIFESTS = ["kuberay/raycluster.yaml", "kuberay/rayjob-after.yaml"]
LABEL_STUDIO_ENV = LabelStudioConfig().api_key_env
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|API_KEY|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)


def _docs(rel: str) -> list[dict]:
    with open(PLATFORM / rel) as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def _image_uid() -> int:
    """The uid platform/Dockerfile's final USER resolves to (its ARG defaults substituted)."""
    text = (PLATFORM / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    user = re.findall(r"^USER (\S+)$", text, re.MULTILINE)[-1]
    resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], user).split(":")[0]
    assert resolved.isdigit(), f"Dockerfile USER {user!r} must be numeric so runAsNonRoot can verify it"
    return int(resolved)


def _walk(node, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every mapping in a parsed YAML tree, with its path."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def _pod_specs(doc: dict) -> list[tuple[str, dict]]:
    return [(path, node) for path, node in _walk(doc) if isinstance(node.get("containers"), list)]


def _head(cluster_spec: dict) -> dict:
    return cluster_spec["headGroupSpec"]["template"]["spec"]["containers"][0]


def _cluster_specs(rel: str) -> list[dict]:
    out = []
    for doc in _docs(rel):
        if doc.get("kind") == "RayCluster":
            out.append(doc["spec"])
        elif doc.get("kind") == "RayJob":
            out.append(doc["spec"]["rayClusterSpec"])
    return out


def test_the_manifests_are_found():
    assert "kuberay/raycluster.yaml" in KUBERAY and len(RAYJOBS) >= 3, KUBERAY


@pytest.mark.parametrize("rel", KUBERAY)
def test_every_pod_runs_as_non_root_without_privileges(rel):
    uid = _image_uid()
    pods = [(f"{rel}{path}", spec) for doc in _docs(rel) for path, spec in _pod_specs(doc)]
    groups = sum(1 + len(c["workerGroupSpecs"]) for c in _cluster_specs(rel))
    assert len(pods) >= groups, f"{rel}: found {len(pods)} pod templates for {groups} Ray groups"
    for where, spec in pods:
        pod = spec.get("securityContext") or {}
        assert pod.get("runAsNonRoot") is True, f"{where}: securityContext.runAsNonRoot must be true"
        assert pod.get("runAsUser") == uid, f"{where}: runAsUser must be the image's uid {uid}"
        assert isinstance(pod.get("fsGroup"), int) and pod["fsGroup"] != 0, f"{where}: needs a non-root fsGroup"
        assert pod.get("runAsGroup", 1) != 0, where
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), where
        for container in spec["containers"] + spec.get("initContainers", []):
            name = f"{where} container {container.get('name')}"
            sc = container.get("securityContext") or {}
            assert sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation must be false"
            assert "ALL" in (sc.get("capabilities") or {}).get("drop", []), f"{name}: must drop ALL capabilities"
            assert not (sc.get("capabilities") or {}).get("add"), f"{name}: adds capabilities"
            assert not sc.get("privileged") and sc.get("runAsUser", uid) != 0, f"{name}: runs privileged or as root"
            assert not any("hostPort" in p for p in container.get("ports", [])), f"{name}: binds a host port"


@pytest.mark.parametrize("rel", RAYJOBS)
def test_the_rayjob_submitter_is_locked_down_too(rel):
    (job,) = _docs(rel)
    submitter = job["spec"].get("submitterPodTemplate")
    assert submitter, f"{rel}: without submitterPodTemplate the operator's default submitter pod has no securityContext"
    (container,) = submitter["spec"]["containers"]
    assert "command" not in container, f"{rel}: the operator fills in the submitter's command from the entrypoint"
    assert submitter["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_autoscaler_sidecar_is_locked_down():
    for rel in KUBERAY:
        for spec in _cluster_specs(rel):
            if spec.get("enableInTreeAutoscaling"):
                sc = spec["autoscalerOptions"]["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False and "ALL" in sc["capabilities"]["drop"], rel


@pytest.mark.parametrize("rel", KUBERAY)
def test_the_dashboard_never_leaves_the_cluster(rel):
    for doc in _docs(rel):
        for path, node in _walk(doc):
            assert node.get("type") not in ("LoadBalancer", "NodePort"), f"{rel}{path}: exposes a Service"
            assert node.get("serviceType", "ClusterIP") == "ClusterIP", f"{rel}{path}: serviceType"
            assert node.get("enableIngress") is not True, f"{rel}{path}: enables an Ingress"
        assert doc.get("kind") not in ("Ingress", "Route", "Gateway"), f"{rel}: {doc.get('kind')}"
    for spec in _cluster_specs(rel):
        head = spec["headGroupSpec"]
        assert head.get("serviceType") == "ClusterIP", f"{rel}: say serviceType: ClusterIP explicitly"
        host = head["rayStartParams"]["dashboard-host"]
        # 0.0.0.0 only where the operator's submitter must reach the job API through the ClusterIP Service.
        assert host == "127.0.0.1" or rel in RAYJOBS, f"{rel}: dashboard-host {host}"


def test_the_launcher_keeps_its_containers_unprivileged_and_the_dashboard_local():
    cfg = _docs("cluster.yaml")[0]
    options = [opt for key in ("run_options", "head_run_options", "worker_run_options")
               for opt in cfg["docker"].get(key, [])]
    joined = " ".join(options)
    assert f"--user={_image_uid()}:" in joined, options
    assert "--cap-drop=ALL" in options and "--security-opt=no-new-privileges" in options, options
    assert "--privileged" not in joined and "--cap-add" not in joined and "--network=host" not in joined
    for node_type in cfg["available_node_types"].values():
        extra = " ".join((node_type.get("docker") or {}).get("worker_run_options", []))
        assert "--privileged" not in extra and "--cap-add" not in extra
    assert "--dashboard-host=127.0.0.1" in " ".join(cfg["head_start_ray_commands"])


@pytest.mark.parametrize("rel", LABEL_STUDIO_MANIFESTS)
def test_the_label_studio_token_comes_from_a_secret_and_only_to_the_head(rel):
    for spec in _cluster_specs(rel):
        env = {e["name"]: e for e in _head(spec).get("env", [])}
        assert LABEL_STUDIO_ENV in env, f"{rel}: the head (job driver) needs {LABEL_STUDIO_ENV}"
        var = env[LABEL_STUDIO_ENV]
        assert "value" not in var, f"{rel}: the token must not be written in the manifest"
        ref = var["valueFrom"]["secretKeyRef"]
        assert ref["name"] and ref["key"], ref
        for group in spec["workerGroupSpecs"]:
            for container in group["template"]["spec"]["containers"]:
                names = {e["name"] for e in container.get("env", [])}
                assert LABEL_STUDIO_ENV not in names, f"{rel}: worker group {group['groupName']} gets the token"


@pytest.mark.parametrize("rel", KUBERAY)
def test_no_secret_is_written_into_a_manifest(rel):
    for doc in _docs(rel):
        for path, node in _walk(doc):
            if isinstance(node.get("name"), str) and ("value" in node or "valueFrom" in node):
                if _SECRET_NAME.search(node["name"]):
                    assert "value" not in node, f"{rel}{path}: {node['name']} has a literal value; use secretKeyRef"
        assert doc.get("kind") != "Secret", f"{rel}: ships a Secret; users create theirs with kubectl"


def test_the_secret_checks_catch_a_literal_token():
    bad = {"env": [{"name": "LABEL_STUDIO_API_KEY", "value": "abc"}]}
    hits = [node["name"] for _, node in _walk(bad) if isinstance(node.get("name"), str) and "value" in node
            and _SECRET_NAME.search(node["name"])]
    assert hits == ["LABEL_STUDIO_API_KEY"]

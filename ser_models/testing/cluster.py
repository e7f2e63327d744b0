"""A multi-node Ray cluster on one machine whose worker nodes a test can lose mid-job.

``python -m ser_models.testing.cluster DIR`` starts a :class:`ray.cluster_utils.Cluster`: a head node with no
CPUs (so every task, actor and Train worker runs on a worker node, as on a real cluster whose head only
coordinates) and ``--workers`` worker nodes. It writes the cluster's address to ``DIR/address``; a job is
run against it as a user would, ``RAY_ADDRESS=$(cat DIR/address) python -m jobs.<job> ...``.

It then serves node kills through pause points (:func:`ser_models.failpoints.pausepoint`): create
``DIR/pause/<name>.armed`` and the first process that reaches ``pausepoint(<name>)`` on a worker node gets
that node removed without grace (every process of the node SIGKILLed, as a machine that loses power), a
fresh worker node is added in its place, and ``DIR/pause/<name>.released`` lets every other paused process
(and the retries Ray starts elsewhere) go on. Each kill is a line of ``DIR/events.jsonl``.
An armed file (JSON, written by :meth:`ClusterProcess.arm`) may ask for the head node instead (what Ray
cannot survive without GCS fault tolerance), or to wait for a file before the kill.
``DIR/stop`` or SIGTERM ends it and every node.

The owner of the cluster is its own process because the test process may already hold a local Ray instance.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ser_models.failpoints import PAUSEPOINT_DIR_ENV
from ser_models.runtime import GCS_RECONNECT_TIMEOUT_ENV

#: Failure detection within seconds instead of Ray's default ~30 s: GCS health checks every 1 s, a node is
#: dead after 3 missed checks.
FAST_FAILURE_DETECTION = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 3,
}
OBJECT_STORE_BYTES = 200 * 1024 * 1024
#: How long a kill waits for its ``after`` file (s).
WAIT_AFTER_S = 120.0


def _event(folder: Path, **row) -> None:
    with open(folder / "events.jsonl", "a") as f:
        f.write(json.dumps({"t": time.time(), **row}) + "\n")
        f.flush()


def serve(folder: Path, workers: int, cpus: int) -> int:
    """Run the cluster until ``folder/stop`` appears or the process is told to stop (returns the exit code)."""
    from ray.cluster_utils import Cluster

    pause = folder / "pause"
    pause.mkdir(parents=True, exist_ok=True)
    # Inherited by every raylet and so by every worker process: the pause points read it.
    os.environ[PAUSEPOINT_DIR_ENV] = str(pause)
    # Unix socket paths must stay under ~107 characters: a short temp dir of its own, outside pytest's.
    temp_dir = tempfile.mkdtemp(prefix="rn", dir="/tmp")
    # Cluster writes its address to <Ray's temp dir>/ray/ray_current_cluster, and a plain ray.init() anywhere on
    # the machine (another test process, a test's driver) reads that file and joins this cluster, whose nodes
    # get killed. Ray's temp dir is this cluster's own.
    os.environ["RAY_TMPDIR"] = temp_dir
    os.makedirs(os.path.join(temp_dir, "ray"), exist_ok=True)  # where that file goes now
    node_args = {"num_cpus": cpus, "object_store_memory": OBJECT_STORE_BYTES, "temp_dir": temp_dir}
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "object_store_memory": OBJECT_STORE_BYTES, "temp_dir": temp_dir,
        "include_dashboard": False, "_system_config": FAST_FAILURE_DETECTION})
    try:
        for _ in range(workers):
            cluster.add_node(**node_args)
        cluster.wait_for_nodes()
        tmp = folder / "address.tmp"
        tmp.write_text(cluster.address)
        tmp.rename(folder / "address")  # atomic: a reader sees the whole address or none
        _event(folder, event="started", head=cluster.head_node.node_id,
               workers=[n.node_id for n in cluster.worker_nodes])
        handled: set[tuple[str, str | None]] = set()  # (pause point, arming)
        while not stopping and not (folder / "stop").exists():
            for paused in sorted(pause.glob("*.paused")):
                name, node_id, _pid, _ = paused.name.rsplit(".", 3)
                plan = json.loads((pause / f"{name}.armed").read_text() or "{}")
                if (name, plan.get("id")) in handled:
                    continue
                handled.add((name, plan.get("id")))
                if plan.get("after") and not _poll(Path(plan["after"]).exists, WAIT_AFTER_S):
                    _event(folder, event="error", pausepoint=name,
                           error=f"{plan['after']} did not appear within {WAIT_AFTER_S:g} s")
                    (pause / f"{name}.released").touch()
                    continue
                if plan.get("lose") == "head":
                    head = cluster.head_node.node_id
                    cluster.remove_node(cluster.head_node, allow_graceful=False)
                    _event(folder, event="head_removed", pausepoint=name, arming=plan.get("id"), node=head)
                    continue  # nothing to release: the whole cluster is going down
                _lose_node(cluster, folder, name, plan.get("id"), node_id, node_args)
                (pause / f"{name}.released").touch()
            time.sleep(0.1)
    finally:
        if cluster.head_node is not None:
            cluster.shutdown()
        else:  # the head is gone: remove what is left of the workers
            for node in list(cluster.worker_nodes):
                cluster.remove_node(node, allow_graceful=False)
        shutil.rmtree(temp_dir, ignore_errors=True)  # Ray's sessions and logs (the jobs' output is in DIR)
    return 0


def _poll(done, timeout: float, every: float = 0.1) -> bool:
    """Call ``done()`` every ``every`` seconds until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def _lose_node(cluster, folder: Path, name: str, arming: str | None, node_id: str, node_args: dict) -> None:
    """Remove the worker node ``node_id`` without grace, then add a fresh one in its place."""
    victim = next((n for n in cluster.worker_nodes if n.node_id == node_id), None)
    if victim is None:
        _event(folder, event="error", pausepoint=name,
               error=f"process paused on node {node_id}, which is not a live worker node")
        return
    t0 = time.monotonic()
    killed = _kill_node(cluster, victim)
    removed = time.monotonic() - t0
    added = cluster.add_node(**node_args)
    _event(folder, event="node_lost", pausepoint=name, arming=arming, node=node_id, added=added.node_id,
           killed_processes=killed, remove_seconds=round(removed, 2))


def _kill_node(cluster, node) -> int:
    """SIGKILL every process of ``node``, as a machine that loses power; returns how many died.

    ``Cluster.remove_node`` kills only the node's own daemons (raylet, object store, agents). The worker
    processes the raylet started outlive it for as long as they do not call it, and a Ray Train worker
    talking to its peers and its controller directly would train on: not a lost machine. So the raylet's
    whole process tree goes first.
    """
    import psutil

    tree = []
    for info in node.all_processes.get("raylet", []):
        try:
            tree += psutil.Process(info.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    for proc in tree:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    cluster.remove_node(node, allow_graceful=False)
    return len(tree)


class ClusterProcess:
    """The test side: start ``python -m ser_models.testing.cluster`` in its own process and drive it.

    Args:
        folder: the cluster's folder (address, events, pause files).
        workers: worker nodes.
        cpus: CPUs per worker node.
    """

    START_TIMEOUT_S = 120.0

    def __init__(self, folder: Path, workers: int = 2, cpus: int = 1):

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log = open(self.folder / "cluster.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "ser_models.testing.cluster", str(self.folder),
                                      "--workers", str(workers), "--cpus", str(cpus)],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.START_TIMEOUT_S
        while not (self.folder / "address").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the test cluster did not start; see {self.folder / 'cluster.log'}:\n"
                                   + (self.folder / "cluster.log").read_text()[-3000:])
            time.sleep(0.2)
        self.address = (self.folder / "address").read_text().strip()

    def arm(self, name: str, lose: str = "node", after: str | Path | None = None) -> str:
        """Lose the node (``lose="node"``) or the head node (``"head"``) when a process first reaches
        ``pausepoint(name)``; with ``after``, only once that file exists (say, the record that Ray Train
        registered a checkpoint, which its controller learns of by polling the workers every 2 s).

        Returns:
            The arming's id, which its events carry (:meth:`losses`).
        """

        for stale in [*self.folder.glob(f"pause/{name}.*.paused"), self.folder / "pause" / f"{name}.released"]:
            stale.unlink(missing_ok=True)  # left by an earlier arming of the same point
        plan = {"id": uuid.uuid4().hex, "lose": lose, "after": str(after) if after else None}
        tmp = self.folder / "pause" / f"{name}.armed.tmp"
        tmp.write_text(json.dumps(plan))
        tmp.rename(self.folder / "pause" / f"{name}.armed")  # a reader never sees half a plan
        return plan["id"]

    def losses(self, arming: str) -> list[dict]:
        """The ``node_lost`` events of one :meth:`arm` call (asserting the cluster logged no error)."""
        errors = self.events("error")
        assert not errors, errors
        return [e for e in self.events("node_lost") if e.get("arming") == arming]

    def events(self, kind: str | None = None) -> list[dict]:
        path = self.folder / "events.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return [r for r in rows if kind is None or r["event"] == kind]

    def wait_for(self, kind: str, count: int = 1, timeout: float = 60.0) -> list[dict]:
        if not _poll(lambda: len(self.events(kind)) >= count, timeout, every=0.2):
            raise TimeoutError(f"no {count} {kind!r} events within {timeout:g} s: {self.events()}")
        return self.events(kind)

    def env(self) -> dict:
        """The environment of a job driver attached to this cluster (``RAY_ADDRESS``).

        Ray's limit on a driver waiting for a lost head is 20 s here (60 s by default), so the driver's head
        watch (``runtime.watch_head_node``) ends a job whose head was lost after 10 s.
        """
        return {**os.environ, "RAY_ADDRESS": self.address, PAUSEPOINT_DIR_ENV: str(self.folder / "pause"),
                GCS_RECONNECT_TIMEOUT_ENV: "20"}

    def stop(self) -> None:
        """Stop the cluster (SIGTERM, then SIGKILL of its whole process group after 60 s)."""

        (self.folder / "stop").touch()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="folder for address, events.jsonl and pause/")
    parser.add_argument("--workers", type=int, default=2, help="worker nodes")
    parser.add_argument("--cpus", type=int, default=1, help="CPUs per worker node")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    return serve(args.dir, args.workers, args.cpus)


if __name__ == "__main__":
    sys.exit(main())

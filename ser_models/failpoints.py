"""Named crash points, so tests can prove that a job survives a kill at every stage boundary.

Set ``SER_FAILPOINT=<name>`` and the process SIGKILLs itself the first time it reaches ``failpoint(<name>)``:
no ``finally`` block, no atexit handler, no flush runs, exactly like a node that dies. Unset (always, outside
tests), a failpoint is one dictionary lookup.

A *pause point* lets a test kill a whole Ray node while work is running on it
(:mod:`ser_models.testing.cluster`): with ``SER_PAUSEPOINT_DIR=<dir>`` set on the cluster's nodes and
``<dir>/<name>.armed`` present, every process that reaches ``pausepoint(<name>)`` writes
``<dir>/<name>.<node id>.<pid>.paused`` and waits until ``<dir>/<name>.released`` exists. The test removes
the node of the first paused process, then releases the others (and the retries Ray starts elsewhere).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

FAILPOINT_ENV = "SER_FAILPOINT"
PAUSEPOINT_DIR_ENV = "SER_PAUSEPOINT_DIR"
#: A paused process gives up waiting after this long (s): a test that never releases fails, never hangs.
PAUSE_LIMIT_S = 600.0

#: Every failpoint of the AFTER loop, in the order a round reaches them.
LOOP_FAILPOINTS = ("after_initial_selection", "after_train", "after_score", "after_select", "after_label",
                   "after_metrics")


def failpoint(name: str) -> None:
    """SIGKILL this process when ``$SER_FAILPOINT`` equals ``name``."""
    if os.environ.get(FAILPOINT_ENV) == name:
        print(f"failpoint {name}: killing process {os.getpid()}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


def pausepoint(name: str) -> None:
    """Wait here while ``$SER_PAUSEPOINT_DIR/<name>.armed`` exists and ``<name>.released`` does not.

    Raises:
        TimeoutError: nothing released the pause within :data:`PAUSE_LIMIT_S`.
    """
    folder = os.environ.get(PAUSEPOINT_DIR_ENV)
    if not folder or not (Path(folder) / f"{name}.armed").exists():
        return
    released = Path(folder) / f"{name}.released"
    if released.exists():
        return
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "no-ray"
    (Path(folder) / f"{name}.{node}.{os.getpid()}.paused").touch()
    deadline = time.monotonic() + PAUSE_LIMIT_S
    while not released.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"pause point {name!r}: {released} did not appear within {PAUSE_LIMIT_S:g} s")
        time.sleep(0.1)


__all__ = ["FAILPOINT_ENV", "LOOP_FAILPOINTS", "PAUSEPOINT_DIR_ENV", "failpoint", "pausepoint"]

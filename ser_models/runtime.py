"""Connecting a job's driver to Ray: the one call every job makes before any Ray work."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time

from ser_models import console

#: Largest block Ray Data builds from a pool read (Ray's default is 128 MiB). Pool rows are ~100 KB of encoded
#: audio; blocks of this size keep each read task's output buffer and the blocks waiting in the object store
#: small, so the memory of a pool-sized pipeline does not grow with the pool (bench.scale).
POOL_BLOCK_BYTES = 32 * 2**20

#: Object-store budget of one Ray Data pipeline, per CPU of the cluster (Ray's default is half the object store,
#: ~3.5 GiB on a 24 GiB machine whatever its CPU count). Ray Data keeps reading ahead until its budget is full, so
#: with the default a longer pool meant more decoded blocks in flight and more store pages touched in every
#: process that maps them (bench.scale: +1.1-1.2 GiB of object store in the read and training workers at 16 h).
#: Eight 32 MiB blocks per CPU keep every CPU's task fed while the budget stays fixed as the pool grows.
POOL_OBJECT_STORE_BYTES_PER_CPU = 8 * POOL_BLOCK_BYTES

#: Set to ``INFO`` to see Ray Data's per-dataset lines (execution plans, progress summaries) on the console.
DATA_CONSOLE_LEVEL_ENV = "SER_RAY_DATA_CONSOLE_LEVEL"
#: Set to ``1`` to see Ray Data's progress bars (one per dataset execution and Parquet sampling; a loop round
#: executes several, and they buried the job's own progress lines).
PROGRESS_BARS_ENV = "SER_RAY_PROGRESS_BARS"


#: Ray's own limit on a driver waiting for a lost GCS (``RAY_gcs_rpc_server_reconnect_timeout_s``; Ray's default
#: is 60 s). When it runs out, Ray ends the driver with exit code 1 and no word from us.
GCS_RECONNECT_TIMEOUT_ENV = "RAY_gcs_rpc_server_reconnect_timeout_s"
_RAY_DEFAULT_GCS_RECONNECT_S = 60.0

#: Exit code of a job whose Ray cluster lost its head node (rerun it on a live cluster: it resumes).
HEAD_LOST_EXIT = 3

_head_lost_once = threading.Lock()


def end_with_head_lost(reason: str) -> None:
    """Print ``error: HeadNodeLost: <reason>`` once and end the process with :data:`HEAD_LOST_EXIT`.

    Called by the job's error handler and by the driver's head watch (:func:`watch_head_node`), whichever
    comes first; the other waits here until the process ends.
    """
    with _head_lost_once:
        print(f"error: HeadNodeLost: {reason}", file=sys.stderr, flush=True)
        _exit_now(HEAD_LOST_EXIT)


def _exit_now(code: int) -> None:
    """End the process with ``code`` without running Ray's shutdown against a dead head node.

    A plain ``SystemExit`` runs ``ray.shutdown()`` at exit, which waits on the dead GCS; meanwhile the
    driver's core worker gives up on the GCS (``gcs_rpc_server_reconnect_timeout_s``) and ends the process
    itself with code 1, so the exit code would depend on which comes first (seen in CI). Everything the job
    wrote is already closed (the error unwound every ``with``); logs and the standard streams are flushed here.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def lost_head_message() -> str | None:
    """Why the connected Ray cluster is gone, when its head node (the GCS) no longer answers; else None.

    Ray cannot survive its head node without GCS fault tolerance: every actor and task ends, and the error
    that reaches the driver names whatever call failed first (a Train controller, a Data executor). A job
    that ends while Ray is connected asks this, so the user reads what happened and what to do. A process that
    never imported Ray (a run without it: ``runtime.ray``) is not connected, and does not import it to say so.
    """
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    address = _gcs_address()
    if address is None or _gcs_answers(address):
        return None
    return _lost_message(address)


def _gcs_address() -> str | None:
    import ray

    try:
        return ray.get_runtime_context().gcs_address
    except Exception:  # no address to check (a local mode, an old Ray): say nothing rather than guess
        return None


def _gcs_answers(address: str, timeout: float = 2.0) -> bool:

    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def _lost_message(address: str) -> str:
    return (f"the Ray cluster's head node is gone (its GCS at {address} does not answer), and every job on "
            "the cluster with it. Rerun the same command on a live cluster with the same output_dir: it "
            "resumes from the checkpoints there")


def head_watch_grace_s() -> float:
    """Seconds without an answer from the GCS after which the driver's watch ends the job (half Ray's limit).

    Half of Ray's own reconnect limit: a head that comes back within Ray's limit (GCS fault tolerance) may
    still be cut off by us only in its second half, and our message always comes before Ray ends the driver
    without one. Set ``RAY_gcs_rpc_server_reconnect_timeout_s`` on the driver to move both.
    """
    raw = os.environ.get(GCS_RECONNECT_TIMEOUT_ENV, "").strip()
    try:
        limit = float(raw) if raw else _RAY_DEFAULT_GCS_RECONNECT_S
    except ValueError:
        limit = _RAY_DEFAULT_GCS_RECONNECT_S
    return max(1.0, limit / 2)


def watch_head_node(poll_s: float = 1.0) -> threading.Thread | None:
    """Start a daemon thread that ends the job with ``HeadNodeLost`` (exit 3) once the head stays unreachable.

    Without it, a driver attached to a cluster whose head node died waits on its Ray calls until Ray gives up
    on the GCS and ends the process with exit code 1 and no word of why; whether the job's own error arrives
    first is a race (a Train controller on a worker node dies on the same clock). The watch polls the GCS
    port every ``poll_s`` seconds and, after :func:`head_watch_grace_s` without an answer, prints the
    ``HeadNodeLost`` line and exits. It stops by itself once Ray disconnects or connects elsewhere.

    Returns:
        The thread, or None when Ray has no GCS address to watch.
    """
    import ray

    address = _gcs_address()
    if address is None:
        return None
    grace = head_watch_grace_s()

    def watch() -> None:
        silent_since = None
        while True:
            time.sleep(poll_s)
            if not ray.is_initialized() or _gcs_address() != address:
                return
            if _gcs_answers(address, timeout=min(2.0, poll_s * 2)):
                silent_since = None
                continue
            silent_since = silent_since if silent_since is not None else time.monotonic()
            if time.monotonic() - silent_since >= grace:
                end_with_head_lost(f"{_lost_message(address)}. Nothing answered for {grace:g} s")
                return  # not reached: the process has ended

    thread = threading.Thread(target=watch, name="ser-head-watch", daemon=True)
    thread.start()
    return thread


def connect_ray() -> None:
    """``ray.init()`` to ``RAY_ADDRESS`` (set by ``ray job submit``) or a new local instance, with Ray's own
    console lines kept out unless ``--verbose`` (:mod:`ser_models.console`).

    Ray Data prints several INFO lines per dataset it executes (a job runs dozens), which bury the job's own
    progress lines. Its console handler is raised to WARNING (or ``$SER_RAY_DATA_CONSOLE_LEVEL``); its file
    handler is untouched, so everything stays in the session's ``logs/ray-data/ray-data.log``.
    """
    import ray
    import ray.data  # configures the "ray.data" logger and its handlers

    if not ray.is_initialized():  # inside a Ray task or actor (a sweep trial) Ray is already connected
        ray.init(logging_level=console.init_logging_level())
        console.quiet_ray_console()  # Ray's internal lines stay in its log files (ser_models.console)
        if os.environ.get("RAY_ADDRESS"):  # attached to a cluster whose head can die without us
            watch_head_node()
    configure_ray_data()
    level = os.environ.get(DATA_CONSOLE_LEVEL_ENV, "WARNING").upper()
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(level)
            if _keep_data_notice not in handler.filters:
                handler.addFilter(_keep_data_notice)


def _keep_data_notice(record: logging.LogRecord) -> bool:
    """Drop Ray Data's notices that are not the job's business: that progress bars are off (we turned them off,
    :data:`PROGRESS_BARS_ENV`), and, unless ``--verbose``, its snapshot warning that the cluster has no free CPU
    when a dataset starts (our actor pools hold them for a moment; a real stall shows as a job that stops
    printing progress). Both stay in Ray Data's log file."""
    message = str(record.msg)
    if message.startswith("Progress bars disabled"):
        return False
    return console.ray_console_wanted() or "does not have any available CPUs" not in message


def configure_ray_data() -> None:
    """The driver's Ray Data settings for audio pools (:data:`POOL_BLOCK_BYTES`, and an object-store budget of
    :data:`POOL_OBJECT_STORE_BYTES_PER_CPU` per cluster CPU) and progress bars off unless
    ``$SER_RAY_PROGRESS_BARS=1``; datasets created afterwards use them. Called by
    :func:`connect_ray`; call it yourself after your own ``ray.init``."""
    import ray
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.target_max_block_size = POOL_BLOCK_BYTES
    ctx.enable_progress_bars = os.environ.get(PROGRESS_BARS_ENV, "") == "1"
    cpus = max(1.0, float(ray.cluster_resources().get("CPU", 1.0)))
    limits = ctx.execution_options.resource_limits
    # min with Ray's own default (half the store) happens inside Ray Data; never raise a user's tighter cap
    budget = min(limits.object_store_memory or float("inf"), cpus * POOL_OBJECT_STORE_BYTES_PER_CPU)
    ctx.execution_options.resource_limits = limits.copy(object_store_memory=budget)


def read_parquet_dataset(path: str, **kwargs):
    """``ray.data.read_parquet`` through Ray Data's V1 Parquet datasource (every pool and cache read).

    Ray 2.60 routes Parquet reads through its DataSourceV2 by default, which starts a pool of ``FooterReader``
    actors for every read and kills them afterwards: on 2 cores a read of an 8-clip split took 2.2-2.6 s
    there against 0.19 s through V1 (the same files, warm workers). Jobs read splits every round and sweeps
    in every trial, so the V2 path's fixed cost dominated small reads. ``RAY_DATA_USE_DATASOURCE_V2`` is
    Ray's own switch; this sets the same flag on the calling process's ``DataContext``.
    """
    import ray.data
    from ray.data import DataContext

    DataContext.get_current().use_datasource_v2 = False
    return ray.data.read_parquet(path, **kwargs)


__all__ = ["DATA_CONSOLE_LEVEL_ENV", "POOL_BLOCK_BYTES", "POOL_OBJECT_STORE_BYTES_PER_CPU", "configure_ray_data",
           "connect_ray", "read_parquet_dataset"]


def cluster_cpus() -> float:
    """CPUs the connected Ray cluster reports now (0 when Ray is not initialised)."""
    import ray

    return float(ray.cluster_resources().get("CPU", 0.0)) if ray.is_initialized() else 0.0


def cluster_cpu_nodes() -> int:
    """Live nodes of the connected Ray cluster that have CPUs (1 when Ray is not initialised)."""
    import ray

    if not ray.is_initialized():
        return 1
    return sum(1 for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0) or 1

"""Connecting a job's driver to Ray: the one call every job makes before any Ray work."""

from __future__ import annotations

import logging
import os

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


def lost_head_message() -> str | None:
    """Why the connected Ray cluster is gone, when its head node (the GCS) no longer answers; else None.

    Ray cannot survive its head node without GCS fault tolerance: every actor and task ends, and the error
    that reaches the driver names whatever call failed first (a Train controller, a Data executor). A job
    that ends while Ray is connected asks this, so the user reads what happened and what to do.
    """
    import socket

    import ray

    if not ray.is_initialized():
        return None
    try:
        address = ray.get_runtime_context().gcs_address
        host, port = address.rsplit(":", 1)
    except Exception:  # no address to check (a local mode, an old Ray): say nothing rather than guess
        return None
    try:
        with socket.create_connection((host, int(port)), timeout=2.0):
            return None
    except OSError:
        return (f"the Ray cluster's head node is gone (its GCS at {address} does not answer), and every job on "
                "the cluster with it. Rerun the same command on a live cluster with the same output_dir: it "
                "resumes from the checkpoints there")


def connect_ray() -> None:
    """``ray.init()`` to ``RAY_ADDRESS`` (set by ``ray job submit``) or a new local instance.

    Ray Data prints several INFO lines per dataset it executes (a job runs dozens), which bury the job's own
    progress lines. Its console handler is raised to WARNING (or ``$SER_RAY_DATA_CONSOLE_LEVEL``); its file
    handler is untouched, so everything stays in the session's ``logs/ray-data/ray-data.log``.
    """
    import ray
    import ray.data  # configures the "ray.data" logger and its handlers

    if not ray.is_initialized():  # inside a Ray task or actor (a sweep trial) Ray is already connected
        ray.init()
    configure_ray_data()
    level = os.environ.get(DATA_CONSOLE_LEVEL_ENV, "WARNING").upper()
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(level)
            if _no_bars_notice not in handler.filters:
                handler.addFilter(_no_bars_notice)


def _no_bars_notice(record: logging.LogRecord) -> bool:
    """Drop Ray Data's warning that progress bars are off: we turned them off (:data:`PROGRESS_BARS_ENV`)."""
    return not str(record.msg).startswith("Progress bars disabled")


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

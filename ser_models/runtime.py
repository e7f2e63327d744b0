"""Connecting a job's driver to Ray: the one call every job makes before any Ray work."""

from __future__ import annotations

import logging
import os

#: Largest block Ray Data builds from a pool read (Ray's default is 128 MiB). Pool rows are ~100 KB of encoded
#: audio; blocks of this size keep each read task's output buffer and the blocks waiting in the object store
#: small, so the memory of a pool-sized pipeline does not grow with the pool (bench.scale).
POOL_BLOCK_BYTES = 32 * 2**20

#: Set to ``INFO`` to see Ray Data's per-dataset lines (execution plans, progress summaries) on the console.
DATA_CONSOLE_LEVEL_ENV = "SER_RAY_DATA_CONSOLE_LEVEL"


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


def configure_ray_data() -> None:
    """The driver's Ray Data settings for audio pools (:data:`POOL_BLOCK_BYTES`); datasets created afterwards
    use them. Called by :func:`connect_ray`; call it yourself after your own ``ray.init``."""
    from ray.data import DataContext

    DataContext.get_current().target_max_block_size = POOL_BLOCK_BYTES


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


__all__ = ["DATA_CONSOLE_LEVEL_ENV", "POOL_BLOCK_BYTES", "configure_ray_data", "connect_ray", "read_parquet_dataset"]

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

    ray.init(ignore_reinit_error=True)
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


__all__ = ["DATA_CONSOLE_LEVEL_ENV", "POOL_BLOCK_BYTES", "configure_ray_data", "connect_ray"]

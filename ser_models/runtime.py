"""Connecting a job's driver to Ray: the one call every job makes before any Ray work."""

from __future__ import annotations

import logging
import os

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
    level = os.environ.get(DATA_CONSOLE_LEVEL_ENV, "WARNING").upper()
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(level)


__all__ = ["DATA_CONSOLE_LEVEL_ENV", "connect_ray"]

"""Build a prepared pool from a manifest: decode, mono, 16 kHz, validate, quarantine, shard (Ray Data).

    python -m jobs.prepare_pool jobs/configs/prepare_pool_demo.yaml [key=value ...]
    ray job submit --working-dir . --runtime-env platform/runtime_env.yaml -- \\
        python -m jobs.prepare_pool jobs/configs/prepare_pool_demo.yaml

The job's config and code: :mod:`ser_models.runs.prepare_pool`.
"""

from __future__ import annotations

from ser_models.runs.prepare_pool import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

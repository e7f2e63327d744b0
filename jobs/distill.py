"""Distill a speech encoder into a small student of its own architecture on the pool's audio (no labels).

    python -m jobs.distill jobs/configs/distill_demo.yaml [key.sub=value ...]
    platform/submit.sh distill jobs/configs/distill_demo.yaml output_dir=/mnt/outputs/distill

The job's config and code: :mod:`ser_models.runs.distill`.
"""

from __future__ import annotations

from ser_models.runs.distill import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

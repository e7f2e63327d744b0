"""The AFTER active-learning loop on a prepared pool: optional TAPT, initial set, rounds of
train -> evaluate -> score -> select -> label.

    python -m jobs.after jobs/configs/demo_after.yaml [key.sub=value ...]
    platform/submit.sh after jobs/configs/demo_after.yaml output_dir=/shared/runs/after1

The job's config and code: :mod:`ser_models.runs.after`.
"""

from __future__ import annotations

from ser_models.runs.after import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

"""Task-adaptive pre-training (TAPT) of the speech encoder on a prepared pool's training audio, with Ray Train.

    python -m jobs.tapt jobs/configs/tapt_demo.yaml [key.sub=value ...]
    platform/submit.sh tapt jobs/configs/tapt_demo.yaml output_dir=/shared/runs/tapt1

The job's config and code: :mod:`ser_models.runs.tapt`.
"""

from __future__ import annotations

from ser_models.runs.tapt import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

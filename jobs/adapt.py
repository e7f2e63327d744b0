"""Two-stage adaptation: fine-tune on a source pool (acted speech), then go on on a target pool (natural).

    python -m jobs.adapt jobs/configs/adapt_demo.yaml [key.sub=value ...]
    platform/submit.sh adapt jobs/configs/adapt_demo.yaml output_dir=s3://bucket/runs/adapt1

The job's config and code: :mod:`ser_models.runs.adapt`.
"""

from __future__ import annotations

from ser_models.runs.adapt import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

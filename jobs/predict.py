"""Batch inference: apply a trained checkpoint to a prepared pool or a raw manifest, on Ray Data actors.

    python -m jobs.predict jobs/configs/predict_demo.yaml [key.sub=value ...]
    platform/submit.sh predict jobs/configs/predict_demo.yaml checkpoint=s3://bucket/runs/ft output_dir=s3://bucket/pred

The job's config and code: :mod:`ser_models.runs.predict`.
"""

from __future__ import annotations

from ser_models.runs.predict import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

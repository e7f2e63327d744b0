"""Sweep any keys of a base job's config with Ray Tune (ASHA or FIFO; random, grid or Optuna TPE).

    python -m jobs.sweep jobs/configs/sweep_peft_demo.yaml [key.sub=value ...]
    python -m jobs.sweep jobs/configs/sweep_peft_demo.yaml num_samples=16 config.train.optim.epochs=6
    platform/submit.sh sweep jobs/configs/sweep_peft_demo.yaml output_dir=s3://bucket/sweeps/peft1

The job's config and code: :mod:`ser_models.tune.job`.
"""

from __future__ import annotations

from ser_models.tune.job import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

"""Sweep any keys of a base job's config with Ray Tune (ASHA or FIFO; random, grid or Optuna TPE).

    python -m jobs.sweep jobs/configs/sweep_peft_demo.yaml [key.sub=value ...]
    python -m jobs.sweep jobs/configs/sweep_peft_demo.yaml num_samples=16 config.train.epochs=6
    platform/submit.sh sweep jobs/configs/sweep_peft_demo.yaml output_dir=s3://bucket/sweeps/peft1

Rerunning with the same ``output_dir`` resumes the sweep: finished trials are kept, unfinished ones resume
from their last epoch (or round). The winner's config is ``<output_dir>/best.yaml``:

    python -m jobs.finetune <output_dir>/best.yaml
"""


import sys

from ser_models.config import parse_job_args
from ser_models.tune.config import SweepConfig


def main(argv: list[str] | None = None):
    cfg = parse_job_args(SweepConfig, sys.argv[1:] if argv is None else argv, "jobs.sweep")
    from ser_models.tune.sweep import run_sweep

    return run_sweep(cfg).frame


if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

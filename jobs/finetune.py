"""Fine-tune adapters + an emotion head on a prepared pool with Ray Train.

    python -m jobs.finetune jobs/configs/finetune_demo.yaml [key.sub=value ...]
    platform/submit.sh finetune jobs/configs/finetune_demo.yaml output_dir=/shared/runs/ft1

Rerunning with the same ``output_dir`` resumes an interrupted run, or reuses a finished one.
"""

from __future__ import annotations

import sys

from ser_models.config import parse_job_args
from ser_models.runs.finetune import FinetuneJobConfig, run_finetune

__all__ = ["FinetuneJobConfig", "main", "run_finetune"]


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_job_args(FinetuneJobConfig, sys.argv[1:] if argv is None else argv, "jobs.finetune")
    # run_finetune claims the folder first: one fine-tuning per folder, and a folder that is not this job's
    # is refused before anything is written
    return run_finetune(cfg).metrics


if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

"""Fine-tune adapters + an emotion head on a prepared pool with Ray Train.

    python -m jobs.finetune jobs/configs/finetune_demo.yaml [key.sub=value ...]
    platform/submit.sh finetune jobs/configs/finetune_demo.yaml output_dir=/shared/runs/ft1

The job's config and code: :mod:`ser_models.runs.finetune`.
"""

from __future__ import annotations

from ser_models.runs.finetune import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

"""Cross-lingual layer anchoring: train on a labelled source language, align an unlabelled target language.

    python -m jobs.anchor jobs/configs/anchor_demo.yaml [key.sub=value ...]
    platform/submit.sh anchor jobs/configs/anchor_demo.yaml output_dir=/mnt/outputs/anchor

The job's config and code: :mod:`ser_models.runs.anchor`.
"""

from __future__ import annotations

from ser_models.runs.anchor import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

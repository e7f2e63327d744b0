"""Layer-wise analysis of a frozen encoder: a probe per layer and task, learned layer weights, layer CKA.

    python -m jobs.layer_analysis jobs/configs/layer_analysis_demo.yaml [key.sub=value ...]
    platform/submit.sh layer_analysis jobs/configs/layer_analysis_demo.yaml output_dir=/mnt/outputs/layers

The job's config and code: :mod:`ser_models.runs.layer_analysis`.
"""

from __future__ import annotations

from ser_models.runs.layer_analysis import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

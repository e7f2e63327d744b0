"""Find the speech in long recordings and write a segments manifest (Silero VAD on Ray Data actors).

    python -m jobs.segment jobs/configs/segment_demo.yaml recordings=/data/calls/recordings.csv \
        output_dir=/data/calls/segments
    ray job submit --working-dir . --runtime-env platform/runtime_env.yaml -- \\
        python -m jobs.segment jobs/configs/segment_demo.yaml recordings=s3://bucket/calls/recordings.csv \\
        output_dir=s3://bucket/calls/segments

The job's config and code: :mod:`ser_models.runs.segment`.
"""

from __future__ import annotations

from ser_models.runs.segment import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

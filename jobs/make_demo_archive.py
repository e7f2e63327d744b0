"""Write a synthetic archive of long recordings (podcast episodes, two-channel calls) with speech-region truth.

    python -m jobs.make_demo_archive outputs/archive --episodes 4 --calls 4 --seed 0 \\
        --episode-minutes 3 6 --call-minutes 1 3 --class-prior 0.7,0.12,0.1,0.08 --workers 2

The job's config and code: :mod:`ser_models.runs.make_demo_archive`.
"""

from __future__ import annotations

from ser_models.runs.make_demo_archive import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

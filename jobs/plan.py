"""Plan a label budget: test, dev and active-learning rounds, and how precise each test size makes UA.

    python -m jobs.plan budget=3000 labels='[angry,happy,neutral,sad]' expected_ua=0.6
    python -m jobs.plan budget=3000 labels='[angry,happy,neutral,sad]' shares='[0.1,0.2,0.55,0.15]'
    python -m jobs.plan budget=3000 pool_dir=outputs/demo/pool output_dir=outputs/demo/plan
    python -m jobs.plan CONFIG.yaml [key=value ...]
    python -m jobs.plan budget=0 run_dir=outputs/demo/after [target_ua=0.7]

The job's config and code: :mod:`ser_models.runs.plan`.
"""

from __future__ import annotations

from ser_models.runs.plan import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

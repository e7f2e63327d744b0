"""Write a synthetic demo/benchmark corpus: audio files at mixed rates/formats plus ``manifest.csv``.

    python -m jobs.make_demo_pool outputs/demo/corpus --n 720 --seed 0 [--workers 2]
    python -m jobs.make_demo_pool outputs/acted/corpus --n 480 --seed 1 --corpus acted --style acted
    python -m jobs.make_demo_pool outputs/espeak/corpus --engine espeak --n 2400 --seed 0
    python -m jobs.make_demo_pool outputs/neutral/corpus --n 2400 --class-prior neutral=0.55,happy=0.2,angry=0.1,sad=0.15

The job's config and code: :mod:`ser_models.runs.make_demo_pool`.
"""

from __future__ import annotations

from ser_models.runs.make_demo_pool import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

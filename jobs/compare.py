"""Overlay the learning curves of several runs in one PNG and print a table; with several seeds per name,
print the statistics that say what active learning bought.

    python -m jobs.compare RUN_DIR [RUN_DIR ...] [--out compare.png] [--split test] [--names a,b,c]
    python -m jobs.compare runs/after_s{0..9} runs/random_s{0..9} runs/full \\
        --names AFTER*10,random*10,full-data --baseline random

The job's config and code: :mod:`ser_models.runs.compare`.
"""

from __future__ import annotations

from ser_models.runs.compare import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)

"""Evaluate checkpoints on pools: one score, or the cross-corpus matrix (train corpus x test corpus).

    python -m jobs.evaluate CHECKPOINT POOL [POOL ...] [--split test] [--output-dir DIR]
    python -m jobs.evaluate CKPT_A CKPT_B POOL_A POOL_B --output-dir outputs/cross_corpus

The job's config and code: :mod:`ser_models.runs.evaluate`.
"""

from __future__ import annotations

from ser_models.runs.evaluate import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)
